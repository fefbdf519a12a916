"""Generate canonical NDJSON events of a music-streaming app, fast (NumPy + DuckDB).

    python bench/generate.py --events 10000000 --profiles 200000 --days 30 --seed 1 -o FILE

The shape, in short (the constants below hold the exact shares):

- Profiles differ in how active they are (log-normal), live in a handful of time zones,
  and mostly use one platform (ios, android or web; a desktop web session now and then).
- Sessions start at believable local hours (quiet at night, peaks at the morning commute,
  at lunch and in the evening); a session holds a geometric number of events, seconds
  (browsing) to minutes (one song) apart, with a rare pause near or past the timeout.
- A few % are server-side `api` events at any hour, and a few % have excluded names
  (`Notification Clicked`, `UTM Visited`, `Identity Set`, `App Installed`, and the
  `Notification Sent` that the server pushes).
- Delivery: most events reach the server 0.05-3 s after they happen; a quarter of the
  mobile sessions are batched (the SDK flushes every 30 s to 5 min, so delays of
  minutes and many events sharing one `received_at`); ~0.3% of sessions are recorded
  offline and arrive hours later in one batch, and ~0.15% of events are retried hours
  later one by one, so a few events are late (R5). A batch is one request: its events
  share one `received_at`. A mobile SDK sends its queue in order, so its events arrive
  in order; web events are sent one by one and may overtake each other.
- Client clocks: every SDK profile's clock is a little off; a third of the profiles send
  `sent_at` (their own clock at sending), and only those have clocks minutes or hours
  off, which R5 corrects.

Times are written as integer epoch milliseconds (`--iso` writes ISO-8601 strings). The
file is sorted by `received_at` (ties: event time), as a server would have received it.
A summary of what was generated is written next to the file as FILE.meta.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa

VERSION = 2  # bump when the generated data changes, so cached files are rebuilt

I64 = npt.NDArray[np.int64]
Rng = np.random.Generator

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR

SOURCES = ("web", "ios", "android", "api")
WEB, IOS, ANDROID, API = 0, 1, 2, 3

# Names: the first event of a session, later events in a session, and server (api) events.
NAMES = (
    "App Opened",
    "Notification Clicked",  # excluded
    "UTM Visited",  # excluded
    "App Installed",  # excluded
    "Song Played",
    "Song Skipped",
    "Song Liked",
    "Screen Viewed",
    "Search Performed",
    "Playlist Opened",
    "Album Viewed",
    "Artist Viewed",
    "Song Added To Playlist",
    "Ad Played",
    "Queue Updated",
    "Song Shared",
    "Subscription Viewed",
    "Settings Changed",
    "Identity Set",  # excluded
    "Notification Sent",  # excluded (pushed by the server)
    "Subscription Renewed",
    "Payment Succeeded",
    "Email Sent",
)
EXCLUDED = frozenset(
    {"Notification Clicked", "UTM Visited", "App Installed", "Identity Set", "Notification Sent"}
)
_N = {name: i for i, name in enumerate(NAMES)}

IN_SESSION = {
    "Song Played": 45.0,
    "Song Skipped": 12.0,
    "Song Liked": 4.0,
    "Screen Viewed": 12.0,
    "Search Performed": 6.0,
    "Playlist Opened": 6.0,
    "Album Viewed": 4.0,
    "Artist Viewed": 3.0,
    "Song Added To Playlist": 2.0,
    "Ad Played": 3.0,
    "Queue Updated": 2.0,
    "Song Shared": 0.5,
    "Subscription Viewed": 0.5,
    "Settings Changed": 0.5,
    "Identity Set": 0.6,
}
FIRST_MOBILE = {"App Opened": 80.0, "Notification Clicked": 8.0, "Song Played": 12.0}
FIRST_WEB = {"App Opened": 82.0, "UTM Visited": 15.0, "Song Played": 3.0}
ON_API = {
    "Notification Sent": 50.0,
    "Subscription Renewed": 15.0,
    "Payment Succeeded": 15.0,
    "Email Sent": 20.0,
}

GENRES = ("pop", "rock", "hip-hop", "jazz", "classical", "electronic", "latin", "indie")
SCREENS = ("home", "search", "library", "player", "playlist", "settings", "premium")

# Local hour of a session's start: relative weights for 0h..23h (night, commute, lunch, evening).
_AM = (2.0, 1.0, 0.6, 0.4, 0.4, 0.8, 2.0, 5.0, 8.0, 6.0, 4.5, 4.5)
_PM = (6.0, 6.5, 5.0, 4.5, 5.0, 7.0, 8.5, 9.5, 10.0, 9.5, 7.5, 4.5)
HOURLY = (*_AM, *_PM)
# UTC offsets (hours) of the profiles' time zones, and their shares.
TIME_ZONES: tuple[tuple[float, float], ...] = (
    (-8, 0.12),
    (-5, 0.18),
    (-3, 0.06),
    (0, 0.10),
    (1, 0.22),
    (3, 0.05),
    (5.5, 0.12),
    (8, 0.08),
    (9, 0.07),
)

EVENTS_PER_SESSION = 6.0  # mean, all SDK events of a session (excluded names included)
API_SHARE = 0.03
SENT_AT_PROFILES = 0.33
BATCHED_SESSIONS = 0.25  # of mobile sessions
OFFLINE_SESSIONS = 0.003
RETRIED_EVENTS = 0.0015


@dataclass(slots=True)
class Summary:
    events: int
    profiles: int
    days: int
    seed: int
    start: str
    iso: bool
    version: int
    sessions_planned: int
    api_events: int
    excluded_name_events: int
    with_sent_at: int
    batched_events: int
    hours_late_events: int
    seconds: float


def _pick(rng: Rng, weights: dict[str, float], n: int) -> npt.NDArray[np.int8]:
    """`n` name codes drawn with the given relative weights."""
    names = list(weights)
    p = np.array([weights[k] for k in names])
    idx = rng.choice(len(names), size=n, p=p / p.sum())
    return np.array([_N[k] for k in names], dtype=np.int8)[idx]


def _by_weight(rng: Rng, weights: npt.NDArray[np.float64], n: int) -> I64:
    """`n` indices drawn with probability proportional to `weights`."""
    cum = np.cumsum(weights)
    picked: I64 = np.searchsorted(cum, rng.random(n) * cum[-1], side="right").astype(np.int64)
    return picked


def _exact_total(rng: Rng, lengths: I64, total: int) -> I64:
    """Nudge session lengths (each >= 1) until they add up to `total`."""
    while (diff := total - int(lengths.sum())) != 0:
        idx = rng.integers(0, len(lengths), abs(diff))
        if diff > 0:
            np.add.at(lengths, idx, 1)
        else:
            idx = idx[lengths[idx] > 1]
            np.subtract.at(lengths, np.unique(idx), 1)
    return lengths


def build(
    events: int, profiles: int, days: int, seed: int, start_ms: int
) -> tuple[pa.Table, dict[str, int]]:
    """All events as integer columns (not yet sorted), and counts for the summary."""
    rng = np.random.default_rng(seed)
    span = days * DAY
    n_api = round(events * API_SHARE)
    n_sdk = events - n_api

    # profiles
    activity = rng.lognormal(0.0, 0.9, profiles)
    platform = rng.choice(3, size=profiles, p=[0.15, 0.42, 0.43]).astype(np.int8)
    zones = np.array([z for z, _ in TIME_ZONES])
    tz_ms = (zones[rng.choice(len(zones), profiles, p=[w for _, w in TIME_ZONES])] * HOUR).astype(
        np.int64
    )
    chrono_ms = (rng.normal(0.0, 1.2, profiles) * HOUR).astype(np.int64)
    sends_sent_at = rng.random(profiles) < SENT_AT_PROFILES
    skew = rng.normal(0.0, 250.0, profiles)  # ms; every clock is a little off
    kind = rng.random(profiles)
    minutes_off = sends_sent_at & (kind < 0.12)
    hours_off = sends_sent_at & (kind > 0.95)
    skew[minutes_off] = rng.uniform(30 * SECOND, 15 * MINUTE, int(minutes_off.sum()))
    skew[hours_off] = rng.integers(1, 4, int(hours_off.sum())) * HOUR + rng.normal(
        0, 2000, int(hours_off.sum())
    )
    skew *= np.where(rng.random(profiles) < 0.5, -1, 1)
    skew_ms = skew.astype(np.int64)

    # sessions: every profile gets one, the rest go by activity
    n_sessions = max(1, round(n_sdk / EVENTS_PER_SESSION))
    if n_sessions >= profiles:
        extra = _by_weight(rng, activity, n_sessions - profiles)
        s_prof = np.concatenate([np.arange(profiles, dtype=np.int64), extra])
    else:
        s_prof = _by_weight(rng, activity, n_sessions)
    hourly = np.array(HOURLY, dtype=np.float64)
    local = rng.integers(0, days, n_sessions) * DAY + _by_weight(rng, hourly, n_sessions) * HOUR
    local += rng.integers(0, HOUR, n_sessions) + chrono_ms[s_prof]
    s_start = start_ms + (local - tz_ms[s_prof]) % span
    s_source = platform[s_prof].copy()
    other = rng.random(n_sessions)
    s_source[(s_source != WEB) & (other < 0.07)] = WEB  # desktop listening
    s_source[(s_source == WEB) & (other < 0.05)] = IOS
    lengths = _exact_total(rng, rng.geometric(1.0 / EVENTS_PER_SESSION, n_sessions), n_sdk)

    # events of sessions: gaps of seconds (browsing) to minutes (a song), rare long pauses
    sess = np.repeat(np.arange(n_sessions, dtype=np.int64), lengths)
    first_row = np.zeros(n_sessions, dtype=np.int64)
    first_row[1:] = np.cumsum(lengths)[:-1]
    is_first = np.zeros(n_sdk, dtype=bool)
    is_first[first_row] = True
    u = rng.random(n_sdk)
    gap = np.where(
        u < 0.55,
        np.clip(rng.normal(200, 45, n_sdk), 30, 420) * SECOND,
        np.where(
            u < 0.95,
            np.clip(rng.lognormal(np.log(8.0), 0.9, n_sdk), 0.2, 120) * SECOND,
            np.where(
                u < 0.99, rng.uniform(5, 15, n_sdk) * MINUTE, rng.uniform(15, 30, n_sdk) * MINUTE
            ),
        ),
    ).astype(np.int64)
    gap[is_first] = 0
    offset = np.cumsum(gap)
    offset -= np.repeat(offset[first_row], lengths)
    ts_true = s_start[sess] + offset
    prof = s_prof[sess]
    source = s_source[sess]

    name = _pick(rng, IN_SESSION, n_sdk)
    mobile_first = is_first & (source != WEB)
    web_first = is_first & (source == WEB)
    name[mobile_first] = _pick(rng, FIRST_MOBILE, int(mobile_first.sum()))
    name[web_first] = _pick(rng, FIRST_WEB, int(web_first.sum()))
    installs = first_row[: min(profiles, n_sessions)][rng.random(min(profiles, n_sessions)) < 0.03]
    name[installs] = _N["App Installed"]  # a new user's very first session

    # delivery: when the SDK sent each event (true time), then the network
    send = ts_true + rng.integers(5, 300, n_sdk)  # the SDK's queue, then the network
    batched_s = (s_source != WEB) & (rng.random(n_sessions) < BATCHED_SESSIONS)
    flush = rng.integers(30 * SECOND, 5 * MINUTE, n_sessions)
    b = batched_s[sess]
    f = flush[sess][b]
    base = s_start[sess][b]
    send[b] = base + ((ts_true[b] - base) // f + 1) * f
    s_end = ts_true[first_row + lengths - 1]  # times rise within a session
    offline_s = (s_source != WEB) & (rng.random(n_sessions) < OFFLINE_SESSIONS)
    back_online = s_end + rng.integers(1 * HOUR, 12 * HOUR, n_sessions)
    off = offline_s[sess]
    send[off] = back_online[sess][off]
    retried = rng.random(n_sdk) < RETRIED_EVENTS
    send[retried] = ts_true[retried] + rng.integers(1 * HOUR, 6 * HOUR, int(retried.sum()))
    network = np.clip(rng.lognormal(np.log(250.0), 0.8, n_sdk), 50, 3000).astype(np.int64)
    # one request carries a whole batch, so its events arrive together
    grouped = (b | off) & ~retried
    same_request = np.zeros(n_sdk, dtype=bool)
    same_request[1:] = grouped[1:] & grouped[:-1] & (sess[1:] == sess[:-1])
    same_request[1:] &= send[1:] == send[:-1]
    head = np.maximum.accumulate(np.where(same_request, 0, np.arange(n_sdk)))
    received = send + network[head]
    # a mobile SDK sends its queue in order, request after request; web beacons may overtake
    in_order = (source != WEB) & ~grouped & ~retried
    shift = sess << 32  # keeps the running maximum within a session (times in it < 2^32 ms)
    key = np.where(in_order, shift + received - s_start[sess], 0)
    received = np.where(in_order, np.maximum.accumulate(key) - shift + s_start[sess], received)
    # what the client writes: its own clock for ts and (if its SDK does) sent_at
    ts_client = ts_true + skew_ms[prof]
    sent_at = np.where(sends_sent_at[prof], send + skew_ms[prof], -1)

    # server-side events at any hour, delivered at once, no client clock
    a_prof = _by_weight(rng, activity, n_api)
    a_ts = start_ms + rng.integers(0, span, n_api)
    a_recv = a_ts + np.clip(rng.lognormal(np.log(120.0), 0.6, n_api), 50, 3000).astype(np.int64)
    a_name = _pick(rng, ON_API, n_api)

    all_name = np.concatenate([name, a_name])
    song = (rng.zipf(1.3, events) % 2_000_000).astype(np.int64)
    table = pa.table(
        {
            "id": np.arange(events, dtype=np.int64),
            "profile": np.concatenate([prof, a_prof]),
            "name": pa.DictionaryArray.from_arrays(
                pa.array(all_name, pa.int8()), pa.array(NAMES, pa.string())
            ),
            "source": pa.DictionaryArray.from_arrays(
                pa.array(np.concatenate([source, np.full(n_api, API, np.int8)]), pa.int8()),
                pa.array(SOURCES, pa.string()),
            ),
            "ts": np.concatenate([ts_client, a_ts]),
            "received_at": np.concatenate([received, a_recv]),
            "sent_at": pa.array(np.concatenate([sent_at, np.full(n_api, -1)])),
            "song": song,
            "genre": pa.DictionaryArray.from_arrays(
                pa.array(rng.integers(0, len(GENRES), events).astype(np.int8), pa.int8()),
                pa.array(GENRES, pa.string()),
            ),
            "duration_ms": rng.integers(90 * SECOND, 420 * SECOND, events),
            "screen": pa.DictionaryArray.from_arrays(
                pa.array(rng.integers(0, len(SCREENS), events).astype(np.int8), pa.int8()),
                pa.array(SCREENS, pa.string()),
            ),
        }
    )
    excluded_codes = np.array([n in EXCLUDED for n in NAMES])
    counts = {
        "sessions_planned": n_sessions,
        "api_events": n_api,
        "excluded_name_events": int(excluded_codes[all_name].sum()),
        "with_sent_at": int((sent_at >= 0).sum()),
        "batched_events": int(b.sum()),
        "hours_late_events": int(off.sum() + retried.sum()),
    }
    return table, counts


def _time_sql(col: str, iso: bool) -> str:
    if not iso:
        return col
    return f"strftime(make_timestamp({col} * 1000), '%Y-%m-%dT%H:%M:%S.%gZ')"


def write(table: pa.Table, out: Path, seed: int, iso: bool) -> None:
    """Sort by arrival and write one JSON object per line (sent_at only where sent)."""
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    con.register("gen", table)
    song = ("Song Played", "Song Skipped", "Song Liked", "Song Shared")
    song_list = ", ".join(f"'{n}'" for n in song)
    server = ("Subscription Renewed", "Payment Succeeded")
    server_list = ", ".join(f"'{n}'" for n in server)
    props = f"""CASE
        WHEN name IN ({song_list}) THEN json_object(
            'song_id', 's' || song, 'genre', genre, 'duration_ms', duration_ms)
        WHEN name IN ({server_list}) THEN json_object(
            'plan', 'premium', 'amount_cents', 999)
        WHEN source = 'api' THEN json_object('channel', 'push')
        ELSE json_object('screen', screen) END"""
    head = f"""'message_id', mid, 'profile_id', 'u' || lpad(profile::VARCHAR, 8, '0'),
        'name', name, 'ts', {_time_sql("ts", iso)}, 'source', source,
        'received_at', {_time_sql("received_at", iso)}"""
    line = f"""CASE WHEN sent_at < 0 THEN json_object({head}, 'properties', props)
        ELSE json_object({head}, 'sent_at', {_time_sql("sent_at", iso)}, 'properties', props)
        END"""
    # a message id that looks like an SDK's UUID, and is the same for the same seed
    mid = "h[1:8] || '-' || h[9:12] || '-' || h[13:16] || '-' || h[17:20] || '-' || h[21:]"
    tmp = out.with_name(out.name + ".part")
    con.execute(
        f"""COPY (
            SELECT {line} AS line FROM (
                SELECT *, {mid} AS mid, {props} AS props
                FROM (SELECT *, md5(id::VARCHAR || '-{seed}') AS h FROM gen))
            ORDER BY received_at, ts, id
        ) TO '{str(tmp).replace("'", "''")}' (FORMAT csv, HEADER false, QUOTE '', ESCAPE '')"""
    )
    con.close()
    tmp.replace(out)


