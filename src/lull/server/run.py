"""Starting the server: open the store, start the live engine, serve HTTP."""

from __future__ import annotations

import gc
import json
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

import duckdb
import uvicorn

from lull.server.app import Server, build
from lull.server.door import Door
from lull.server.live import LiveEngine, applied_position, save_applied_position
from lull.store.db import connect, transaction
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
) -> None:
    """Serve until interrupted. On a store with no keys yet, make a ready project
    (`default`, sessions on) and print its keys once. With a certificate and its key,
    serve HTTPS (CleverTap's web SDK sends only to https). `lull spark stream --log`
    reads the ingest log's closed segments (`lull serve --ingest-only`: server/ingest_only.py)."""
    # Three threads share the GIL (HTTP, the log's writer, the engine), and the handlers'
    # pyarrow calls release and retake it: with Python's default 5 ms switch interval
    # each retake can wait that long behind the engine's Python work.
    sys.setswitchinterval(0.0005)
    # Requests make many short-lived objects; collections of the young ones are cheap,
    # but a full collection walks everything the server holds: make those rarer.
    gc.set_threshold(50_000, 20, 100)
    con = connect(db)
    if con.execute("SELECT count(*) FROM project_keys").fetchone() == (0,):
        with transaction(con):
            made = create_project(con, "default")
            pid = project_id(con, "default")
            settings = get_settings(con, pid)
            if not settings.sessions_enabled:
                from dataclasses import replace

                save_settings(con, pid, replace(settings, sessions_enabled=True))
        print("lull: made project 'default' with sessions on; its keys (shown once):")
        print(json.dumps(made, indent=2), flush=True)  # shown once: never left in a buffer
    # DuckDB's block cache would otherwise grow with the store; the server's working set
    # is the engine's state in Python, so keep DuckDB's share small.
    con.execute("SET memory_limit = '128MB'")
    log = IngestLog(log_dir or f"{db}.log")
    engine = LiveEngine(con, log)
    try:
        reconcile_log(con, log)
        engine.start()  # applies what the log holds past the store first
    except BaseException:
        log.close()
        raise
    door = Door(log, engine, _name_lookup(con.cursor()))
    remember_window(con, door, engine.clock())
    app = build(Server(con, engine, door))
    gc.collect()
    gc.freeze()  # what start-up built lives as long as the server: never walk it again
    scheme = "https" if ssl_certfile else "http"
    print(f"lull: serving {scheme}://{host}:{port}/ (store {db})", file=sys.stderr, flush=True)
    if threading.current_thread() is threading.main_thread():
        # uvicorn shuts down gracefully on SIGTERM, then raises it again: end normally
        # then, so the writer stops and the store is closed (checkpointed), not killed.
        signal.signal(signal.SIGTERM, _stop)
    try:
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            ssl_certfile=ssl_certfile,
            ssl_keyfile=ssl_keyfile,
        )
    finally:
        log.close()  # what was acknowledged is durable: the engine applies the rest
        engine.stop()
        con.close()


def _name_lookup(con: duckdb.DuckDBPyConnection) -> Callable[[int], str]:
    """A project's name by id (the log names projects), looked up once."""
    known: dict[int, str] = {}

    def name(pid: int) -> str:
        if pid not in known:
            row = con.execute("SELECT name FROM projects WHERE id = ?", [pid]).fetchone()
            assert row is not None
            known[pid] = str(row[0])
        return known[pid]

    return name


def remember_window(con: duckdb.DuckDBPyConnection, door: Door, now: int) -> None:
    """The message ids the store accepted within the duplicate window (R6)."""
    rows = con.execute(
        """SELECT project_id, list(message_id), list(received_at) FROM events
           WHERE received_at >= ? GROUP BY project_id""",
        [now - door.window_ms],
    ).fetchall()
    for pid, mids, received in rows:
        door.remember(int(pid), list(mids), list(received))


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


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)
