"""The live segments' watcher on a real DuckDB store and a real receiver: the hook never
waits (a full queue drops, and the delivery log says how many), and with no live segment
it does nothing."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow as pa

from lull.segments.live import Watcher
from lull.store import segments as store
from lull.store.db import connect
from lull.store.projects import project_id


def _events(pid: int, seqs: range) -> pa.Table:
    """Rows as the live engine commits them (the events table's columns)."""
    n = len(seqs)
    return pa.table({
        "project_id": pa.array([pid] * n, pa.int32()), "seq": pa.array(list(seqs), pa.int64()),
        "message_id": [f"m{s}" for s in seqs], "profile_id": ["ann"] * n,
        "name": ["Buy"] * n, "ts": pa.array([1_790_812_800_000] * n, pa.int64()),
        "source": ["web"] * n, "received_at": pa.array([1_790_812_800_000] * n, pa.int64()),
        "properties": ['{"amount": 1}'] * n,
    })  # fmt: skip


def test_a_full_queue_drops_and_says_how_many(tmp_path: Path) -> None:
    calls: list[float] = []
    release = threading.Event()

    class Slow(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            calls.append(time.monotonic())
            release.wait(10)  # the worker is stuck in its first delivery
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    con = connect(tmp_path / "lull.duckdb")
    try:
        pid = project_id(con, "shop")
        table = _events(pid, range(12))
        con.register("t", table)
        con.execute("INSERT INTO events SELECT * FROM t")
        url = f"http://127.0.0.1:{httpd.server_address[1]}/hook"
        store.save(con, pid, "buys", "live", {"event": "Buy", "where": [], "first_time": False,
                                              "webhook": url}, url)  # fmt: skip
        watcher = Watcher(con, max_pending=3)
        watcher.stored([_events(pid, range(1))])
        deadline = time.monotonic() + 10
        while not calls:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        started = time.monotonic()
        watcher.stored([_events(pid, range(1, 12))])  # 11 candidates, room for 3
        assert time.monotonic() - started < 0.5  # did not wait for the worker
        release.set()
        while True:
            log = store.deliveries(con, pid, "buys")
            if sum(d["outcome"] == "delivered" for d in log) == 4 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        outcomes = sorted((d["outcome"], d["error"]) for d in log)
        assert outcomes == [("delivered", None)] * 4 + [
            ("dropped", "8 deliveries dropped: the queue was full")
        ]
        watcher.close()
    finally:
        httpd.shutdown()
        con.close()


def test_without_live_segments_the_hook_does_nothing(tmp_path: Path) -> None:
    con = connect(tmp_path / "lull.duckdb")
    try:
        pid = project_id(con, "shop")
        store.save(con, pid, "past", "past", {"days": 7, "conditions": []})
        watcher = Watcher(con)
        assert watcher.by_project == {}
        watcher.stored([_events(pid, range(1000))])
        assert watcher.pending.qsize() == 0 and watcher._thread is None  # no worker started
    finally:
        con.close()


def test_a_live_segment_of_another_event_queues_nothing(tmp_path: Path) -> None:
    con = connect(tmp_path / "lull.duckdb")
    try:
        pid = project_id(con, "shop")
        url = "http://127.0.0.1:9/"
        hook = {"event": "Sell", "where": [], "first_time": False, "webhook": url}
        store.save(con, pid, "sells", "live", hook, url)
        watcher = Watcher(con)
        watcher.stored([_events(pid, range(5))])
        assert watcher.pending.qsize() == 0
        assert json.dumps(store.deliveries(con, pid, "sells")) == "[]"
    finally:
        con.close()


def test_a_table_of_two_projects_fires_only_the_segments_own(tmp_path: Path) -> None:
    con = connect(tmp_path / "lull.duckdb")
    try:
        mine, other = project_id(con, "shop"), project_id(con, "other")
        both = pa.concat_tables([_events(mine, range(3)), _events(other, range(3, 6))])
        con.register("t", both)
        con.execute("INSERT INTO events SELECT * FROM t")
        url = "http://127.0.0.1:9/"  # nothing listens: each delivery is logged as retrying
        hook = {"event": "Buy", "where": [], "first_time": False, "webhook": url}
        store.save(con, mine, "buys", "live", hook, url)
        watcher = Watcher(con)
        watcher.stored([both])
        deadline = time.monotonic() + 10
        while len(store.deliveries(con, mine, "buys")) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        firsts = [d for d in store.deliveries(con, mine, "buys") if d["attempt"] == 1]
        assert sorted(d["message_id"] for d in firsts) == ["m0", "m1", "m2"]
        assert all(d["outcome"] == "retrying" and d["status"] is None for d in firsts)
        watcher.close()
    finally:
        con.close()


def test_the_delivery_log_keeps_each_segments_latest_attempts(tmp_path: Path) -> None:
    con = connect(tmp_path / "lull.duckdb")
    try:
        pid = project_id(con, "shop")
        rows: list[store.Attempt] = [
            (pid, seg, f"m{i}", "ann", 1, 1000 + i, 200, "delivered", None)
            for seg in ("a", "b")
            for i in range(30 if seg == "a" else 5)
        ]
        store.log_attempts(con, rows)
        store.prune_deliveries(con, keep=10)
        kept = store.deliveries(con, pid, "a", limit=100)
        assert [d["message_id"] for d in kept] == [f"m{i}" for i in range(29, 19, -1)]
        assert len(store.deliveries(con, pid, "b", limit=100)) == 5
    finally:
        con.close()
