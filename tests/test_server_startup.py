"""Fast restart with bounded memory (issue "durable ingest log", part 5).

A clean stop saves the live state (`<db>.live`, server/checkpoint.py) and the next start
loads it when the store is as it was left; otherwise (kill -9, `lull import` in between)
the state is rebuilt from the store. Either way the server carries on with the same
sessions and ids. The duplicate window (R6) is rebuilt from the store at each start:
repeats within it are recognised after a restart, a repeat older than it is stored again.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lull.ingest.columns import EventColumns
from lull.server import checkpoint
from lull.server.door import _CHUNK, DAY_MS, Window, hashes
from lull.server.live import LiveEngine
from lull.store.db import connect
from lull.store.log import START, IngestLog
from lullrun import lull
from serverproc import Keys, LullServer, bearer, iso, now_ms


def started_from(srv: LullServer) -> str:
    """Where the last start found the live state: "store", "checkpoint" (saved at a clean
    stop) or "checkpoint + store" (saved while a killed server ran, then caught up)."""
    err = srv.db.with_name(f"{srv.db.name}.serve{srv.starts}.err").read_text()
    ready = [line for line in err.splitlines() if line.startswith("lull: ready in")]
    assert ready, err
    found = re.search(r"live state from the (.*?) [0-9.]+ s", ready[-1])
    assert found, ready
    return found.group(1)


def play(prefix: str, profiles: list[str], ts: int) -> list[dict[str, Any]]:
    return [
        {"message_id": f"{prefix}-{p}", "profile_id": p, "name": "Song Played", "ts": ts}
        for p in profiles
    ]


def sessions_of(srv: LullServer, keys: Keys) -> dict[str, str]:
    """profile -> session id of its Song Played events (each profile has one session)."""
    out: dict[str, set[str]] = {}
    for e in srv.events(keys, name="Song Played"):
        out.setdefault(e["profile_id"], set()).add(e["session_id"])
    assert all(len(ids) == 1 and None not in ids for ids in out.values()), out
    return {p: ids.pop() for p, ids in out.items()}


@pytest.mark.parametrize("how", ["clean", "kill"])
def test_restart_carries_on_with_the_same_sessions(tmp_path: Path, how: str) -> None:
    db = tmp_path / "lull.duckdb"
    with LullServer(db) as srv:
        keys = srv.create_project("app", sessions="on", timeout="30m")
        srv.start()
        assert started_from(srv) == "store"  # nothing saved yet
        profiles = [f"p{i}" for i in range(30)]
        t = now_ms()
        assert srv.post_events(keys.ios, play("a", profiles, t - 5_000)).json()["accepted"] == 30
        before = sessions_of(srv, keys)
        if how == "clean":
            assert srv.stop() == 0
            assert db.with_name("lull.duckdb.live").exists()
        else:
            srv.kill()
        srv.start()
        assert started_from(srv) == ("checkpoint" if how == "clean" else "checkpoint + store")
        # profile rows are up to date at once, after a kill too (the engine writes them
        # every couple of seconds: a start after a kill rebuilds those it may have missed)
        got = srv.http.get("/api/v1/profiles/p3", headers=bearer(keys.read_token))
        assert got.status_code == 200, got.text
        assert got.json()["latest_session_id"] == before["p3"]
        assert got.json()["last_seen"] == iso(t - 5_000)

        # repeats within the window are recognised after the restart
        again = srv.post_events(keys.ios, play("a", profiles, t - 5_000)).json()
        assert (again["accepted"], again["duplicates"]) == (0, 30)
        # the open sessions carry on: new events join them
        got = srv.post_events(keys.ios, play("b", [*profiles, "new"], t)).json()
        assert got["accepted"] == 31
        after = sessions_of(srv, keys)
        assert {p: after[p] for p in profiles} == before
        assert after["new"] not in before.values()
        row = srv.profile(keys, "p3", lambda p: p["last_seen"] == iso(t))
        assert row["latest_session_id"] == before["p3"], row

        # a second restart, the other way round, still the same
        if how == "clean":
            srv.kill()
        else:
            assert srv.stop() == 0
        srv.start()
        assert started_from(srv) == ("checkpoint + store" if how == "clean" else "checkpoint")
        got = srv.post_events(keys.ios, play("c", profiles, t + 1_000)).json()
        assert (got["accepted"], got["duplicates"]) == (30, 0)
        assert srv.post_events(keys.ios, play("b", profiles, t)).json()["duplicates"] == 30
        assert {p: sessions_of(srv, keys)[p] for p in profiles} == before
        srv.stop()
    # the store's counters: event seq and session keys went on without a gap or a repeat
    con = connect(db, read_only=True)
    seqs = [r[0] for r in con.execute("SELECT seq FROM events ORDER BY seq").fetchall()]
    skeys = con.execute("SELECT skey FROM sessions WHERE project_id = 1").fetchall()
    con.close()
    assert seqs == list(range(len(seqs))) and len(seqs) == 30 + 31 + 30
    assert sorted(k for (k,) in skeys) == list(range(31))


def test_checkpoint_not_used_when_the_store_changed(tmp_path: Path) -> None:
    """`lull import` between a clean stop and the next start: the saved state no longer
    matches the store, the start rebuilds it, and sessions continue as imported."""
    db = tmp_path / "lull.duckdb"
    with LullServer(db) as srv:
        keys = srv.create_project("app", sessions="on", timeout="30m")
        srv.start()
        t = now_ms()
        assert srv.post_events(keys.ios, play("a", ["x", "y"], t - 60_000)).status_code == 200
        before = sessions_of(srv, keys)
        assert srv.stop() == 0
        more = tmp_path / "more.ndjson"
        record = {"message_id": "imp-x", "profile_id": "x", "name": "Song Played",
                  "ts": t - 30_000, "source": "ios", "received_at": t - 29_000}  # fmt: skip
        more.write_text(json.dumps(record) + "\n")
        assert lull(db, "--project", "app", "import", str(more), "--keep-open").code == 0
        srv.start()
        assert started_from(srv) == "store"
        assert srv.post_events(keys.ios, play("b", ["x", "y"], t)).json()["accepted"] == 2
        assert srv.post_events(keys.ios, [record | {"ts": t}]).json()["duplicates"] == 1
        after = sessions_of(srv, keys)
        assert after == before
        srv.stop()


def test_a_repeat_older_than_the_window_is_stored_again(tmp_path: Path) -> None:
    """Events imported with received_at 10 and 2 days ago; the server's window is 7 days
    (whole days kept): the 2-day-old id is a duplicate, the 10-day-old one a new event.
    With `--duplicate-window 1d` the 2-day-old one is new too."""
    db = tmp_path / "lull.duckdb"
    now = now_ms()
    rows = [
        {"message_id": f"old-{d}", "profile_id": "z", "name": "Song Played",
         "ts": now - d * DAY_MS, "source": "ios", "received_at": now - d * DAY_MS + 5}
        for d in (10, 2)
    ]  # fmt: skip
    data = tmp_path / "old.ndjson"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with LullServer(db) as srv:
        keys = srv.create_project("app", sessions="on", timeout="30m")
        assert lull(db, "--project", "app", "import", str(data)).code == 0
        srv.start()
        repeat = [{k: r[k] for k in ("message_id", "profile_id", "name", "ts")} for r in rows]
        got = srv.post_events(keys.ios, repeat).json()
        assert (got["accepted"], got["duplicates"]) == (1, 1)
        stored = [e["message_id"] for e in srv.events(keys, profile_id="z", name="Song Played")]
        assert sorted(stored) == ["old-10", "old-10", "old-2"]
        srv.stop()
        srv.serve_args = ["--duplicate-window", "1d"]
        srv.start()
        got = srv.post_events(keys.ios, repeat).json()
        # old-2 is past a 1-day window now; old-10 was stored again a moment ago
        assert (got["accepted"], got["duplicates"]) == (1, 1)
        stored = [e["message_id"] for e in srv.events(keys, profile_id="z", name="Song Played")]
        assert sorted(stored) == ["old-10", "old-10", "old-2", "old-2"]
        srv.stop()


@pytest.mark.parametrize("how", ["clean", "kill"])
def test_checkpoint_holds_what_the_store_rebuilds(tmp_path: Path, how: str) -> None:
    """The state saved at a clean stop is exactly the state rebuilt from the store; so is
    the state saved as a server started, once caught up after it was killed."""
    db = tmp_path / "lull.duckdb"
    with LullServer(db) as srv:
        keys = srv.create_project("app", sessions="on", timeout="1m")
        srv.start()
        t = now_ms()
        first = play("a", [f"p{i}" for i in range(20)], t - 200_000)  # concluded by now
        assert srv.post_events(keys.ios, first).json()["accepted"] == 20
        srv.restart()  # kill -9: the next start saves its state as it starts
        time.sleep(0.5)
        events = play("b", [f"p{i}" for i in range(10)], t - 1_000)  # open
        events += play("c", [f"q{i}" for i in range(5)], t)
        assert srv.post_events(keys.ios, events).json()["accepted"] == 15
        if how == "clean":
            assert srv.stop() == 0
        else:
            srv.kill()
    con = connect(db)
    log = IngestLog(f"{db}.log")
    try:
        engine = LiveEngine(con, log, checkpoint_file=f"{db}.live")
        engine._load()
        assert engine.started_from == ("checkpoint" if how == "clean" else "checkpoint + store")
        engine._replay()  # what the killed server had not applied yet
        for pid, kept in engine.projects.items():
            rebuilt = engine._state(pid, kept.next_seq, kept.next_skey)
            assert kept.known.to_pylist() == list(kept.table.profile_id)
            # the same entries, coded in another order (the run's arrival order)
            a = np.argsort(kept.table.profile_id.astype(str))
            b = np.argsort(rebuilt.table.profile_id.astype(str))
            for name in kept.table.__slots__:
                assert list(getattr(kept.table, name)[a]) == list(getattr(rebuilt.table, name)[b])
            assert list(kept.keys[a]) == list(rebuilt.keys[b])
            if pid == 1:
                assert len(kept.table) == 25 and (kept.keys >= 0).sum() == 15
        engine.con.close()
    finally:
        log.close()
        con.close()


def test_window_hashes_by_day() -> None:
    big = _CHUNK + 10  # a batch this large becomes a sorted run at once
    w = Window()
    w.add(99, hashes([f"z{i}" for i in range(10)]))
    w.add(100, hashes([f"a{i}" for i in range(big)]))  # a day's ids at start
    w.add(101, hashes(["b1", "b2"]))  # today's newest, in a set
    for i in range(3):  # runs of today, merged into one
        w.add(101, hashes([f"c{i}-{j}" for j in range(big)]))
    w.add(100, hashes(["late"]))  # an earlier day: into the closed days
    assert len(w) == 10 + big + 1 + 2 + 3 * big
    assert len(w.closed) == 10 + big + 1 and len(w.runs) == 1
    assert w.newest == set(hashes(["b1", "b2"]).tolist())
    asked = ["a5", "b2", "c2-9", "nope", "a5", "late", "z3"]
    assert w.matches(asked) == ["a5", "b2", "c2-9", "a5", "late", "z3"]
    assert w.since() == 99 * DAY_MS
    w.drop_before(100)
    assert w.matches(asked) == ["a5", "b2", "c2-9", "a5", "late"]
    assert w.since() == 100 * DAY_MS
    w.add(102, ["d".__hash__()])  # a new day: 101 is over
    assert len(w.closed) == big + 1 + 3 * big + 2 and not w.runs
    assert w.matches(["c0-1", "d", "x"]) == ["c0-1", "d"]
    w.drop_before(102)
    assert w.matches([*asked, "d"]) == ["d"] and w.since() == 102 * DAY_MS and len(w) == 1
    w.drop_before(103)
    assert len(w) == 0 and not w.days and not w.matches(["d"])


def test_checkpoint_file_damaged_is_ignored(tmp_path: Path) -> None:
    db = tmp_path / "lull.duckdb"
    with LullServer(db) as srv:
        keys = srv.create_project("app", sessions="on", timeout="30m")
        srv.start()
        assert srv.post_events(keys.ios, play("a", ["x"], now_ms())).status_code == 200
        before = sessions_of(srv, keys)
        assert srv.stop() == 0
        live = db.with_name("lull.duckdb.live")
        live.write_bytes(live.read_bytes()[:100])
        srv.start()
        assert started_from(srv) == "store"
        assert sessions_of(srv, keys) == before
        srv.stop()
    con = connect(db, read_only=True)
    assert checkpoint.load(str(live), con, START, "any") is None
    con.close()


def test_window_memory() -> None:
    """8 bytes an id in the arrays."""
    w = Window()
    n = 4 * _CHUNK
    w.add(5, hashes([f"{i:036d}" for i in range(n)]))
    assert sum(a.nbytes for a in w.runs) == 8 * n and not w.newest


def test_a_hash_match_is_checked_against_the_store() -> None:
    """An id whose hash the window holds is a duplicate only if the store has it (a
    collision of hashes is not a repeat); the store is asked only on a match."""
    from concurrent.futures import Future

    from lull.ingest.records import Event
    from lull.server.door import Door
    from lull.store.log import Position

    in_store = {"in-store"}  # what the store holds: and whatever the engine applies

    class Log:
        def submit(self, table: Any) -> Future[Position]:
            in_store.update(table.column("message_id").to_pylist())
            done: Future[Position] = Future()
            done.set_result(Position(1, 1))
            return done

    class Engine:
        applied = Position(0, 0)

        def enqueue(self, frame: Any) -> None:
            self.applied = frame[-1].position

    asked: list[list[str]] = []

    def stored(pid: int, ids: list[str], since: int) -> set[str]:
        asked.append(sorted(ids))
        return {i for i in ids if i in in_store}

    now = now_ms()
    door = Door(Log(), Engine(), lambda pid: "app", stored=stored)  # type: ignore[arg-type]
    door.remember(1, now // DAY_MS - 1, ["in-store", "collides"])

    def event(mid: str) -> Event:
        return Event(mid, "p", "Song Played", now, "ios", None, {}, "{}")

    async def send(mids: list[str]) -> tuple[int, int]:
        got = await door.take(1, now, EventColumns.of([event(m) for m in mids]))
        return got.accepted, got.duplicates

    assert asyncio.run(send(["new-1", "new-2"])) == (2, 0)
    assert asked == []  # no hash matched: the store is not asked
    assert asyncio.run(send(["in-store", "collides", "new-3"])) == (2, 1)
    assert asked == [["collides", "in-store"]]
    # applied since: on its way from the door's exact set to the window (the keeper
    # thread moves it), a repeat either way
    assert asyncio.run(send(["new-1", "collides", "new-4"])) == (1, 2)
    assert "collides" in asked[-1]
