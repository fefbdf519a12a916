"""`lull serve`'s front process: the HTTP door, in a process of its own.

`lull serve` runs as two processes. The front (this one, the process the user starts)
listens for HTTP: it validates what the SDKs send, keeps the duplicate window, writes the
ingest log and acknowledges (server/door.py), and forwards everything else (the read API,
the settings, the web pages) to the store process (server/store_process.py) over a Unix
socket. The store process follows the log with the live engine and owns the store.

Why two: one Python process has one interpreter lock, and taking requests (parsing,
checking, framing the log) and applying them (the session engine, DuckDB's commits) each
want most of it. In one process each request waited for the engine's turns with the lock
(docs/benchmarks.md, issue 9). In two, each has its own, and a request's answer waits
only for its own process's work and the log's fsync.

The front knows what its handlers need without the store: the keys, the projects'
settings and the identity links (read once at start; identity links it acknowledges are
added as it goes; a settings change reaches it from the store process before the answer
to the change does). If the store process stops unexpectedly, the front stops too
(nothing acknowledged is lost: the next start applies the log).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import TYPE_CHECKING

import httpx
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lull.errors import LullError, Unavailable
from lull.model import Settings
from lull.server.cors import is_ingest
from lull.server.door import RETRY_AFTER_S
from lull.server.headers import EVERY_ANSWER
from lull.server.identity import Target
from lull.server.ingest_only import Frozen
from lull.store.log import Position

if TYPE_CHECKING:
    from lull.server.door import Batch

# Between the front and its store process (store_process.py): how far the log is durable
# (16 bytes on the store process's stdin; STOP: apply what is durable and stop), where
# the duplicate window asks the store (never forwarded), how far a forwarded request's
# log was acknowledged, and the settings version an answer was made under.
POSITION = struct.Struct("<qq")
STOP = Position(-1, -1)
STORED_PATH = "/_lull/stored"
LOG_HEADER = b"x-lull-log"
CONFIG_HEADER = b"x-lull-config"
MAX_FORWARDED = 64 << 20  # a forwarded request's body (pages and settings: small)
STORED_TIMEOUT = 330.0  # the store process waits up to 300 s to catch up before it answers
STOP_SECONDS = 8.0  # a store process that has not stopped by then is killed (the log holds all)
# Headers of one connection, not of the request or answer (RFC 9110, 7.6.1), and those the
# front sets itself.
_HOP = frozenset({b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization",
                  b"te", b"trailer", b"transfer-encoding", b"upgrade"})  # fmt: skip
_SET_HERE = frozenset({b"content-length", b"x-forwarded-for", b"x-forwarded-proto"})
_ANSWERED_HERE = frozenset({b"date", b"server", CONFIG_HEADER})  # the front's uvicorn adds both


class StoreProcess:
    """The store process, started, fed and watched by the front."""

    def __init__(self, db: str, log_dir: str, writer: str = "main") -> None:
        self.db, self.log_dir, self.writer = db, log_dir, writer
        self.engine = FrontEngine({}, {})  # (`follow` gives it the front's)
        self.socket = f"{db}.sock"
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready = threading.Event()
        self.started_from = ""  # where the live state came from ("store", "checkpoint"...)
        self.stopping = False
        self.failed: str | None = None  # why it stopped, when it stopped by itself
        self._stdin = -1
        self._behind: Position | None = None  # a position the pipe had no room for
        self._sync: httpx.Client | None = None

    def spawn(self) -> None:
        """Start it: it imports what it needs, then waits for `start`."""
        if len(self.socket) > 100:  # a Unix socket's path is at most 107 bytes
            self.socket = f"/tmp/lull-{os.getpid()}-{abs(hash(self.db)) % 10**8}.sock"
        read_fd, write_fd = os.pipe()
        command = [sys.executable, "-m", "lull.server.store_process", "--db", self.db,
                   "--log-dir", self.log_dir, "--writer", self.writer,
                   "--uds", self.socket, "--report-fd", str(write_fd)]  # fmt: skip
        try:
            self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, pass_fds=(write_fd,),
                                         start_new_session=True)  # fmt: skip
        finally:
            os.close(write_fd)
        assert self.proc.stdin is not None
        self._stdin = self.proc.stdin.fileno()
        os.set_blocking(self._stdin, False)
        threading.Thread(target=self._reports, args=(read_fd,), name="lull-store-reports",
                         daemon=True).start()  # fmt: skip

    def follow(self, engine: FrontEngine) -> None:
        """The front's engine, to keep up to date; its `applied` is how far the door
        acknowledged (a frame is given to it once durable, as it is acknowledged)."""
        self.engine = engine
        engine.store = self

    def kill(self) -> None:
        """Start-up failed: it goes without a word."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()

    def start(self, until: Position, wait: float = 300.0) -> None:
        """Let it open the store (this process has closed it) and apply the log durable up
        to `until`; returns once it serves."""
        assert self.proc is not None
        os.write(self._stdin, POSITION.pack(*until))
        deadline = time.monotonic() + wait
        while not self.ready.wait(0.05):
            if self.proc.poll() is not None:
                raise LullError(f"the store process stopped (exit code {self.proc.returncode})")
            if time.monotonic() > deadline:
                self.proc.kill()
                raise LullError(f"the store process was not ready after {wait:.0f} s")

    def durable(self, at: Position) -> None:
        """Tell it the log is durable up to `at` (from the event loop: never blocks)."""
        try:
            os.write(self._stdin, POSITION.pack(*at))
            self._behind = None
        except BlockingIOError:  # it is busy: it reads this with the next position
            self._behind = at
        except OSError:  # it is gone: the reports' end says so
            pass

    def stop(self, at: Position) -> int | None:
        """Stop it once it has applied the log up to `at`; its exit code (None: killed)."""
        if self.proc is None:
            return None
        self.stopping = True
        try:
            os.set_blocking(self._stdin, True)
            os.write(self._stdin, POSITION.pack(*at) + POSITION.pack(*STOP))
        except OSError:
            pass
        try:
            return self.proc.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            say = (
                f"did not stop within {STOP_SECONDS:.0f} s: killed (the next start applies the log)"
            )
            print(f"lull: the store process {say}", file=sys.stderr, flush=True)
            self.proc.kill()
            self.proc.wait()
            return None
        finally:
            if self.proc.stdin is not None:
                self.proc.stdin.close()

    def stored(self, pid: int, ids: list[str], since: int) -> set[str]:
        """Which of these ids the store holds since `since` (the duplicate window's check
        of a hash that matches; called off the event loop)."""
        if self._sync is None:
            transport = httpx.HTTPTransport(uds=self.socket)
            self._sync = httpx.Client(transport=transport, base_url="http://lull-store",
                                      timeout=STORED_TIMEOUT)  # fmt: skip
        acked = self.engine.applied
        try:
            answer = self._sync.post(
                STORED_PATH,
                json={"project": pid, "ids": ids, "since": since},
                headers={LOG_HEADER.decode(): f"{acked.segment}:{acked.offset}"},
            )
            answer.raise_for_status()
        except httpx.HTTPError as e:  # nothing taken: the client sends again
            raise Unavailable(f"repeated message ids could not be checked, retry: {e}") from None
        return set(answer.json())

    def _reports(self, fd: int) -> None:
        """The store process's reports (store_process.py); its end: the process ended."""
        with os.fdopen(fd, "rb") as reports:
            for line in reports:
                message = json.loads(line)
                if "settings" in message:
                    self.engine.changed(int(message["project"]), message["settings"],
                                        int(message["version"]))  # fmt: skip
                if message.get("ready"):
                    self.started_from = str(message["from"])
                    self.ready.set()
                if self._behind is not None and message.get("applied"):
                    self.durable(self._behind)  # (from this thread: a write is atomic)
        if not self.stopping and self.ready.is_set():
            code = self.proc.wait() if self.proc is not None else None
            self.failed = f"the store process stopped unexpectedly (exit code {code})"
            print(f"lull: {self.failed}: stopping the server (nothing acknowledged is lost: "
                  "the next start applies the log)", file=sys.stderr, flush=True)  # fmt: skip
            os.kill(os.getpid(), signal.SIGTERM)


