"""The session rules end to end through `lull import` on a real DuckDB file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest

from lull.store import ends
from lullrun import export, lull, write_events

T0 = 1_790_000_000_000  # 2026-09-21T...Z, epoch ms
MIN = 60_000


def ev(mid: str, t: int, profile: str = "u1", **extra: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "message_id": mid,
        "profile_id": profile,
        "name": "Song Played",
        "ts": t,
        "source": "android",
        "properties": {"n": mid},
    }
    record.update(extra)
    return record


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "lull.duckdb"
    assert lull(path, "settings", "--sessions", "on").code == 0
    return path


def run_import(db: Path, tmp: Path, events: list[dict[str, Any]], *args: str) -> dict[str, Any]:
    result = lull(db, "import", str(write_events(tmp / "in.ndjson", events)), *args)
    assert result.code == 0, result.err
    report: dict[str, Any] = result.json()
    return report


def sessions_of(db: Path, tmp: Path) -> list[dict[str, Any]]:
    return export(db, "sessions", tmp)


def session_ids(db: Path, tmp: Path) -> dict[str, str | None]:
    return {
        e["message_id"]: e["session_id"]
        for e in export(db, "events", tmp)
        if e["name"] != "Session Concluded"
    }


def test_gap_of_exactly_the_timeout_splits(db: Path, tmp_path: Path) -> None:
    run_import(db, tmp_path, [ev("a", T0), ev("b", T0 + 20 * MIN)])
    assert [s["events"] for s in sessions_of(db, tmp_path)] == [1, 1]


def test_gap_one_ms_short_of_the_timeout_joins(db: Path, tmp_path: Path) -> None:
    run_import(db, tmp_path, [ev("a", T0), ev("b", T0 + 20 * MIN - 1)])
    [session] = sessions_of(db, tmp_path)
    assert (session["events"], session["length_s"]) == (2, 20 * 60 - 1)


def test_excluded_events_neither_start_nor_extend(db: Path, tmp_path: Path) -> None:
    run_import(
        db,
        tmp_path,
        [ev("a", T0), ev("n", T0 + 15 * MIN, name="Notification Sent"), ev("b", T0 + 30 * MIN)],
    )
    assert [s["events"] for s in sessions_of(db, tmp_path)] == [1, 1]
    assert session_ids(db, tmp_path)["n"] is None


def test_api_events_neither_start_nor_extend(db: Path, tmp_path: Path) -> None:
    run_import(
        db, tmp_path, [ev("a", T0), ev("x", T0 + 15 * MIN, source="api"), ev("b", T0 + 30 * MIN)]
    )
    assert [s["events"] for s in sessions_of(db, tmp_path)] == [1, 1]
    assert session_ids(db, tmp_path)["x"] is None


def test_sessions_off_gives_no_session(tmp_path: Path) -> None:
    path = tmp_path / "off.duckdb"
    run_import(path, tmp_path, [ev("a", T0), ev("b", T0 + MIN)])
    assert sessions_of(path, tmp_path) == []
    assert set(session_ids(path, tmp_path).values()) == {None}


def test_duplicates_are_acknowledged_and_ignored(db: Path, tmp_path: Path) -> None:
    first = run_import(db, tmp_path, [ev("a", T0), ev("a", T0 + MIN), ev("b", T0 + 2 * MIN)])
    again = run_import(db, tmp_path, [ev("b", T0 + 3 * MIN), ev("c", T0 + 4 * MIN)])
    assert (first["duplicates"], again["duplicates"]) == (1, 1)
    events = [e for e in export(db, "events", tmp_path) if e["name"] != "Session Concluded"]
    assert sorted(e["message_id"] for e in events) == ["a", "b", "c"]
    assert next(e for e in events if e["message_id"] == "a")["ts"] == "2026-09-21T14:13:20.000Z"


def test_duplicates_take_no_part_in_sessions(db: Path, tmp_path: Path) -> None:
    """The engine runs while the duplicates are looked for; when there are some, the
    import is replayed without them: a repeat neither extends nor starts a session, in
    the file or against the store (whose session the first import left open)."""

    def live(mid: str, t: int) -> dict[str, Any]:
        return ev(mid, t, received_at=t + 1000)

    run_import(db, tmp_path, [live("a", T0), live("b", T0 + MIN)], "--keep-open")
    later = [live("c", T0 + 2 * MIN), live("a", T0 + 2 * MIN + 1), live("d", T0 + 3 * MIN)]
    later += [live("c", T0 + 40 * MIN)]
    report = run_import(db, tmp_path, later)
    assert report["duplicates"] == 2
    [session] = sessions_of(db, tmp_path)
    assert (session["events"], session["concluded"]) == (4, True)
    assert session["last_ts"] == "2026-09-21T14:16:20.000Z"  # d, at T0 + 3 min
    assert set(session_ids(db, tmp_path).values()) == {session["session_id"]}


def test_clock_skew_is_corrected_from_sent_at(db: Path, tmp_path: Path) -> None:
    # the client's clock runs an hour fast: sent_at says T0+1h when the server reads T0+5s
    run_import(
        db, tmp_path, [ev("a", T0 + 60 * MIN, sent_at=T0 + 60 * MIN + 1000, received_at=T0 + 5000)]
    )
    [event] = [e for e in export(db, "events", tmp_path) if e["message_id"] == "a"]
    assert event["ts"] == "2026-09-21T14:13:24.000Z"  # T0 + 4 s


def test_event_time_in_the_future_is_taken_as_received_at(db: Path, tmp_path: Path) -> None:
    run_import(db, tmp_path, [ev("a", T0 + 3 * 60 * MIN, received_at=T0)])
    [event] = [e for e in export(db, "events", tmp_path) if e["message_id"] == "a"]
    assert event["ts"] == "2026-09-21T14:13:20.000Z"


def test_events_shuffled_within_one_arrival_give_r2(db: Path, tmp_path: Path) -> None:
    times = [T0 + 50 * MIN, T0, T0 + 10 * MIN, T0 + 65 * MIN, T0 + 25 * MIN]
    events = [ev(f"e{i}", t, received_at=T0 + 90 * MIN) for i, t in enumerate(times)]
    run_import(db, tmp_path, events)
    spans = [(s["first_ts"], s["last_ts"], s["events"]) for s in sessions_of(db, tmp_path)]
    assert spans == [
        ("2026-09-21T14:13:20.000Z", "2026-09-21T14:38:20.000Z", 3),
        ("2026-09-21T15:03:20.000Z", "2026-09-21T15:18:20.000Z", 2),
    ]


def test_late_event_after_its_session_concluded(db: Path, tmp_path: Path) -> None:
    report = run_import(
        db,
        tmp_path,
        [
            ev("a", T0, received_at=T0),
            # arrives after the session fell due (T0 + 20 min), yet belongs to it
            ev("late", T0 + 5 * MIN, received_at=T0 + 30 * MIN),
        ],
    )
    assert report["late"] == 1
    [session] = sessions_of(db, tmp_path)
    assert session["events"] == 1
    [late] = [e for e in export(db, "events", tmp_path) if e["message_id"] == "late"]
    assert (late["late"], late["session_id"]) == (True, None)
    board = lull(db, "board", "--until", "2026-09-21", "--days", "1").json()
    assert board["late_events"] == 1


def test_events_of_equal_received_at_are_applied_before_concluding(
    db: Path, tmp_path: Path
) -> None:
    # the session [T0] falls due at T0 + 20 min, exactly when the second batch arrives
    due = T0 + 20 * MIN
    run_import(
        db,
        tmp_path,
        [
            ev("a", T0, received_at=T0),
            ev("b", due, received_at=due),
            ev("c", T0 + 10 * MIN, received_at=due),
        ],
    )
    [session] = sessions_of(db, tmp_path)
    assert (session["events"], session["length_s"]) == (3, 20 * 60)


def test_one_ms_after_due_the_session_is_final(db: Path, tmp_path: Path) -> None:
    due = T0 + 20 * MIN
    report = run_import(
        db,
        tmp_path,
        [ev("a", T0, received_at=T0), ev("c", T0 + 10 * MIN, received_at=due + 1)],
    )
    assert report["late"] == 1


def test_session_concluded_event_carries_length_and_id(db: Path, tmp_path: Path) -> None:
    run_import(db, tmp_path, [ev("a", T0), ev("b", T0 + 90_500)])
    [concluded] = [e for e in export(db, "events", tmp_path) if e["name"] == "Session Concluded"]
    [session] = sessions_of(db, tmp_path)
    assert concluded["ts"] == "2026-09-21T14:14:50.500Z"  # the last event's time
    assert concluded["properties"] == {
        "Session Length": 90,
        "Session ID": session["session_id"],
    }
    assert concluded["session_id"] == session["session_id"]


def test_session_not_yet_due_stays_open(db: Path, tmp_path: Path) -> None:
    import time

    now = time.time_ns() // 1_000_000
    run_import(db, tmp_path, [ev("a", now - 5 * MIN, received_at=now - 5 * MIN)])
    [session] = sessions_of(db, tmp_path)
    assert session["concluded"] is False
    assert [e["name"] for e in export(db, "events", tmp_path)] == ["Song Played"]


def test_per_day_counts_sessions_on_their_local_day(db: Path, tmp_path: Path) -> None:
    # ends 2026-11-02T04:30Z: still Nov 1 in New York (UTC-5), Nov 2 in UTC
    end = 1_793_593_800_000
    run_import(db, tmp_path, [ev("a", end - 10 * MIN), ev("b", end)])
    utc = lull(db, "board", "--until", "2026-11-02", "--days", "2").json()
    assert [(d["date"], d["sessions"]) for d in utc["per_day"]] == [
        ("2026-11-01", 0),
        ("2026-11-02", 1),
    ]
    assert lull(db, "settings", "--timezone", "America/New_York").code == 0
    local = lull(db, "board", "--until", "2026-11-02", "--days", "2").json()
    assert [(d["date"], d["sessions"], d["total_length_s"]) for d in local["per_day"]] == [
        ("2026-11-01", 1, 600),
        ("2026-11-02", 0, 0),
    ]


def test_timeout_change_then_resessionize(db: Path, tmp_path: Path) -> None:
    run_import(db, tmp_path, [ev("a", T0), ev("b", T0 + 25 * MIN), ev("c", T0 + 50 * MIN)])
    assert len(sessions_of(db, tmp_path)) == 3
    assert lull(db, "settings", "--timeout", "30m").code == 0
    rebuilt = lull(db, "resessionize")
    assert rebuilt.code == 0, rebuilt.err
    [session] = sessions_of(db, tmp_path)
    assert (session["events"], session["length_s"]) == (3, 50 * 60)
    concluded = [e for e in export(db, "events", tmp_path) if e["name"] == "Session Concluded"]
    assert [c["properties"]["Session Length"] for c in concluded] == [3000]
    assert set(session_ids(db, tmp_path).values()) == {session["session_id"]}


def test_resessionize_takes_in_late_events(db: Path, tmp_path: Path) -> None:
    run_import(
        db,
        tmp_path,
        [ev("a", T0, received_at=T0), ev("late", T0 + 5 * MIN, received_at=T0 + 30 * MIN)],
    )
    assert lull(db, "resessionize").code == 0
    [session] = sessions_of(db, tmp_path)
    assert session["events"] == 2
    ids = session_ids(db, tmp_path)
    assert ids["late"] == ids["a"] == session["session_id"]


def test_resessionize_backfills_history_received_while_off(tmp_path: Path) -> None:
    path = tmp_path / "backfill.duckdb"
    run_import(path, tmp_path, [ev("a", T0), ev("b", T0 + MIN)])
    assert lull(path, "settings", "--sessions", "on").code == 0
    assert lull(path, "resessionize").code == 0
    [session] = sessions_of(path, tmp_path)
    assert session["events"] == 2


_ENDS = (
    "skey, profile_id, source, concluded, first_ts, last_ts, events, prev_last_ts, "
    "first_seq, first_name, last_name, first_properties::VARCHAR"
)


def ends_stored_and_found(db: Path) -> tuple[list[Any], list[Any]]:
    """session_ends as written, and as `ends.computed` finds them from the events."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        stored = con.execute(f"SELECT {_ENDS} FROM session_ends ORDER BY skey").fetchall()
        found = con.execute(f"SELECT {_ENDS} FROM ({ends.computed('1')}) ORDER BY skey")
        return stored, found.fetchall()
    finally:
        con.close()


