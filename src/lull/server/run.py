"""Starting the server: open the store, start the live engine, serve HTTP."""

from __future__ import annotations

import gc
import importlib.abc
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from importlib.machinery import ModuleSpec
from types import FrameType, ModuleType
from typing import Any

import duckdb
import numpy as np
import pyarrow.compute as pc
import uvicorn

from lull.errors import Conflict, LullError
from lull.server.app import Server, build
from lull.server.door import DAY_MS, DEFAULT_WINDOW_MS, EVENT, Door
from lull.server.fast import FastIngest
from lull.server.front import Forward, FrontEngine, Split, StoreProcess
from lull.server.ingest_only import as_engine, load
from lull.server.live import applied_position, save_applied_position
from lull.store.db import connect, transaction
from lull.store.ends import fill_all as fill_all_ends
from lull.store.keys import create_project
from lull.store.log import IngestLog
from lull.store.projects import get_settings, project_id, save_settings


def serve(
    db: str,
    host: str,
    port: int,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    log_dir: str | None = None,
    duplicate_window_ms: int = DEFAULT_WINDOW_MS,
    forwarded_allow_ips: str | None = None,
) -> None:
    """Serve until interrupted: this process takes the HTTP requests and writes the ingest
    log (server/front.py), a store process applies it and serves the reads
    (server/store_process.py). On a store with no keys yet, make a ready project
    (`default`, sessions on) and print its keys once. With a certificate and its key,
    serve HTTPS (CleverTap's web SDK sends only to https). `lull spark stream --log`
    reads the ingest log's closed segments (`lull serve --ingest-only`: server/ingest_only.py).
    At a clean stop the live state is saved next to the store (`<db>.live`,
    server/checkpoint.py) and the next start loads it if the store is as it was left."""
    started = time.perf_counter()
    no_pandas()
    # Two threads share the GIL (HTTP, the log's writer), and the handlers' pyarrow calls
    # release and retake it: with Python's default 5 ms switch interval each retake can
    # wait that long.
    sys.setswitchinterval(0.0005)
    # Requests make many short-lived objects; collections of the young ones are cheap,
    # but a full collection walks everything the server holds: make those rarer.
    gc.set_threshold(50_000, 20, 100)
    store = StoreProcess(db, log_dir or f"{db}.log")
    store.spawn()  # it imports what it needs while this process gets ready
    try:
        con = _connect(db)
        try:
            _default_project(con)
            with transaction(con):  # sessions concluded since the last start
                fill_all_ends(con)
            log = IngestLog(store.log_dir, writer=store.writer)
            try:
                reconcile_log(con, log)
                engine, names = load(con, FrontEngine)
                door = Door(log, as_engine(engine), names, duplicate_window_ms, store.stored)
                ids = remember_window(con, door, engine.clock()) + remember_log(con, log, door)
                server = Server(con, as_engine(engine), door)
            except BaseException:
                log.close()
                raise
        finally:
            con.close()  # the store process opens it
        opened = time.perf_counter()
        store.follow(engine)
        store.start(log.position)
    except BaseException:
        store.kill()
        raise
    loaded = time.perf_counter()
    front = build(server, "ingest")
    app = FastIngest(Split(front, front.routes, Forward(store)), server)
    gc.collect()
    gc.freeze()  # what start-up built lives as long as the server: never walk it again
    scheme = "https" if ssl_certfile else "http"
    print(
        f"lull: ready in {time.perf_counter() - started:.2f} s (store and {ids:,} message ids "
        f"of the duplicate window {opened - started:.2f} s, live state from the "
        f"{store.started_from} {loaded - opened:.2f} s)",
        file=sys.stderr,
        flush=True,
    )
    print(f"lull: serving {scheme}://{host}:{port}/ (store {db})", file=sys.stderr, flush=True)
    if threading.current_thread() is threading.main_thread():
        # uvicorn shuts down gracefully on SIGTERM, then raises it again: end normally
        # then, so the log is closed and the store process stops cleanly, not killed.
        signal.signal(signal.SIGTERM, _stop)
    try:
        listen(app, host, port, forwarded_allow_ips, ssl_certfile, ssl_keyfile)
    except SystemExit:  # (SIGTERM: from a service manager, or the front itself)
        if store.failed is None:
            raise
    finally:
        log.close()  # what was acknowledged is durable: the store process applies the rest
        store.stop(log.position)
    if store.failed is not None:
        raise LullError(f"{store.failed}; start the server again")


