"""`lull demo`: a month of a music-streaming app, made up (seeded).

`generate` is pure: the same users, seed, days and end give the same records, in the
order a server would have received them (by `received_at`). `demo_project.fill` loads
them through lull's own importer; `demo_world.py` holds the app's cities, songs and
listening hours.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from lull.demo_world import (
    CAMPAIGNS,
    CITIES,
    COMMUTE,
    FIRST,
    GENRES,
    LAST,
    PLANS,
    PLATFORMS,
    PRICES,
    SCREENS,
    WEEKDAY_CUM,
    WEEKEND_CUM,
    WEEKEND_LENGTH,
    WORDS,
    Song,
    below,
    between,
    catalog,
    pick,
    poisson,
)
from lull.errors import BadInput
from lull.model import parse_time

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR

Record = dict[str, Any]


@dataclass(slots=True)
class User:
    """One listener: who, where, how much, and the ids the app knew them by."""

    profile_id: str
    anonymous_id: str
    platform: str
    city: str
    zone: ZoneInfo
    currency: str
    plan: str
    name: str
    rate: float  # sessions a day
    length: float  # median session length, seconds
    joined: int | None  # epoch ms, when new in the period (else None)
    signs_up: bool
    genres: tuple[str, ...]
    away: tuple[int, int] = (0, 0)  # a break, epoch ms
    uninstalls: int | None = None
    known: bool = False  # signed in yet (events go to profile_id)
    identified: bool = False  # has sent its traits


@dataclass(slots=True)
class Demo:
    """The generated records (in arrival order) and the anonymous -> known id links."""

    records: list[Record]
    aliases: list[tuple[str, str]]


@dataclass(slots=True)
class _Run:
    """One generation: its draws, period and songs, and the records made so far (each
    with its arrival key) with the sign-ups' id links."""

    rng: random.Random
    start: int
    until: int
    songs: dict[str, list[Song]]
    rows: list[tuple[int, int, int, Record]] = field(default_factory=list)
    aliases: list[tuple[str, str]] = field(default_factory=list)

    def add(
        self, user_id: str, event: str, ts: int, source: str, recv: int, /, **props: Any
    ) -> None:
        if recv > self.until:
            return  # not arrived yet
        rec = {
            "message_id": _uuid(self.rng),
            "profile_id": user_id,
            "name": event,
            "ts": ts,
            "source": source,
            "received_at": recv,
            "properties": props,
        }
        self.rows.append((recv, ts, len(self.rows), rec))


def generate(*, users: int, days: int, seed: int, until: int) -> Demo:
    """The demo's events over the `days` before `until` (epoch ms), for `users` listeners."""
    rng = random.Random(seed)
    run = _Run(rng, until - days * DAY, until, catalog(rng))
    people = [_user(rng, i, run.start, until) for i in range(users)]
    for user in people:
        _listen(run, user)
    run.rows.sort(key=lambda row: row[:3])
    return Demo([row[3] for row in run.rows], run.aliases)


def _uuid(rng: random.Random) -> str:
    """A message id shaped like an SDK's UUID, from the seeded generator."""
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{h[16:20]}-{h[20:]}"


def _user(rng: random.Random, i: int, start: int, until: int) -> User:
    city, zone, currency, _ = rng.choices(CITIES, [c[3] for c in CITIES])[0]
    heavy = rng.lognormvariate(0.0, 0.9)
    new = rng.random() < 0.18  # the user base grows: some join during the period
    joined = None
    if new:  # more of them near the end
        joined = start + int((until - start) * rng.random() ** 0.7)
    user = User(
        profile_id=f"u-{100000 + i}",
        anonymous_id=f"anon-{rng.getrandbits(48):012x}",
        platform=pick(rng, PLATFORMS),
        city=city,
        zone=ZoneInfo(zone),
        currency=currency,
        plan="free" if new else pick(rng, PLANS),
        name=f"{rng.choice(FIRST)} {rng.choice(LAST)}",
        rate=min(4.0, 0.28 * heavy),
        length=min(3600.0, 330.0 * heavy**0.6),
        joined=joined,
        signs_up=not new or rng.random() < 0.75,
        genres=tuple(rng.sample(GENRES, 3)),
        known=not new,
    )
    if rng.random() < 0.2:  # comes back after a break
        away = start + below(rng, until - start)
        user.away = (away, away + between(rng, 4, 12) * DAY)
    if rng.random() < 0.03:
        user.uninstalls = start + below(rng, until - start)
    return user


def _local_midnight(zone: ZoneInfo, day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=zone).timestamp() * 1000)