class FrontEngine(Frozen):
    """What the front's handlers ask the live engine: the projects' settings (as the
    store process reports their changes), the identity links and the clock.

    For the duplicate window a frame counts as applied once it is durable: its ids go
    from the door's exact set to the hashed window then, not once the store holds them,
    so the front's memory does not grow while the store process is behind. That is
    exact because the store process answers the window's check of a matching hash only
    once it has applied the log as far as the front had acknowledged (`STORED_PATH`)."""

    def __init__(self, projects: dict[int, Settings], aliases: dict[int, dict[str, Target]]):
        super().__init__(projects, aliases)
        self.store: StoreProcess | None = None
        self.version = 0  # the store process's settings changes applied here

    def enqueue(self, frame: list[Batch]) -> None:
        """A frame is durable: the store process applies it from the log."""
        position = frame[-1].position
        if position is not None:
            self.applied = position
            if self.store is not None:
                self.store.durable(position)

    def changed(self, pid: int, fields: dict[str, object], version: int) -> None:
        settings = Settings(**{k: tuple(v) if isinstance(v, list) else v
                               for k, v in fields.items()})  # type: ignore[arg-type]  # fmt: skip
        if pid in self.projects:
            self.projects[pid].settings = settings
        self.version = max(self.version, version)  # (one thread writes it: the reports')

    async def settled(self, version: int) -> None:
        """Wait (a little) until the settings changes up to `version` are known here."""
        deadline = time.monotonic() + 5.0
        while self.version < version and time.monotonic() < deadline:
            await asyncio.sleep(0.002)


