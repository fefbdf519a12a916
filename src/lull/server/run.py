"""Starting the server: open the store, start the live engine, serve HTTP."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import uvicorn

from lull.server.app import Server, build
from lull.server.live import LiveEngine
from lull.server.sink import EventsSink, project_names
from lull.store.db import connect, transaction
from lull.store.keys import create_project
from lull.store.projects import get_settings, project_id, save_settings


def serve(
    db: str,
    host: str,
    port: int,
    events_sink: str | None = None,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
) -> None:
    """Serve until interrupted. On a store with no keys yet, make a ready project
    (`default`, sessions on) and print its keys once. With `events_sink`, every stored
    event is also written to that landing directory (server/sink.py). With a certificate
    and its key, serve HTTPS (CleverTap's web SDK sends only to https)."""
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
    sink = None
    if events_sink is not None:  # its name lookups run on the writer thread: own connection
        sink = EventsSink(Path(events_sink), project_names(con.cursor()))
    engine = LiveEngine(con, sink=sink)
    engine.start()
    app = build(Server(con, engine))
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
        engine.stop()
        con.close()


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)