def _listen(run: _Run, user: User) -> None:
    """All of one user's sessions, pushes, charges and, maybe, the uninstall."""
    rng = run.rng
    first_day = datetime.fromtimestamp(run.start / 1000, user.zone).date()
    last_day = datetime.fromtimestamp(run.until / 1000, user.zone).date()
    starts: list[tuple[int, bool]] = []  # (start, from a push notification)
    day = first_day
    while day <= last_day:
        midnight = _local_midnight(user.zone, day)
        weekend = day.weekday() >= 5
        hours = WEEKEND_CUM if weekend else WEEKDAY_CUM
        for _ in range(poisson(rng, user.rate * (1.1 if weekend else 1.0))):
            hour = bisect.bisect(hours, rng.random() * hours[-1])
            starts.append((midnight + hour * HOUR + below(rng, HOUR), False))
        if user.platform != "web" and rng.random() < 0.12:  # a push at 18:xx local
            sent = midnight + 18 * HOUR + below(rng, 20 * MINUTE)
            if _present(run, user, sent):
                campaign = CAMPAIGNS[0] if day.weekday() == 4 else rng.choice(CAMPAIGNS[1:])
                recv = sent + between(rng, 30, 300)
                run.add(_id(user), "Notification Sent", sent, "api", recv, campaign=campaign)
                if rng.random() < 0.1:
                    starts.append((sent + between(rng, 10 * SECOND, 40 * MINUTE), True))
        day += timedelta(days=1)
    if user.joined is not None:
        starts.append((user.joined, False))
    _charges(run, user)  # before the visits, in which a free user may upgrade
    busy = 0  # the end of the user's last visit: visits do not overlap
    for at, pushed in sorted(starts):
        if at > busy and _present(run, user, at) and not user.away[0] <= at < user.away[1]:
            busy = _session(run, user, at, pushed) + MINUTE
    if user.uninstalls is not None and user.platform != "web":
        at = user.uninstalls
        run.add(_id(user), "App Uninstalled", at, "api", at + between(rng, 1, 60) * SECOND)


def _present(run: _Run, user: User, at: int) -> bool:
    """In the period, installed (or joined) by `at`, and not yet gone."""
    return (
        run.start <= at < run.until
        and (user.joined is None or at >= user.joined)
        and (user.uninstalls is None or at < user.uninstalls)
    )


def _id(user: User) -> str:
    return user.profile_id if user.known else user.anonymous_id