def _connect(db: str, wait: float = 15.0) -> duckdb.DuckDBPyConnection:
    """The store, waiting a little while the store process of a server that was just
    killed lets go of it."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return connect(db)
        except Conflict:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _default_project(con: duckdb.DuckDBPyConnection) -> None:
    """On a store with no keys: project `default`, sessions on, its keys printed once."""
    if con.execute("SELECT count(*) FROM project_keys").fetchone() != (0,):
        return
    with transaction(con):
        made = create_project(con, "default")
        pid = project_id(con, "default")
        settings = get_settings(con, pid)
        if not settings.sessions_enabled:
            save_settings(con, pid, replace(settings, sessions_enabled=True))
    print("lull: made project 'default' with sessions on; its keys (shown once):")
    print(json.dumps(made, indent=2), flush=True)  # shown once: never left in a buffer


def no_pandas() -> None:
    """pyarrow imports pandas (when installed, as with the spark extra) the first time it
    converts a Python list: 0.4 s of start-up, 1.4 s with no bytecode cache. The server
    never uses pandas: tell pyarrow it is not there."""
    if "pandas" not in sys.modules:
        sys.meta_path.insert(0, _NoPandas())


def listen(
    app: Any,
    host: str,
    port: int,
    forwarded_allow_ips: str | None,
    ssl_certfile: str | None,
    ssl_keyfile: str | None,
) -> None:
    """Serve `app` with uvicorn as every `lull serve` does."""
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        # X-Forwarded-For is believed only from the proxies named (not even from
        # 127.0.0.1 by default): it would let a client pick the address the sign-in
        # brake counts
        proxy_headers=forwarded_allow_ips is not None,
        forwarded_allow_ips=forwarded_allow_ips,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
    )


def remember_window(con: duckdb.DuckDBPyConnection, door: Door, now: int) -> int:
    """The message ids the store accepted within the duplicate window (R6), by whole
    days of received_at (door.Window); returns how many."""
    if door.window_ms <= 0:
        return 0
    since = (now - door.window_ms) // DAY_MS * DAY_MS
    cursor = con.cursor()  # its own: `con` may hold an unfinished result
    try:
        table = cursor.sql(
            f"""SELECT project_id, received_at // {DAY_MS} AS day, message_id FROM events
                WHERE received_at >= {int(since)} ORDER BY project_id, day"""
        ).to_arrow_table()
    finally:
        cursor.close()
    if table.num_rows == 0:
        return 0
    pids = table.column("project_id").to_numpy()
    days = table.column("day").to_numpy()
    cuts = np.flatnonzero((pids[1:] != pids[:-1]) | (days[1:] != days[:-1])) + 1
    starts = [0, *cuts.tolist()]
    ends = [*cuts.tolist(), table.num_rows]
    mids = table.column("message_id")
    for a, b in zip(starts, ends, strict=True):
        door.remember(int(pids[a]), int(days[a]), mids.slice(a, b - a).to_pylist())
    return int(table.num_rows)


def remember_log(con: duckdb.DuckDBPyConnection, log: IngestLog, door: Door) -> int:
    """The message ids of the log past what the store holds (the store process applies
    them as it starts), into the duplicate window; returns how many."""
    if door.window_ms <= 0:
        return 0
    rows = con.execute("SELECT id, name FROM projects").fetchall()
    ids = {str(name): int(pid) for pid, name in rows}
    count = 0
    for record in log.read(applied_position(con, log.writer)):
        events = record.batch.filter(pc.equal(record.batch.column("kind"), EVENT))
        days = pc.divide(events.column("received_at"), DAY_MS)  # (integer division)
        keys = list(zip(events.column("project").to_pylist(), days.to_pylist(), strict=True))
        mids = events.column("message_id").to_pylist()
        by_day: dict[tuple[str, int], list[str]] = {}
        for key, mid in zip(keys, mids, strict=True):
            by_day.setdefault(key, []).append(mid)
        for (project, day), day_ids in by_day.items():
            door.remember(ids[project], day, day_ids)
        count += len(mids)
    return count


def stored_since(con: duckdb.DuckDBPyConnection) -> Callable[[int, list[str], int], set[str]]:
    """Which of these message ids the store holds, received since an instant (the
    duplicate window's check of a hash that matches; called off the event loop)."""

    def stored(pid: int, ids: list[str], since: int) -> set[str]:
        cursor = con.cursor()
        try:
            rows = cursor.execute(
                """SELECT DISTINCT message_id FROM events WHERE project_id = ?
                   AND received_at >= ? AND list_contains(?::VARCHAR[], message_id)""",
                [pid, since, ids],
            ).fetchall()
        finally:
            cursor.close()
        return {str(row[0]) for row in rows}

    return stored


def reconcile_log(con: duckdb.DuckDBPyConnection, log: IngestLog) -> None:
    """The ingest log as reopening left it, against how far the store has applied it.

    A damaged whole frame at the log's end was dropped (log.damaged): say whether the
    store holds its events (nothing lost) or not (DATA LOSS: they may have been
    acknowledged). And if the store has applied past the log's end (its tail was cut
    back, or the log is not the one the store followed), follow the log from its end:
    otherwise what is appended next, over the cut, would be skipped by a later replay."""
    applied = applied_position(con, log.writer)
    for at in log.damaged:
        where = f"the damaged frame at byte {at.offset} of segment {at.segment}"
        if applied > at:
            say = f"{where}: the store had applied it: nothing lost"
        else:
            say = (
                f"DATA LOSS: {where} had not been applied to the store: its events, which "
                "may have been acknowledged, are LOST"
            )
        print(f"lull: ingest log: {say}", file=sys.stderr, flush=True)
    end = log.position
    if applied > end:
        print(
            f"lull: ingest log: the store has applied up to {tuple(applied)}, past the end "
            f"of the log {tuple(end)}: following the log from its end",
            file=sys.stderr,
            flush=True,
        )
        with transaction(con):
            save_applied_position(con, log.writer, end)


class _NoPandas(importlib.abc.MetaPathFinder):
    """An import finder for which pandas is not installed."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname == "pandas" or fullname.startswith("pandas."):
            raise ModuleNotFoundError(f"no pandas in lull serve: {fullname}", name=fullname)
        return None


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)
