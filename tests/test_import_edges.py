"""`lull import` at the edges of what a file can hold, through the real CLI and store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lull.importer import _events_at
from lull.store.db import connect
from lullrun import export, lull, write_events

T0 = 1_790_000_000_000
MIN = 60_000


def ev(mid: str, t: int, source: str = "android") -> dict[str, Any]:
    return {"message_id": mid, "profile_id": "u1", "name": "Song Played", "ts": t,
            "source": source, "received_at": t}  # fmt: skip


def test_a_part_with_no_eligible_event_concludes_the_sessions_left_open(
    tmp_path: Path,
) -> None:
    """After `--keep-open`, a next part whose events R1 leaves out (server-side `api`
    events) still moves the clock on: the open session is concluded, as a live server
    would have done, and nothing fails for want of an event to name a session after."""
    db = tmp_path / "lull.duckdb"
    assert lull(db, "settings", "--sessions", "on").code == 0
    first = write_events(tmp_path / "a.ndjson", [ev("m1", T0), ev("m2", T0 + MIN)])
    done = lull(db, "import", "--keep-open", str(first))
    assert done.code == 0, done.err
    assert [s["concluded"] for s in export(db, "sessions", tmp_path)] == [False]
    later = write_events(tmp_path / "b.ndjson", [ev("m3", T0 + 90 * MIN, source="api")])
    done = lull(db, "import", str(later))
    assert done.code == 0, done.err
    assert done.json()["eligible"] == 0
    sessions = export(db, "sessions", tmp_path)
    assert [(s["concluded"], s["events"], s["length_s"]) for s in sessions] == [(True, 2, 60)]


def test_events_are_read_back_in_the_order_asked(tmp_path: Path) -> None:
    """The writes take their heads', firsts' and lasts' columns from `_events_at`, which
    must give them in the order of the seqs asked (not the store's), and never fewer."""
    db = tmp_path / "lull.duckdb"
    assert lull(db, "settings", "--sessions", "on").code == 0
    lines = [ev(f"m{i}", T0 + i * MIN) for i in range(40)]
    assert lull(db, "import", str(write_events(tmp_path / "a.ndjson", lines))).code == 0
    con = connect(db)
    try:
        ((pid,),) = con.execute("SELECT id FROM projects WHERE name = 'default'").fetchall()
        asked = np.array([7, 31, 0, 12, 39, 3], dtype=np.int64)
        got = _events_at(con, pid, asked, "message_id, ts").to_pydict()
        assert got["message_id"] == [f"m{i}" for i in asked]
        assert got["ts"] == [T0 + int(i) * MIN for i in asked]
        with pytest.raises(AssertionError):
            _events_at(con, pid, np.array([5, 40], dtype=np.int64), "message_id")
    finally:
        con.close()