ENDS_EVENTS = [
    ev("a1", T0, name="App Opened", received_at=T0),
    ev("a2", T0 + MIN, name="Song Played", received_at=T0 + MIN),
    ev("a0", T0, name="Screen Viewed", received_at=T0 + 2 * MIN),  # a tie, later
    ev("late", T0 - 5 * MIN, received_at=T0 + 50 * MIN),  # late at import
    ev("a3", T0 + 40 * MIN, name="Search Performed", received_at=T0 + 40 * MIN),
    ev("b1", T0 + 3 * MIN, profile="u2", received_at=T0 + 3 * MIN),
    ev("b2", T0 + 2 * MIN, profile="u2", name="Song Skipped", received_at=T0 + 4 * MIN),
    ev("api", T0 + 5 * MIN, profile="u2", source="api", received_at=T0 + 5 * MIN),
    ev("b3", T0 + 90 * MIN, profile="u2", received_at=T0 + 90 * MIN),
]


def test_import_writes_the_ends_the_events_give(db: Path, tmp_path: Path) -> None:
    """The import writes session_ends of the sessions it made whole from the engine's
    rows (first and last event in R2 order, not the head that started the session), and
    leaves to ends.fill those carried from the store or following stored ones: in all,
    the very rows `ends.computed` finds from the events."""
    run_import(db, tmp_path, ENDS_EVENTS, "--keep-open")  # b3's session stays open
    stored, found = ends_stored_and_found(db)
    assert len(stored) == 3
    assert stored == found
    more = [ev("b4", T0 + 91 * MIN, profile="u2", received_at=T0 + 91 * MIN)]  # carried
    more += [ev("a4", T0 + 120 * MIN, name="App Closed", received_at=T0 + 120 * MIN)]
    more += [ev("c1", T0 + 121 * MIN, profile="u3", received_at=T0 + 121 * MIN)]  # fresh
    run_import(db, tmp_path, more)
    stored, found = ends_stored_and_found(db)
    assert len(stored) == 6
    assert stored == found


