"""Helpers for the web tests: Debian's Chromium driven by Playwright, signing in, console
errors, and a month of a music app's events sent through the HTTP API.

    with chromium() as browser:
        page = watched(browser.new_page())      # JavaScript errors collected in page.errors
        sign_in(page, server.base, "ann", PASSWORD)
"""

from __future__ import annotations

import base64
import random
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, ConsoleMessage, Error, Page, sync_playwright

from lull.model import format_time
from lullrun import lull
from serverproc import Keys, LullServer, now_ms

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
PASSWORD = "correct horse battery"
DAY = 86_400_000
MIN = 60_000


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Watched:
    """A page and the JavaScript errors (console errors, uncaught exceptions) it saw."""

    page: Page
    errors: list[str] = field(default_factory=list)


def watched(page: Page) -> Watched:
    w = Watched(page)

    def console(msg: ConsoleMessage) -> None:
        # A page served with a 401/403 on purpose is reported as a failed resource: the
        # page itself, not an error of its scripts; so is a refusal (4xx) the page's
        # script was given and showed (the tests check what it shows).
        document = msg.location.get("url") == page.url
        refused = re.search(r"responded with a status of 4\d\d", msg.text) is not None
        failed = msg.text.startswith("Failed to load")
        if msg.type == "error" and not (failed and (document or refused)):
            w.errors.append(f"{page.url}: {msg.text}")

    def crashed(e: Error) -> None:
        w.errors.append(f"{page.url}: {e}")

    page.on("console", console)
    page.on("pageerror", crashed)
    return w


def sign_in(page: Page, base: str, name: str, password: str = PASSWORD) -> None:
    page.goto(f"{base}/signin")
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def make_user(server: LullServer, name: str, project: str, role: str) -> None:
    """`lull user create` with the server down (it holds the store while it runs)."""
    made = lull(server.db, "user", "create", name, "--project", project, "--role", role,
                "--password-stdin", stdin=PASSWORD + "\n")  # fmt: skip
    assert made.code == 0, made.err


def grant(server: LullServer, name: str, project: str, role: str) -> None:
    done = lull(server.db, "user", "grant", name, "--project", project, "--role", role)
    assert done.code == 0, done.err


def populate(
    server: LullServer, projects: dict[str, str | None], roles: list[tuple[str, str, str]]
) -> None:
    """With the server down: projects (name -> sessions on/off/None), then each (user,
    project, role), made on its first mention and granted on the later ones."""
    for name, sessions in projects.items():
        server.create_project(name, sessions=sessions)
    made: set[str] = set()
    for user, project, role in roles:
        (grant if user in made else make_user)(server, user, project, role)
        made.add(user)


def shot(page: Page, name: str, full: bool = True) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full)


# -- a month of a music-streaming app ---------------------------------------------------

GENRES = ("pop", "jazz", "hip-hop", "classical", "rock", "electronic", "indie", "latin")
SCREENS = ("Home", "Search", "Library", "Now Playing", "Playlist", "Artist", "Settings")
CITIES = (("Lisbon", "PT"), ("Berlin", "DE"), ("Austin", "US"), ("Osaka", "JP"),
          ("Lagos", "NG"), ("Lyon", "FR"), ("Toronto", "CA"), ("Pune", "IN"))  # fmt: skip
# The chance that a session starts in each hour of the day: a morning commute and evenings.
HOURLY = (1, 1, 0.5, 0.3, 0.3, 0.6, 2, 4, 5, 3, 2, 2, 3, 2.5, 2, 2, 2.5, 4, 5, 6, 6, 5, 3.5, 2)


@dataclass
class Profile:
    profile_id: str
    source: str
    traits: dict[str, Any]
    activity: float  # sessions on an average day
    events: list[dict[str, Any]] = field(default_factory=list)


def music_month(seed: int, profiles: int, end_ms: int, days: int = 30) -> list[Profile]:
    """Each profile's events over `days` days ending at `end_ms`: installs, launches,
    screens, songs, likes, purchases, notifications; more on weekends and evenings."""
    rnd = random.Random(seed)
    start = end_ms - days * DAY
    return [_listener(rnd, 1000 + i, start, days, end_ms) for i in range(profiles)]


