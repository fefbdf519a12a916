"""`lull serve`'s store process: the live engine, the store and everything that reads it.

`lull serve` is two processes (server/front.py says why). This one owns the store: it
follows the front's ingest log with the live engine (server/live.py), concludes sessions
as they fall due, fires live segments, and serves the read API, the settings and the web
pages on a Unix socket, to the front, which forwards to it what is not ingestion.

What passes between the two, besides the forwarded requests:

- the front writes to this process's stdin, as 16-byte records, how far its log is
  durable (segment, offset), and (-1, -1) to stop: apply what is durable, save the live
  state, exit. An end of stdin without it means the front is gone: exit at once (the
  log holds everything; the next start applies it);
- this process writes JSON lines to the front (`--report-fd`): `ready`, how far the store
  has applied the log (`applied`: the front's duplicate window follows it), and every
  settings change (`settings`, with a version number that the answers to the front
  carry in `x-lull-config`, so that the front knows a change before its client does);
- a forwarded request carries in `x-lull-log` how far the log was acknowledged when it
  came; a read waits (a little) until the store has applied that far.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any, cast

import msgspec
import uvicorn
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lull.errors import LullError
from lull.model import Settings
from lull.server.app import Server, serving
from lull.server.door import Door, from_arrow
from lull.server.front import CONFIG_HEADER, LOG_HEADER, POSITION, STOP, STORED_PATH
from lull.server.live import LiveEngine
from lull.server.run import no_pandas, stored_since
from lull.store.db import connect
from lull.store.log import START, Position, Record, Tail

# how far the front had acknowledged when the request being served came
_ACKED: contextvars.ContextVar[Position] = contextvars.ContextVar("lull_acked", default=START)
_PR_SET_PDEATHSIG = 1
NICE = 5  # this process's priority below the front's
STORED_WAIT = 300.0  # seconds the duplicate check waits for the store to catch up
QUEUED = 64  # frames read from the log ahead of the engine, at most
_encode = msgspec.json.Encoder().encode


@dataclass
class FrontLog:
    """The front's log as the engine replays it at start: up to what is durable."""

    directory: str
    writer: str
    until: Position

    def read(self, after: Position = START) -> Iterator[Record]:
        tail = Tail(self.directory, self.writer, after)
        try:
            yield from tail.read(self.until)
        finally:
            tail.close()


class StoreDoor:
    """The ingestion door as the store process's reads see it: what was acknowledged when
    the request came (from the front); no events are taken here."""

    failing: str | None = None

    @property
    def acked(self) -> Position:
        return _ACKED.get()

    async def take(self, *args: Any, **kwargs: Any) -> Any:
        raise LullError("events go to the front process")


@dataclass
class Reporter:
    """JSON lines to the front, from any thread."""

    fd: int
    version: int = 0  # settings changes so far
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, message: dict[str, Any]) -> None:
        line = _encode(message) + b"\n"
        # (the front gone: stdin's end stops this process)
        with self._lock, contextlib.suppress(OSError):
            os.write(self.fd, line)

    def settings(self, pid: int, settings: Settings) -> None:
        with self._lock:
            self.version += 1
            version = self.version
        # every field a Settings is made from (FrontEngine.changed makes it again)
        given = {f.name: getattr(settings, f.name) for f in fields(settings) if f.init}
        self.send({"settings": given, "project": pid, "version": version})