def generate(
    out: Path,
    *,
    events: int,
    profiles: int,
    days: int,
    seed: int,
    start: str = "2026-10-01",
    iso: bool = False,
) -> Summary:
    """Write the events to `out` (and `out`.meta.json); returns the summary."""
    started = time.perf_counter()
    start_ms = int(datetime.fromisoformat(start).replace(tzinfo=UTC).timestamp() * 1000)
    table, counts = build(events, profiles, days, seed, start_ms)
    write(table, out, seed, iso)
    summary = Summary(
        events=events,
        profiles=profiles,
        days=days,
        seed=seed,
        start=start,
        iso=iso,
        version=VERSION,
        seconds=round(time.perf_counter() - started, 2),
        **counts,
    )
    meta = out.with_name(out.name + ".meta.json")
    meta.write_text(json.dumps(asdict(summary), indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--events", type=int, default=10_000_000)
    p.add_argument("--profiles", type=int, default=200_000)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--start", default="2026-10-01", help="first day (UTC), YYYY-MM-DD")
    p.add_argument("--iso", action="store_true", help="ISO-8601 times instead of epoch ms")
    p.add_argument("-o", "--output", type=Path, required=True)
    a = p.parse_args(argv)
    if a.events < 1 or a.profiles < 1 or a.days < 1:
        p.error("--events, --profiles and --days must be at least 1")
    summary = generate(
        a.output,
        events=a.events,
        profiles=a.profiles,
        days=a.days,
        seed=a.seed,
        start=a.start,
        iso=a.iso,
    )
    print(json.dumps(asdict(summary), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