def test_resessionize_writes_the_ends_the_events_give(db: Path, tmp_path: Path) -> None:
    """The rebuild writes session_ends from its own arrays (first and last event in R2
    order, the previous session's end): the very rows `ends.computed` finds from the
    events, for sessions with ties, events out of order, late ones, several a profile."""
    run_import(db, tmp_path, ENDS_EVENTS, "--keep-open")
    assert lull(db, "resessionize").code == 0
    stored, found = ends_stored_and_found(db)
    assert len(stored) == 4
    assert stored == found


_STATE = {
    "sessions": """SELECT session_id, profile_id, first_ts, last_ts, events, source, concluded,
                          concluded_at FROM sessions""",
    "event_sessions": """SELECT es.seq, s.session_id, es.late FROM event_sessions es
                         LEFT JOIN sessions s USING (project_id, skey)""",
    "session_ends": """SELECT s.session_id, m.profile_id, m.source, m.concluded, m.first_ts,
                              m.last_ts, m.events, m.prev_last_ts, m.first_seq, m.first_name,
                              m.last_name, m.first_properties::VARCHAR
                       FROM session_ends m JOIN sessions s USING (project_id, skey)""",
    "profiles": """SELECT profile_id, latest_session_id, latest_first_ts, horizon, first_seen,
                          last_seen FROM profiles""",
}


