"""The demo app's world: cities, plans, songs, the hours people listen at; and the
small seeded draws the demo makes."""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass

# city, IANA zone, currency, relative share of users
CITIES = (
    ("London", "Europe/London", "GBP", 16),
    ("Manchester", "Europe/London", "GBP", 5),
    ("Dublin", "Europe/Dublin", "EUR", 4),
    ("Paris", "Europe/Paris", "EUR", 12),
    ("Lyon", "Europe/Paris", "EUR", 3),
    ("Berlin", "Europe/Berlin", "EUR", 11),
    ("Hamburg", "Europe/Berlin", "EUR", 4),
    ("Madrid", "Europe/Madrid", "EUR", 8),
    ("Barcelona", "Europe/Madrid", "EUR", 5),
    ("Amsterdam", "Europe/Amsterdam", "EUR", 6),
    ("Stockholm", "Europe/Stockholm", "EUR", 4),
    ("Lisbon", "Europe/Lisbon", "EUR", 4),
    ("Rome", "Europe/Rome", "EUR", 6),
    ("Warsaw", "Europe/Warsaw", "EUR", 5),
)
PLATFORMS = (("android", 45), ("ios", 35), ("web", 20))
PLANS = (("free", 55), ("premium", 30), ("family", 8), ("student", 7))
PRICES = {"premium": 10.99, "family": 17.99, "student": 5.99}
GENRES = ("pop", "rock", "hip-hop", "electronic", "indie", "r&b", "latin", "jazz", "classical")
SCREENS = ("Home", "Search", "Library", "Artist", "Album", "Playlist", "Settings", "Premium")
FIRST = ("Alex", "Sam", "Maria", "Lena", "Tom", "Chloe", "Luca", "Emma", "Noah", "Ines",
         "Jan", "Sofia", "Omar", "Julia", "Hugo", "Mia", "Leo", "Anna", "Ravi", "Zoe")  # fmt: skip
LAST = ("Smith", "Martin", "Müller", "García", "Rossi", "Novak", "Jansen", "Silva",
        "Kowalski", "Dubois", "Berg", "Murphy", "Fischer", "López", "Costa", "Evans")  # fmt: skip
WORDS = ("Midnight", "Golden", "Electric", "Velvet", "Paper", "Neon", "Silver", "Wild",
         "Summer", "Echo", "Ocean", "Broken", "Lunar", "Crystal", "Atlas", "Ember",
         "Northern", "Static", "Honey", "Glass")  # fmt: skip
NOUNS = ("Hearts", "Lights", "Foxes", "Rivers", "Machines", "Kids", "Tides", "Dreams",
         "Roads", "Skies", "Ghosts", "Waves", "Streets", "Birds", "Mirrors", "Fires")  # fmt: skip
CAMPAIGNS = ("New Music Friday", "Your Daily Mix", "Release Radar", "Concert nearby")

# Relative weights of a session's local start hour (0h..23h): a night trough, bumps at
# the commutes and at lunch on weekdays, later mornings on weekends, evening peaks.
WEEKDAY_HOURS = (1.2, 0.6, 0.3, 0.2, 0.2, 0.5, 2.2, 5.5, 6.5, 3.5, 2.6, 2.6,
                 3.6, 3.4, 2.6, 2.7, 3.4, 5.6, 6.2, 5.6, 6.4, 7.0, 5.4, 2.8)  # fmt: skip
WEEKEND_HOURS = (2.2, 1.4, 0.8, 0.4, 0.3, 0.3, 0.5, 1.2, 2.2, 3.6, 4.6, 5.2,
                 5.4, 5.2, 5.0, 4.8, 4.8, 5.0, 5.6, 6.2, 6.8, 6.8, 5.4, 3.6)  # fmt: skip
WEEKDAY_CUM = tuple(itertools.accumulate(WEEKDAY_HOURS))
WEEKEND_CUM = tuple(itertools.accumulate(WEEKEND_HOURS))
WEEKEND_LENGTH = 1.6  # weekend sessions last longer
COMMUTE = frozenset({7, 8, 17, 18})


@dataclass(frozen=True, slots=True)
class Song:
    title: str
    artist: str
    genre: str
    seconds: int


def catalog(rng: random.Random) -> dict[str, list[Song]]:
    """Songs by genre; a few artists and songs are far more popular (first in the lists)."""
    by_genre: dict[str, list[Song]] = {g: [] for g in GENRES}
    for i in range(len(WORDS) * len(NOUNS) * 3 // 4):
        artist = f"{WORDS[i % len(WORDS)]} {NOUNS[i // len(WORDS)]}"  # all different
        genre = GENRES[below(rng, len(GENRES))]
        for _ in range(between(rng, 6, 16)):
            title = f"{rng.choice(WORDS)} {rng.choice(NOUNS)}"
            by_genre[genre].append(Song(title, artist, genre, between(rng, 130, 330)))
    return by_genre


def between(rng: random.Random, low: int, high: int) -> int:
    """A whole number from `low` to `high`, both included (faster than randint)."""
    return low + int(rng.random() * (high - low + 1))


def below(rng: random.Random, n: int) -> int:
    return int(rng.random() * n)


def pick(rng: random.Random, pairs: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([k for k, _ in pairs], [w for _, w in pairs])[0]


def poisson(rng: random.Random, mean: float) -> int:
    count, p = 0, rng.random()
    threshold = math.exp(-mean)
    while p > threshold:
        count += 1
        p *= rng.random()
    return count
