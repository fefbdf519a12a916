"""The Events and Profile pages' fast queries give exactly the read API's events."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from browser import music_month, recent
from lull.server import reads
from lull.store.db import connect
from lull.store.projects import project_id
from lull.web.events import latest, of_sessions
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


def names(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [n for (n,) in con.execute("SELECT DISTINCT name FROM all_events ORDER BY 1").fetchall()]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_latest_equals_the_read_api(
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
    params = {"name": name, "profile_id": profile, "session_id": sid, "limit": str(limit)}
    expected = reads.events(con, pid, {k: v for k, v in params.items() if v is not None})
    assert latest(con, pid, name, profile, sid, limit) == expected


def test_the_newest_events_include_late_and_concluded_ones(
    store: tuple[duckdb.DuckDBPyConnection, int],
) -> None:
    con, pid = store
    every = latest(con, pid, limit=100_000)
    assert every == reads.events(con, pid, {"limit": "10000"})[: len(every)]
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
        expected: list[dict[str, Any]] = reads.events(con, pid, {"session_id": s["session_id"]})
        expected.sort(key=lambda e: (e["ts"], e["name"] == "Session Concluded"))
        assert found[s["session_id"]] == expected
        assert found[s["session_id"]][-1]["name"] == "Session Concluded"
    assert of_sessions(con, pid, "u-1002", []) == {}