class Forward:
    """ASGI: a request the front does not serve, forwarded to the store process with the
    client's address and scheme (`x-forwarded-*`) and how far the log was acknowledged
    when it came (`x-lull-log`); its answer streamed back."""

    def __init__(self, store: StoreProcess) -> None:
        transport = httpx.AsyncHTTPTransport(uds=store.socket)
        timeout = httpx.Timeout(600.0, connect=10.0)  # a rebuild of a large project is slow
        # a jar that keeps none (no domain allowed): one client's cookies must never ride
        # along with another's
        nothing = CookieJar(DefaultCookiePolicy(allowed_domains=[]))
        self.client = httpx.AsyncClient(transport=transport, timeout=timeout, cookies=nothing)
        self.store, self.engine = store, store.engine

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"].startswith("/_lull/"):
            await _answer(send, 404, b'{"error":"not found"}')
            return
        body = await _body(receive)
        if body is None:
            await _answer(send, 413, b'{"error":"request body is too large"}')
            return
        headers = [(k, v) for k, v in scope["headers"] if _forwarded(k)]
        client = scope.get("client")
        if client:
            headers.append((b"x-forwarded-for", str(client[0]).encode("latin-1")))
        headers.append((b"x-forwarded-proto", str(scope.get("scheme", "http")).encode()))
        acked = self.store.engine.applied
        headers.append((LOG_HEADER, f"{acked.segment}:{acked.offset}".encode()))
        path = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string", b"")
        url = (
            "http://lull-store"
            + path.decode("latin-1")
            + ("?" + query.decode("latin-1") if query else "")
        )
        try:
            request = self.client.build_request(scope["method"], url, headers=headers, content=body)
            answer = await self.client.send(request, stream=True)
        except httpx.HTTPError as e:
            message = json.dumps({"error": f"the store process is not answering: {e}"}).encode()
            await _answer(send, 503, message, retry=True)
            return
        try:
            version = answer.headers.get(CONFIG_HEADER.decode())
            if version:
                await self.engine.settled(int(version))
            out = [(k, v) for k, v in answer.headers.raw
                   if k.lower() not in _HOP and k.lower() not in _ANSWERED_HERE]  # fmt: skip
            await send({"type": "http.response.start", "status": answer.status_code,
                        "headers": out})  # fmt: skip
            async for chunk in answer.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        except httpx.HTTPError:
            pass  # cut short: the client sees the connection end
        finally:
            await answer.aclose()


class Split:
    """ASGI: the front's own requests (ingestion, /healthz, /openapi.json, the ingestion
    paths' preflights) to its app, everything else forwarded."""

    def __init__(self, app: ASGIApp, routes: list[BaseRoute], forward: Forward) -> None:
        self.app, self.routes, self.forward = app, routes, forward

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._here(scope):
            await self.forward(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _here(self, scope: Scope) -> bool:
        if scope["method"] == "OPTIONS":
            return is_ingest(scope["path"])
        return any(route.matches(scope)[0] is Match.FULL for route in self.routes)


def _forwarded(header: bytes) -> bool:
    return header not in _HOP and header not in _SET_HERE and not header.startswith(b"x-lull-")


async def _body(receive: Receive) -> bytes | None:
    chunks, size, more = [], 0, True
    while more:
        message: Message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_FORWARDED:
            return None
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


async def _answer(send: Send, status: int, body: bytes, retry: bool = False) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body)),
               *EVERY_ANSWER]  # fmt: skip
    if retry:
        headers.append((b"retry-after", b"%d" % RETRY_AFTER_S))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
