"""`lull demo`: made-up music-app events, imported through lull's own importer."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lull.demo import DAY, generate
from lull.ingest.records import to_record
from lull.model import parse_time
from lullrun import Result, lull, write_events
from serverproc import Keys, LullServer, export

UNTIL = "2026-11-26"  # the data end at the end of that day (UTC)
END = parse_time("2026-11-27T00:00:00Z", "end")
USERS = "300"


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    """One demo project (300 users, 30 days) for the tests that only read it."""
    db = tmp_path_factory.mktemp("demo") / "lull.duckdb"
    made = lull(db, "demo", "--users", USERS, "--until", UNTIL)
    assert made.code == 0, made.err
    return db, made


@pytest.fixture(scope="module")
def sessions(demo_db: tuple[Path, Result]) -> list[dict[str, Any]]:
    return export(demo_db[0], "demo", "sessions")


@pytest.fixture(scope="module")
def events(demo_db: tuple[Path, Result]) -> list[dict[str, Any]]:
    return export(demo_db[0], "demo", "events")


def test_every_record_passes_lulls_validator() -> None:
    made = generate(users=120, days=30, seed=3, until=END)
    assert len(made.records) > 5_000
    for rec in made.records:
        checked = to_record(json.loads(json.dumps(rec)))
        assert checked.received_at is not None and checked.ts <= checked.received_at
    assert len({r["message_id"] for r in made.records}) == len(made.records)


@settings(max_examples=12, deadline=None)
@given(
    users=st.integers(1, 15),
    days=st.integers(1, 10),
    seed=st.integers(0, 2**32),
    until=st.integers(1_700_000_000_000, 1_800_000_000_000),
)
def test_records_lie_in_the_period_in_arrival_order(
    users: int, days: int, seed: int, until: int
) -> None:
    made = generate(users=users, days=days, seed=seed, until=until)
    arrivals = [r["received_at"] for r in made.records]
    assert arrivals == sorted(arrivals)
    for rec in made.records:
        assert until - days * DAY <= rec["ts"] <= rec["received_at"] <= until
        to_record(rec)


def test_same_seed_same_file_other_seed_other_file(tmp_path: Path) -> None:
    db = tmp_path / "none.duckdb"
    files = []
    for n, seed in enumerate(("7", "7", "8")):
        out = tmp_path / f"demo{n}.ndjson"
        done = lull(db, "demo", "--users", "40", "--seed", seed, "--until", UNTIL, "-o", str(out))
        assert done.code == 0, done.err
        files.append(out.read_bytes())
    assert files[0] == files[1]
    assert files[0] != files[2]
    assert not db.exists()  # -o only writes the file


def test_the_file_imported_gives_the_demos_sessions(tmp_path: Path) -> None:
    db, out = tmp_path / "lull.duckdb", tmp_path / "demo.ndjson"
    args = ("--users", "20", "--seed", "5", "--until", UNTIL)
    assert lull(db, "demo", *args, "-o", str(out)).code == 0
    assert lull(db, "--project", "file", "settings", "--sessions", "on").code == 0
    assert lull(db, "--project", "file", "import", str(out)).code == 0
    assert lull(db, "--project", "direct", "demo", *args).code == 0
    assert export(db, "file", "sessions") == export(db, "direct", "sessions")
    assert export(db, "file", "events") == export(db, "direct", "events")


def test_prints_a_summary_and_the_new_projects_keys(demo_db: tuple[Path, Result]) -> None:
    db, made = demo_db
    summary, keys_line = made.out.splitlines()
    listed = {p["name"]: p for p in lull(db, "project", "list").json()}
    assert listed["demo"]["sessions"] == "on"
    assert f"{listed['demo']['events']:,} events" in summary
    assert keys_line.startswith("lull: made project 'demo'")
    assert Keys.of(json.loads(keys_line.split(": ", 2)[2])).read_token.startswith("lull_read_")


def test_session_lengths_are_long_tailed(sessions: list[dict[str, Any]]) -> None:
    lengths = sorted(s["length_s"] for s in sessions)
    median = statistics.median(lengths)
    assert 60 <= median <= 1800
    assert sum(60 <= x < 600 for x in lengths) > 0.25 * len(lengths)  # many 1-10 minutes
    assert sum(x >= 3600 for x in lengths) > 0.02 * len(lengths)  # some an hour or more
    assert statistics.mean(lengths) > 1.5 * median
    assert lengths[int(0.99 * len(lengths))] > 8 * median


def test_weekends_have_longer_listening(demo_db: tuple[Path, Result]) -> None:
    board = lull(demo_db[0], "--project", "demo", "board", "--until", UNTIL).json()
    weekend: list[dict[str, Any]] = []
    weekday: list[dict[str, Any]] = []
    for day in board["per_day"]:
        is_weekend = date.fromisoformat(day["date"]).weekday() >= 5
        (weekend if is_weekend else weekday).append(day)
    assert len(weekend) == 8 and len(weekday) == 22
    total = statistics.mean(d["total_length_s"] for d in weekend)
    assert total > 1.2 * statistics.mean(d["total_length_s"] for d in weekday)
    per_session = sum(d["total_length_s"] for d in weekend) / sum(d["sessions"] for d in weekend)
    weekday_per = sum(d["total_length_s"] for d in weekday) / sum(d["sessions"] for d in weekday)
    assert per_session > 1.2 * weekday_per


def test_evenings_are_busy_and_nights_quiet(sessions: list[dict[str, Any]]) -> None:
    hours = Counter(datetime.fromisoformat(s["first_ts"]).astimezone(UTC).hour for s in sessions)
    evening = sum(hours[h] for h in (18, 19, 20, 21))
    night = sum(hours[h] for h in (2, 3, 4, 5))
    assert evening > 4 * night > 0
    assert hours[7] + hours[8] > hours[10] + hours[11]  # the morning commute


def test_the_user_base_grows(sessions: list[dict[str, Any]]) -> None:
    def active(first: str, last: str) -> int:
        return len({s["profile_id"] for s in sessions if first <= s["first_ts"][:10] <= last})

    assert active("2026-11-20", "2026-11-26") > active("2026-10-28", "2026-11-03")


def test_three_sdk_sources_and_api_events_outside_sessions(
    sessions: list[dict[str, Any]], events: list[dict[str, Any]]
) -> None:
    by_source = Counter(s["source"] for s in sessions)
    assert set(by_source) == {"web", "ios", "android"}
    assert by_source["android"] > by_source["ios"] > 0
    api = [e for e in events if e["source"] == "api"]
    assert {e["name"] for e in api} >= {"Notification Sent", "Subscription Charged"}
    assert all(e["session_id"] is None for e in api)
    names = Counter(e["name"] for e in events if e["session_id"] is not None)
    assert not names.keys() & {"Identity Set", "Notification Clicked", "App Installed"}
    assert {"App Launched", "Screen Viewed", "Song Played", "Song Skipped"} <= names.keys()


def test_some_events_arrive_late(events: list[dict[str, Any]]) -> None:
    late = [e for e in events if e["late"]]
    assert 0 < len(late) < 0.02 * len(events)
    delays = []
    for e in late:
        assert e["session_id"] is None and e["source"] in ("ios", "android")
        ts, received = (datetime.fromisoformat(e[k]) for k in ("ts", "received_at"))
        delays.append((received - ts).total_seconds())
    # mostly the tails of sessions held on a phone that went offline
    assert sum(d > 20 * 60 for d in delays) > 0.8 * len(delays)


def test_profiles_get_their_traits_and_sign_ups_their_links(
    demo_db: tuple[Path, Result],
) -> None:
    con = duckdb.connect(str(demo_db[0]), read_only=True)
    try:
        traits = con.execute(
            """SELECT properties->>'name', properties->>'city', properties->>'plan'
               FROM profiles WHERE profile_id LIKE 'u-%' AND properties IS NOT NULL"""
        ).fetchall()
        links = con.execute("SELECT anonymous_id, profile_id FROM aliases").fetchall()
        anonymous = con.execute(
            "SELECT count(*) FROM events WHERE profile_id LIKE 'anon-%'"
        ).fetchone()
    finally:
        con.close()
    assert len(traits) > 250 and all(all(t) for t in traits)
    assert {t[2] for t in traits} >= {"free", "premium"}
    assert links and all(a.startswith("anon-") and p.startswith("u-") for a, p in links)
    assert anonymous is not None and anonymous[0] > 0  # events before sign-up


def test_refuses_a_project_that_has_events(demo_db: tuple[Path, Result]) -> None:
    db = demo_db[0]
    before = lull(db, "project", "list").json()
    again = lull(db, "demo", "--users", "5", "--until", UNTIL)
    assert again.code == 1
    assert "already has events" in again.err and "--project" in again.err
    assert lull(db, "project", "list").json() == before


def test_leaves_other_projects_alone(tmp_path: Path) -> None:
    db = tmp_path / "lull.duckdb"
    event = {"message_id": "m1", "profile_id": "p", "name": "Page Viewed", "ts": 1, "source": "web"}
    path = write_events(tmp_path / "shop.ndjson", [event])
    assert lull(db, "--project", "shop", "import", str(path)).code == 0
    shop = export(db, "shop", "events")
    assert lull(db, "--project", "radio", "demo", "--users", "5", "--until", UNTIL).code == 0
    assert export(db, "shop", "events") == shop
    names = {p["name"]: p["events"] for p in lull(db, "project", "list").json()}
    assert names["shop"] == 1 and names["radio"] > 0 and "demo" not in names


@pytest.mark.parametrize(
    ("until", "message"),
    [("yesterday", "--until 'yesterday'"), ("2999-01-01", "in the future")],
)
def test_bad_until_is_refused(tmp_path: Path, until: str, message: str) -> None:
    done = lull(tmp_path / "lull.duckdb", "demo", "--until", until)
    assert done.code == 1 and message in done.err
    assert not (tmp_path / "lull.duckdb").exists()


def test_a_demo_store_is_served(tmp_path: Path) -> None:
    db = tmp_path / "lull.duckdb"
    made = lull(db, "demo", "--users", "30", "--until", UNTIL)
    assert made.code == 0, made.err
    keys = Keys.of(json.loads(made.out.splitlines()[1].split(": ", 2)[2]))
    stored = export(db, "demo", "sessions")
    user = next(s["profile_id"] for s in stored if s["profile_id"].startswith("u-"))
    with LullServer(db) as srv:
        srv.start()
        assert srv.default_keys is None  # the demo project has keys: none made at start
        assert len(srv.sessions(keys)) == len(stored)
        profile = srv.profile(keys, user)
        assert profile["properties"]["city"] and profile["latest_session_id"]
        song = {
            "message_id": "x1",
            "profile_id": user,
            "name": "Song Played",
            "ts": "2026-11-27T10:00:00Z",
        }
        sent = srv.post_events(keys.android, [song])
        assert sent.status_code == 200, sent.text
