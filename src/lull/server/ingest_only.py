"""`lull serve --ingest-only`: validate, append to the ingest log, acknowledge; nothing else.

For a deployment that has outgrown one machine: several such processes behind a load
balancer, each with its own writer id, append to one shared log directory, and one
`lull spark stream --log DIR` sessionizes what they acknowledged (docs/spark.md,
"Streaming"). Such a process

- reads the projects' keys, settings (allowed origins) and identity links once at start,
  from the store opened read-only and closed again (several processes may do so at
  once; a settings change or a new project needs a restart);
- keeps no live engine, writes nothing to the store, and keeps no duplicate window:
  repeats are dropped within a request (and while a first copy is being written), and
  Spark drops the rest (R6);
- closes its segment about every second (`segment_seconds`), so Spark sees events within
  a second or so, and while it gets no events appends a clock row (kind 3) every few
  seconds, so that the stream's clock moves on and sessions are concluded when due;
- serves no reads and no web pages (404 saying so).
"""

from __future__ import annotations

import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar, cast

import duckdb
import pyarrow as pa

from lull.errors import LullError
from lull.model import Settings
from lull.server.identity import Link, Target, follow
from lull.store.db import connect
from lull.store.log import EVENT_SCHEMA, START, IngestLog, LogError
from lull.store.projects import get_settings, now_ms

if TYPE_CHECKING:
    from lull.server.door import Batch
    from lull.server.live import LiveEngine

# The `kind` of a clock row in the ingest log: no event; it moves `lull spark stream`'s
# clock to its received_at, for every project (its project is "").
CLOCK = 3
SEGMENT_SECONDS = 1.0
BEAT_SECONDS = 5.0


def default_writer(port: int) -> str:
    """A writer id for this process: this machine's name and the port, as the log allows."""
    return re.sub(r"[^A-Za-z0-9_]", "_", f"{socket.gethostname()}_{port}")[-64:]


@dataclass(slots=True)
class _Project:
    settings: Settings


class Frozen:
    """What the handlers ask the live engine, answered from the store as it was at start:
    the clock, the projects' settings, and identity links (those of the store, and those
    this process acknowledged since)."""

    def __init__(self, projects: dict[int, Settings], aliases: dict[int, dict[str, Target]],
                 clock: Callable[[], int] = now_ms) -> None:  # fmt: skip
        self.projects = {pid: _Project(s) for pid, s in projects.items()}
        self.aliases = aliases
        self.clock = clock
        self.applied = START  # nothing is applied here (reads are not served)

    def settings(self, project_id: int) -> Settings:
        return self.projects[project_id].settings

    def link(self, project_id: int, links: list[Link]) -> None:
        self.aliases.setdefault(project_id, {}).update(links)

    def resolve(self, project_id: int, anonymous_id: str, at: int | None = None) -> str:
        return follow(self.aliases.get(project_id, {}), anonymous_id, at)

    def enqueue(self, frame: list[Batch]) -> None:
        """Acknowledged and in the log: that is all (Spark reads the log)."""


F = TypeVar("F", bound=Frozen)


def load(
    con: duckdb.DuckDBPyConnection,
    make: type[F] = Frozen,  # type: ignore[assignment]
) -> tuple[F, Callable[[int], str]]:
    """The store's projects, settings and links (read once, at start), as a `make`."""
    rows = con.execute("SELECT id, name FROM projects").fetchall()
    names = {int(pid): str(name) for pid, name in rows}
    settings = {pid: get_settings(con, pid) for pid in names}
    aliases: dict[int, dict[str, Target]] = {}
    # (read-only: a store of schema 2, not migrated, has no `since`: since always)
    for pid, anonymous, profile, *since in con.execute("SELECT * FROM aliases").fetchall():
        tie = Target(str(profile), since[0] if since else None)
        aliases.setdefault(int(pid), {})[str(anonymous)] = tie
    return make(settings, aliases), names.__getitem__


def as_engine(frozen: Frozen) -> LiveEngine:
    """`Frozen` where the handlers and the door take the live engine (the parts they use)."""
    return cast("LiveEngine", frozen)


def clock_row(at: int) -> pa.RecordBatch:
    """A clock row of the ingest log: the stream's clock reaches `at`."""
    row = {"project": [""], "message_id": [""], "profile_id": [""], "name": [""], "ts": [at],
           "source": [""], "received_at": [at], "sent_at": [None], "properties": ["{}"],
           "kind": [CLOCK]}  # fmt: skip
    return pa.RecordBatch.from_pydict(row, schema=EVENT_SCHEMA)


class Heartbeat:
    """While no request is appended for `beat` seconds, append a clock row."""

    def __init__(self, log: IngestLog, clock: Callable[[], int], beat: float = BEAT_SECONDS):
        self.log, self.clock, self.beat = log, clock, beat
        clock_row(0)  # pyarrow's one-time start-up cost (about a second), paid now
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lull-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        seen, quiet_since = self.log.appended, time.monotonic()
        while not self._stop.wait(min(1.0, self.beat / 4)):
            if self.log.appended != seen:
                seen, quiet_since = self.log.appended, time.monotonic()
            elif time.monotonic() - quiet_since >= self.beat:
                try:
                    self.log.append(clock_row(self.clock()))
                except LogError as e:  # requests see it too (503); try again later
                    print(f"lull: ingest log: clock row: {e}", file=sys.stderr, flush=True)
                seen, quiet_since = self.log.appended, time.monotonic()


def serve(
    db: str,
    host: str,
    port: int,
    log_dir: str | None,
    writer: str | None = None,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    forwarded_allow_ips: str | None = None,
) -> None:
    """Serve ingestion only until interrupted (`lull serve --ingest-only`)."""
    import uvicorn

    from lull.server.app import Server, serving
    from lull.server.door import Door
    from lull.server.run import _stop

    con = connect(db, read_only=True)  # shared: several ingest-only processes at once
    try:
        if con.execute("SELECT count(*) FROM project_keys").fetchone() == (0,):
            raise LullError(
                f"the store {db} has no project keys: make a project first "
                "(lull project create NAME), then start the ingest-only servers"
            )
        frozen, names = load(con, Frozen)
        engine = as_engine(frozen)
        log = IngestLog(log_dir or f"{db}.log", writer=writer or default_writer(port),
                        segment_seconds=SEGMENT_SECONDS)  # fmt: skip
        try:
            # no duplicate window: Spark keeps the ids (window 0: in-flight copies only)
            door = Door(log, engine, names, window_ms=0)
            app = serving(Server(con, engine, door), "ingest-only")
        except BaseException:
            log.close()
            raise
    finally:
        con.close()  # everything is read: the store is free for others
    beat = Heartbeat(log, frozen.clock)
    beat.start()
    scheme = "https" if ssl_certfile else "http"
    print(f"lull: ingestion only, {scheme}://{host}:{port}/ -> ingest log {log.directory} "
          f"(writer {log.writer})", file=sys.stderr, flush=True)  # fmt: skip
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False,
                    proxy_headers=forwarded_allow_ips is not None,
                    forwarded_allow_ips=forwarded_allow_ips, ssl_certfile=ssl_certfile,
                    ssl_keyfile=ssl_keyfile)  # fmt: skip
    finally:
        beat.stop()
        log.close()  # closes the open segment: Spark reads it