class Following:
    """ASGI: a forwarded request's `x-lull-log` for its reads to wait on; every answer's
    `x-lull-config`; and the front's duplicate check (`STORED_PATH`)."""

    def __init__(self, app: ASGIApp, server: Server, reporter: Reporter) -> None:
        self.app, self.server, self.reporter = app, server, reporter
        self.stored = stored_since(server.con)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        acked = START
        for key, value in scope["headers"]:
            if key == LOG_HEADER:
                segment, _, offset = value.decode("latin-1").partition(":")
                acked = Position(int(segment), int(offset))
        token = _ACKED.set(acked)
        try:
            if scope["path"] == STORED_PATH:
                await self._stored(scope, receive, send)
                return

            async def marked(message: Message) -> None:
                if message["type"] == "http.response.start":
                    version = str(self.reporter.version).encode()
                    headers = [*message.get("headers", []), (CONFIG_HEADER, version)]
                    message = {**message, "headers": headers}
                await send(message)

            await self.app(scope, receive, marked)
        finally:
            _ACKED.reset(token)

    async def _stored(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Which of some message ids the store holds since an instant (a JSON body
        `{"project", "ids", "since"}`), once it has applied what was acknowledged."""
        request = Request(scope, receive)
        asked = msgspec.json.decode(await request.body())
        # (exact only once the store holds what the front had acknowledged: wait for it)
        await self.server.caught_up(wait=STORED_WAIT)
        held = await run_in_threadpool(self.stored, int(asked["project"]), list(asked["ids"]),
                                int(asked["since"]))  # fmt: skip
        await JSONResponse(sorted(held))(scope, receive, send)


def die_with_parent() -> None:
    """Ask Linux to kill this process when the one that started it dies (kill -9
    included; also used by tests/sparkcluster.py for its JVMs)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the end of stdin stops it
        pass


def _follow(tail: Tail, engine: LiveEngine, names: dict[str, int], source: FrontLog,
            server: uvicorn.Server) -> None:  # fmt: skip
    """The thread that reads the front's positions and hands the engine each new frame.
    If it cannot (a log it cannot read), this process ends and the front says so: the
    store must never silently stop following what was acknowledged."""
    try:
        _follow_log(tail, engine, names, source, server)
    except BaseException as error:
        print(f"lull: the store process cannot follow the ingest log: {error}",
              file=sys.stderr, flush=True)  # fmt: skip
        os._exit(3)


def _follow_log(tail: Tail, engine: LiveEngine, names: dict[str, int], source: FrontLog,
                server: uvicorn.Server) -> None:  # fmt: skip
    stdin = sys.stdin.buffer.fileno()
    pending = b""
    while True:
        chunk = os.read(stdin, 1 << 16)
        if not chunk:  # the front is gone without a word: what is durable stays in the log
            os._exit(1)
        pending += chunk
        whole = len(pending) // POSITION.size * POSITION.size
        positions = [Position(*p) for p in POSITION.iter_unpack(pending[:whole])]
        pending = pending[whole:]
        stop = STOP in positions
        until = max((p for p in positions if p != STOP), default=None)
        if until is not None and until > tail.at:
            source.until = until  # (a replay after a failed commit reads this far)
            for record in tail.read(until):
                while engine.queue.qsize() >= QUEUED:  # the rest waits in the log
                    time.sleep(0.01)
                frame = from_arrow(record.batch, names)
                for batch in frame:
                    batch.position = record.position
                engine.enqueue(frame)
        if stop:
            server.should_exit = True
            return


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lull-store", description=__doc__)
    parser.add_argument("--db", required=True)
    parser.add_argument("--log-dir", required=True)
    parser.add_argument("--writer", required=True)
    parser.add_argument("--uds", required=True)
    parser.add_argument("--report-fd", type=int, required=True)
    args = parser.parse_args(argv)
    die_with_parent()
    # Behind the front: an answer waits for the front's work and the log, never for this
    # process's (the store follows the log a little later when the machine is busy).
    os.nice(NICE)
    no_pandas()
    sys.setswitchinterval(0.0005)
    reporter = Reporter(args.report_fd)
    # Started early, to import while the front gets ready; it says when the store is free
    # by sending how far the log is durable.
    first = os.read(sys.stdin.buffer.fileno(), POSITION.size)
    if len(first) < POSITION.size:
        sys.exit(1)  # the front did not get ready
    source = FrontLog(args.log_dir, args.writer, Position(*POSITION.unpack(first)))
    try:
        con = connect(args.db)
        con.execute("SET memory_limit = '128MB'")
        engine = LiveEngine(con, source, checkpoint_file=f"{args.db}.live")
        engine.start()  # applies what the log holds past the store first
    except LullError as e:
        print(f"lull: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    names = {str(n): int(p) for p, n in con.execute("SELECT id, name FROM projects").fetchall()}
    server = Server(con, engine, cast("Door", StoreDoor()))
    engine.on_applied = lambda at: reporter.send({"applied": list(at)})
    engine.on_settings = reporter.settings
    app = Following(serving(server, "reads"), server, reporter)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(args.uds)
    config = uvicorn.Config(
        app, uds=args.uds, log_level="warning", access_log=False, proxy_headers=True,
        forwarded_allow_ips="*", lifespan="off",
    )  # fmt: skip
    web = uvicorn.Server(config)
    tail = Tail(args.log_dir, args.writer, source.until)
    follower = threading.Thread(target=_follow, args=(tail, engine, names, source, web),
                                name="lull-follow", daemon=True)  # fmt: skip

    def ready() -> None:
        while not web.started and not web.should_exit:
            time.sleep(0.01)
        reporter.send({"ready": True, "applied": list(engine.applied),
                       "from": engine.started_from})  # fmt: skip

    follower.start()
    threading.Thread(target=ready, name="lull-ready", daemon=True).start()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the front stops this process
    try:
        web.run()
    finally:
        follower.join(timeout=30)
        engine.stop()  # applies what is queued, saves the live state
        con.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(args.uds)
    reporter.send({"stopped": True})


if __name__ == "__main__":
    main()