def store_state(db: Path) -> dict[str, list[Any]]:
    """What a rebuild writes, by content (session keys are the store's own)."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {name: sorted(con.execute(sql).fetchall(), key=repr) for name, sql in _STATE.items()}
    finally:
        con.close()


def rebuilt_from_nothing(tmp: Path, events: list[dict[str, Any]], *settings: str) -> Path:
    """The history imported with sessions off, then the settings, then a rebuild: every
    session written anew (none stored to keep)."""
    path = tmp / "from-nothing.duckdb"
    run_import(path, tmp, events)
    assert lull(path, "settings", "--sessions", "on", *settings).code == 0
    report = lull(path, "resessionize")
    assert report.code == 0, report.err
    assert report.json()["sessions_written"] == report.json()["sessions"]
    return path


def regular(profiles: int) -> list[dict[str, Any]]:
    """Profiles with two sessions each, every event on time (the import's sessions are
    R2's: a rebuild keeps them)."""
    out = []
    for p in range(profiles):
        for k, at in enumerate((0, 3, 7, 60, 62)):
            t = T0 + at * MIN + p
            out.append(ev(f"r{p}-{k}", t, profile=f"p{p}", received_at=t))
    return out


def test_resessionize_keeps_what_is_unchanged_and_writes_what_a_full_rebuild_does(
    db: Path, tmp_path: Path
) -> None:
    """After an import, the rebuild writes only the sessions that change (late events
    taken in; a session opened by an event that is not its first in time, renamed after
    that one, R3), and the store ends as a rebuild that wrote every session leaves it."""
    events = regular(20) + ENDS_EVENTS
    events += [  # u9's first arrival is its session's second event in time
        ev("u9-b", T0 + 10 * MIN, profile="u9", received_at=T0 + 10 * MIN),
        ev("u9-a", T0 + 8 * MIN, profile="u9", received_at=T0 + 11 * MIN),
    ]
    run_import(db, tmp_path, sorted(events, key=lambda e: e["received_at"]))
    before = session_ids(db, tmp_path)
    assert before["late"] is None
    report = lull(db, "resessionize")
    assert report.code == 0, report.err
    assert report.json()["sessions"] == 40 + 4 + 1
    assert 0 < report.json()["sessions_written"] < 10
    after = session_ids(db, tmp_path)
    assert after["r3-0"] == before["r3-0"]  # kept
    assert after["late"] == after["a1"]
    assert after["u9-a"] == after["u9-b"] != before["u9-b"]
    full = rebuilt_from_nothing(tmp_path, sorted(events, key=lambda e: e["received_at"]))
    assert store_state(db) == store_state(full)
    stored, found = ends_stored_and_found(db)
    assert stored == found


def test_resessionize_after_the_excluded_names_change_keeps_nothing_they_touch(
    db: Path, tmp_path: Path
) -> None:
    """u1's session holds the same number of events between the same times once "Foo" is
    excluded and "Notification Sent" no longer is, but not the same events: it is not
    kept, and every table is as a rebuild from nothing leaves it."""
    u1 = [
        ev("a", T0, received_at=T0),
        ev("foo", T0 + 5 * MIN, name="Foo", received_at=T0 + 5 * MIN),
        ev("note", T0 + 7 * MIN, name="Notification Sent", received_at=T0 + 7 * MIN),
        ev("c", T0 + 10 * MIN, received_at=T0 + 10 * MIN),
    ]
    events = sorted(regular(20) + u1, key=lambda e: e["received_at"])
    run_import(db, tmp_path, events)
    assert session_ids(db, tmp_path)["foo"] == session_ids(db, tmp_path)["a"]
    assert lull(db, "settings", "--excluded", "Foo").code == 0
    assert lull(db, "resessionize").code == 0
    ids = session_ids(db, tmp_path)
    assert ids["foo"] is None
    assert ids["note"] == ids["a"] == ids["c"] is not None
    full = rebuilt_from_nothing(tmp_path, events, "--excluded", "Foo")
    assert store_state(db) == store_state(full)