def _listener(rnd: random.Random, n: int, start: int, days: int, end_ms: int) -> Profile:
    city, country = rnd.choice(CITIES)
    traits = {
        "name": f"Listener {n}",
        "plan": rnd.choices(("free", "premium", "family"), (6, 3, 1))[0],
        "city": city,
        "country": country,
        "favourite_genre": rnd.choice(GENRES),
    }
    source = rnd.choices(("ios", "android", "web"), (4, 4, 2))[0]
    p = Profile(f"u-{n}", source, traits, activity=rnd.uniform(0.2, 1.6))

    def add(name: str, ts: int, **props: Any) -> None:
        if ts < end_ms:
            mid = f"{p.profile_id}-{len(p.events)}"
            p.events.append(
                {"message_id": mid, "profile_id": p.profile_id, "name": name,
                 "ts": format_time(ts), "properties": props}
            )  # fmt: skip

    add("App Installed", start + rnd.randrange(DAY // 2))
    for day in range(1, days):
        day_start = start + day * DAY
        weekend = (day_start // DAY + 4) % 7 in (5, 6)  # 1970-01-01 was a Thursday
        hours = sorted(
            rnd.choices(range(24), HOURLY, k=_poisson(rnd, p.activity * (1.5 if weekend else 1)))
        )
        last = day_start
        for hour in hours:
            t = max(day_start + hour * 3_600_000 + rnd.randrange(3_600_000), last + 30 * MIN)
            last = _session(rnd, add, t, str(traits["favourite_genre"]))
            if rnd.random() < 0.15:
                add("Notification Sent", last + rnd.randrange(60, 240) * MIN, campaign="weekly-mix")
    return p


def _poisson(rnd: random.Random, mean: float) -> int:
    count, total = 0, rnd.expovariate(1.0)
    while total < mean:
        count += 1
        total += rnd.expovariate(1.0)
    return count


def _session(rnd: random.Random, add: Any, t: int, genre: str) -> int:
    """One visit: a launch, some screens and songs; returns the time of its last event."""
    add("App Launched", t)
    t += rnd.randrange(2, 20) * 1000
    add("Screen Viewed", t, screen="Home")
    for _ in range(rnd.choices((0, 1, 2, 4, 8, 14), (1, 3, 3, 3, 2, 1))[0]):
        t += rnd.randrange(30, 260) * 1000
        if rnd.random() < 0.25:
            add("Screen Viewed", t, screen=rnd.choice(SCREENS))
            t += rnd.randrange(5, 40) * 1000
        add("Song Played", t, genre=genre if rnd.random() < 0.6 else rnd.choice(GENRES),
            duration_s=rnd.randrange(120, 300))  # fmt: skip
        if rnd.random() < 0.12:
            add("Song Liked", t + rnd.randrange(10, 90) * 1000)
    if rnd.random() < 0.03:
        t += rnd.randrange(20, 120) * 1000
        add("Purchase Completed", t, plan="premium", amount=9.99, currency="EUR")
    return t


def send_month(server: LullServer, project: str, profiles: list[Profile]) -> int:
    """The profiles' months with their sources' keys, a few profiles a request (each
    profile's events whole in one request, so its sessions are whole when they arrive),
    and their traits in Segment identify calls; returns the number of events."""
    keys = server.projects[project]
    by_key: dict[str, list[Profile]] = {}
    for p in profiles:
        by_key.setdefault(_key(keys, p.source), []).append(p)
    sent = 0
    for key, group in by_key.items():
        for start in range(0, len(group), 8):  # ~2,000 events, well under 500 KB
            events = [e for p in group[start : start + 8] for e in p.events]
            got = server.post_events(key, events)
            assert got.status_code == 200 and got.json()["accepted"] == len(events), got.text
            sent += len(events)
        identify = [
            {"type": "identify", "userId": p.profile_id, "traits": p.traits,
             "messageId": f"{p.profile_id}-identify", "timestamp": p.events[0]["ts"]}
            for p in group
        ]  # fmt: skip
        auth = base64.b64encode(f"{key}:".encode()).decode()
        done = server.http.post("/v1/batch", json={"batch": identify},
                                headers={"Authorization": f"Basic {auth}"})  # fmt: skip
        assert done.status_code == 200, done.text
    return sent


def send_late(server: LullServer, project: str, profiles: list[Profile], days_ago: int) -> int:
    """For each profile, a like in the middle of its last visit before `days_ago` days
    ago: that session is concluded, so the like comes late (R5). Returns how many."""
    keys = server.projects[project]
    before = now_ms() - days_ago * DAY
    sent = 0
    for p in profiles:
        launches = [e for e in p.events if e["name"] == "App Launched"]
        old = [e for e in launches if _ms(e["ts"]) < before]
        if not old:
            continue
        ts = _ms(old[-1]["ts"]) + 1000
        late = {"message_id": f"{p.profile_id}-late", "profile_id": p.profile_id,
                "name": "Song Liked", "ts": format_time(ts)}  # fmt: skip
        got = server.post_events(_key(keys, p.source), [late])
        assert got.status_code == 200 and got.json()["accepted"] == 1, got.text
        stored = server.events(keys, profile_id=p.profile_id, name="Song Liked")
        assert [e["late"] for e in stored if e["message_id"] == late["message_id"]] == [True]
        sent += 1
    return sent


def _key(keys: Keys, source: str) -> str:
    """The project's write key of a profile's source."""
    return {"web": keys.web, "ios": keys.ios, "android": keys.android}[source]


def _ms(iso: str) -> int:
    from lull.model import parse_time

    return parse_time(iso, "ts")


def recent(hours_ago: float) -> int:
    return now_ms() - int(hours_ago * 3_600_000)
