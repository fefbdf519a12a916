"""The fast event queries (read API, Events and Profile pages) give exactly what the plain
`all_events` view gives: events joined with their sessions, Session Concluded included."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from browser import music_month, recent
from lull.model import format_time
from lull.server import reads
from lull.store.db import connect
from lull.store.events import latest, of_sessions
from lull.store.events import names as event_names
from lull.store.projects import project_id
from lullrun import lull, write_events

SOURCES = {"ios": "ios", "android": "android", "web": "web"}


@pytest.fixture(scope="module")
def store(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[duckdb.DuckDBPyConnection, int]]:
    """A month of 12 listeners, imported; then likes inside concluded sessions (late)."""
    tmp = tmp_path_factory.mktemp("webevents")
    db = tmp / "lull.duckdb"
    month = music_month(3, 12, recent(3))
    records = [e | {"source": p.source} for p in month for e in p.events]
    late = [
        {"message_id": f"late-{p.profile_id}", "profile_id": p.profile_id, "name": "Song Liked",
         "ts": p.events[len(p.events) // 2]["ts"], "source": p.source}
        for p in month[:4]
    ]  # fmt: skip
    assert lull(db, "settings", "--sessions", "on").code == 0
    for name, part in (("month", records), ("late", late)):
        done = lull(db, "import", str(write_events(tmp / f"{name}.ndjson", part)))
        assert done.code == 0, done.err
    assert json.loads(done.out)["late"] == 4
    con = connect(db, read_only=True)
    yield con, project_id(con, "default", create=False)
    con.close()


def plainly(
    con: duckdb.DuckDBPyConnection,
    pid: int,
    name: str | None = None,
    profile: str | None = None,
    sid: str | None = None,
    limit: int = 100,
    lo: int = 0,
    hi: int = 2**62,
    prefix: bool = False,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """The oracle: the newest events straight from the all_events view (slow, obvious)."""
    like = "lower({0}) LIKE lower(replace(replace({1}, '_', '\\_'), '%', '\\%')) || '%' ESCAPE '\\'"
    name_is = like.format("name", "$name") if prefix else "name = $name"
    profile_is = like.format("profile_id", "$profile") if prefix else "profile_id = $profile"
    rows = con.execute(
        f"""SELECT message_id, profile_id, name, ts, source, received_at,
                  properties::VARCHAR, session_id, late
           FROM all_events WHERE project_id = $pid AND ts BETWEEN $lo AND $hi
           AND ($profile IS NULL OR {profile_is})
           AND ($sid IS NULL OR session_id = $sid) AND ($name IS NULL OR {name_is})
           ORDER BY ts DESC, seq DESC NULLS FIRST, message_id LIMIT $limit OFFSET $offset""",
        {
            "offset": offset,
            "pid": pid,
            "lo": lo,
            "hi": hi,
            "profile": profile,
            "sid": sid,
            "name": name,
            "limit": limit,
        },
    ).fetchall()
    keys = ("message_id", "profile_id", "name", "ts", "source", "received_at",
            "properties", "session_id", "late")  # fmt: skip
    out = [dict(zip(keys, row, strict=True)) for row in rows]
    for e in out:
        e["ts"], e["received_at"] = format_time(e["ts"]), format_time(e["received_at"])
        e["properties"] = json.loads(e["properties"] or "{}")
        e["late"] = bool(e["late"])
    return out


def names(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [n for (n,) in con.execute("SELECT DISTINCT name FROM all_events ORDER BY 1").fetchall()]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_latest_equals_the_plain_view(
    store: tuple[duckdb.DuckDBPyConnection, int], data: st.DataObject
) -> None:
    con, pid = store
    sids = [
        s
        for (s,) in con.execute(
            "SELECT session_id FROM sessions ORDER BY session_id LIMIT 10"
        ).fetchall()
    ]
    name = data.draw(st.sampled_from([None, "no such event", *names(con)]))
    profile = data.draw(st.sampled_from([None, "u-1000", "u-1003", "u-1011", "nobody"]))
    sid = data.draw(st.sampled_from([None, "0" * 32, *sids]))
    limit = data.draw(st.integers(1, 400))
    lo_hi = con.execute("SELECT min(ts), max(ts) FROM events").fetchone()
    assert lo_hi is not None
    lo = data.draw(st.integers(lo_hi[0] - 1, lo_hi[1] + 1))
    hi = data.draw(st.integers(lo, lo_hi[1] + 10**9))
    expected = plainly(con, pid, name, profile, sid, limit, lo, hi)
    assert latest(con, pid, name, profile, sid, limit, lo, hi) == expected
    # The read API answers with the same function.
    params = {"name": name, "profile_id": profile, "session_id": sid, "limit": str(limit),
              "from": str(lo), "to": str(hi)}  # fmt: skip
    assert reads.events(con, pid, {k: v for k, v in params.items() if v is not None}) == expected


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_a_search_box_matches_the_start_ignoring_case_a_page_at_a_time(
    store: tuple[duckdb.DuckDBPyConnection, int], data: st.DataObject
) -> None:
    con, pid = store
    name = data.draw(st.sampled_from([None, "", "s", "SONG", "session c", "app_", "%", "Zz"]))
    profile = data.draw(st.sampled_from([None, "", "U-100", "u-1", "u-1003", "nobody"]))
    limit = data.draw(st.integers(1, 150))
    offset = data.draw(st.integers(0, 600))
    expected = plainly(con, pid, name, profile, None, limit, prefix=True, offset=offset)
    got = latest(con, pid, name, profile, None, limit, prefix=True, offset=offset)
    assert got == expected


def test_the_name_picker_lists_every_name_once(
    store: tuple[duckdb.DuckDBPyConnection, int],
) -> None:
    con, pid = store
    assert event_names(con, pid) == sorted(names(con), key=lambda n: (n.lower(), n))
    assert "Session Concluded" in event_names(con, pid)


def test_the_newest_events_include_late_and_concluded_ones(
    store: tuple[duckdb.DuckDBPyConnection, int],
) -> None:
    con, pid = store
    every = latest(con, pid, limit=100_000)
    assert every == plainly(con, pid, limit=100_000)
    assert sum(e["late"] for e in every) == 4
    assert {e["name"] for e in every} >= {"Session Concluded", "Song Played", "App Installed"}


def test_of_sessions_gives_each_sessions_events_in_time_order(
    store: tuple[duckdb.DuckDBPyConnection, int],
) -> None:
    con, pid = store
    sessions = reads.sessions(con, pid, {"profile_id": "u-1002", "limit": "8"})
    found = of_sessions(con, pid, "u-1002", [s["session_id"] for s in sessions])
    assert list(found) == [s["session_id"] for s in sessions]
    for s in sessions:
        expected = plainly(con, pid, sid=s["session_id"], limit=10_000)
        expected.sort(key=lambda e: (e["ts"], e["name"] == "Session Concluded"))
        assert found[s["session_id"]] == expected
        assert found[s["session_id"]][-1]["name"] == "Session Concluded"
    assert of_sessions(con, pid, "u-1002", []) == {}