class _Delivery:
    """When a session's events reach the server: at once, in SDK batches, or, for a
    device that goes offline (a subway), hours later, all together."""

    def __init__(self, rng: random.Random, source: str, start: int, target: int) -> None:
        self.rng, self.source, self.start = rng, source, start
        mobile = source != "web"
        self.flush = between(rng, 15, 60) * SECOND if mobile and rng.random() < 0.25 else 0
        self.offline_from: int | None = None  # event time from which the device is offline
        if mobile and rng.random() < 0.015:  # the whole session, or its tail
            self.offline_from = start + int(target * rng.uniform(0.4, 0.8))
            if rng.random() < 0.25:
                self.offline_from = start

    def arrival(self, ts: int) -> int | None:
        """The receive time, or None while the device is offline."""
        if self.offline_from is not None and ts >= self.offline_from:
            return None
        web = self.source == "web"
        lag = between(self.rng, 40, 900) if web else between(self.rng, 150, 4000)
        if self.flush:
            return self.start + ((ts - self.start) // self.flush + 1) * self.flush + lag
        return ts + lag


def _session(run: _Run, user: User, at: int, pushed: bool) -> int:
    """One visit: launch, screens, songs (played, skipped, liked), searches, maybe a
    sign-up or a purchase; an offline device sends what it held hours later. Returns
    the time it ended."""
    rng = run.rng
    desktop = not pushed and rng.random() < 0.08  # the web app now and then
    source = "web" if desktop else user.platform
    local = datetime.fromtimestamp(at / 1000, user.zone)
    weekend = local.weekday() >= 5
    target = rng.lognormvariate(0.0, 1.0) * user.length * (WEEKEND_LENGTH if weekend else 1.0)
    if not weekend and local.hour in COMMUTE and rng.random() < 0.5:
        target = max(target, rng.uniform(15, 45) * 60)
    target = min(target, 4 * 3600.0) * SECOND
    d = _Delivery(rng, source, at, int(target))
    held: list[tuple[str, str, int, dict[str, Any]]] = []
    now = [at]  # the session's clock, moved by the steps

    def emit(event: str, after: int = 0, /, **props: Any) -> None:
        ts = now[0] + after
        recv = d.arrival(ts)
        if recv is None:
            held.append((_id(user), event, ts, props))
        else:
            run.add(_id(user), event, ts, source, recv, **props)

    def wait(ms: int) -> None:
        now[0] += ms

    if pushed:
        emit("Notification Clicked", campaign=rng.choice(CAMPAIGNS))
        wait(between(rng, 1, 4) * SECOND)
    if user.joined == at and source != "web":
        emit("App Installed", store="Google Play" if source == "android" else "App Store")
        wait(between(rng, 2, 20) * SECOND)
    emit("App Launched", app_version="5.12.0" if source != "web" else "web-2026.11")
    wait(between(rng, 1, 3) * SECOND)
    emit("Screen Viewed", screen="Home")
    if not user.known and user.signs_up:
        wait(between(rng, 20, 120) * SECOND)
        user.known = True
        run.aliases.append((user.anonymous_id, user.profile_id))
    if user.known and not user.identified:
        if source == "web" and rng.random() < 0.1:
            emit("Identity Error", reason="wrong password")
            wait(between(rng, 10, 40) * SECOND)
        user.identified = True
        emit("Identity Set", name=user.name, city=user.city, plan=user.plan, platform=source)
    while now[0] - at < target:
        wait(_action(rng, user, run.songs, emit, at + int(target) - now[0]))
    if user.known and rng.random() < 0.003:  # signs out (a shared device)
        emit("Identity Reset")
    if held:
        back = now[0] + between(rng, 30 * MINUTE, 6 * HOUR)
        for uid, name, ts, props in held:
            run.add(uid, name, ts, source, back + between(rng, 0, 50), **props)
    return now[0]


def _action(
    rng: random.Random,
    user: User,
    songs: dict[str, list[Song]],
    emit: Callable[..., None],
    left: int,
) -> int:
    """One step of a session with `left` ms of it to go; returns how long it took (ms)."""
    r = rng.random()
    if r < 0.72:
        genre = rng.choice(user.genres) if rng.random() < 0.8 else rng.choice(GENRES)
        pool = songs[genre] or songs["pop"]
        song = pool[min(int(rng.paretovariate(1.2)) - 1, len(pool) - 1)]
        about = {"song": song.title, "artist": song.artist, "genre": genre,
                 "duration": song.seconds}  # fmt: skip
        heard = song.seconds if rng.random() > 0.25 else between(rng, 3, 60)
        stops = left < heard * SECOND  # the listener is done: pauses, mid-song
        heard = max(1, left // SECOND) if stops else heard
        if heard >= 30:  # a play counts after 30 seconds of it
            emit("Song Played", 30 * SECOND, **about)
        if rng.random() < 0.05:
            emit("Song Liked", between(rng, 1, heard) * SECOND, **about)
        if stops:
            emit("Song Paused", heard * SECOND, **about, position=heard)
        elif heard < song.seconds:
            emit("Song Skipped", heard * SECOND, **about, position=heard)
        return heard * SECOND + between(rng, 200, 2000)
    if r < 0.84:
        emit("Screen Viewed", screen=rng.choice(SCREENS))
        return between(rng, 3, 40) * SECOND
    if r < 0.92:
        emit("Search", query=rng.choice(WORDS).lower(), results=between(rng, 0, 50))
        return between(rng, 5, 30) * SECOND
    if r < 0.93:
        emit("Playlist Created", playlist=f"{rng.choice(WORDS)} mix", songs=between(rng, 1, 30))
        return between(rng, 20, 90) * SECOND
    if r < 0.934 and user.known and user.plan == "free":
        user.plan = rng.choice(("premium", "premium", "family", "student"))
        emit("Screen Viewed", screen="Premium")
        emit("Subscription Purchased", 20 * SECOND, plan=user.plan, **_price(user))
        emit("Identity Set", 21 * SECOND, plan=user.plan)
        return between(rng, 30, 120) * SECOND
    if r < 0.995:
        return between(rng, 2, 30) * SECOND  # reading lyrics, browsing: nothing tracked
    return between(rng, 4, 40) * MINUTE  # a pause; past the timeout it ends the session


def _price(user: User) -> dict[str, Any]:
    amount = PRICES[user.plan] + (1.0 if user.currency == "GBP" else 0.0)
    return {"amount": round(amount, 2), "currency": user.currency}


def _charges(run: _Run, user: User) -> None:
    """Monthly renewals of the paid plans held when the period began, charged by the
    billing server at night (UTC)."""
    if user.joined is not None or user.plan == "free":
        return
    billing_day = between(run.rng, 1, 28)
    day = datetime.fromtimestamp(run.start / 1000, UTC).date()
    while (midnight := _local_midnight(ZoneInfo("UTC"), day)) < run.until:
        at = midnight + 4 * HOUR + below(run.rng, HOUR)
        if day.day == billing_day and _present(run, user, at):
            recv = at + between(run.rng, 30, 300)
            run.add(user.profile_id, "Subscription Charged", at, "api", recv, plan=user.plan,
                    **_price(user))  # fmt: skip
        day += timedelta(days=1)


def end_of(text: str) -> int:
    """`--until`: a day (YYYY-MM-DD, meaning the end of that day in UTC) or an ISO-8601
    time with an offset, as epoch ms."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000) + DAY
        return parse_time(text, "--until")
    except (ValueError, BadInput):
        raise BadInput(
            f"--until {text!r}: expected a day (YYYY-MM-DD) or an ISO-8601 time with an "
            "offset (2026-11-26T18:00:00Z)"
        ) from None


def write_ndjson(demo: Demo, path: str | Path) -> None:
    """The records as canonical NDJSON, one event a line, in arrival order."""
    encode = msgspec.json.Encoder().encode
    with open(path, "wb") as f:
        for rec in demo.records:
            f.write(encode(rec))
            f.write(b"\n")
