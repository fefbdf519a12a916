"""The front door: where an accepted request becomes durable and is acknowledged.

A request's events, checked by their handler, go through three steps here:

1. **Duplicates (R6).** A message id the project accepted within the duplicate window
   (7 days of `received_at` by default) is acknowledged and dropped. The window is kept
   in memory, so memory follows the traffic of the window, not the size of the store;
   a repeat that comes later than the window after its first copy is stored again.
2. **The ingest log.** The events (with the identity links and profile properties the
   request makes) are appended to the ingest log as one Arrow batch; the append returns
   once it is on disk (group commit, fdatasync). Only then is the request answered 2xx:
   a crash after it loses nothing ("Acknowledgement").
3. **The live engine** applies the log's batches to the store in log order, in large
   groups, a moment later (reads wait for what was acknowledged before they began).

If the log cannot be written (a full disk, an I/O error) the request is answered 503
with `Retry-After`, nothing of it counts as accepted, and the next request tries again.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
import pyarrow as pa

from lull.errors import Unavailable
from lull.server.identity import Link, Target
from lull.store.log import EVENT_SCHEMA, IngestLog, LogError, Position

if TYPE_CHECKING:
    from lull.server.live import Event, LiveEngine

DAY_MS = 24 * 3600 * 1000
DEFAULT_WINDOW_MS = 7 * DAY_MS
RETRY_AFTER_S = 2
# What a row of the log is (the `kind` column): an event, an identity link (an anonymous
# id in `message_id` tied to `profile_id` from `ts` on: the identify call's own time), or
# profile properties (`properties`) set.
EVENT, LINK, TRAITS = 0, 1, 2
_encode = msgspec.json.Encoder().encode


@dataclass(slots=True)
class Outcome:
    accepted: int = 0
    duplicates: int = 0


@dataclass(slots=True)
class Batch:
    """One acknowledged request as the engine applies it (read back from the log, or
    handed over in memory): its events as rows of the log (`rows`, kind 0 only), the
    identity links and profile properties it makes, and where it ends in the log."""

    project_id: int
    received_at: int
    events: list[Event]
    links: list[Link] = field(default_factory=list)
    traits: list[tuple[str, dict[str, Any], int]] = field(default_factory=list)
    position: Position | None = None
    rows: pa.RecordBatch | None = None

    @property
    def size(self) -> int:
        return self.rows.num_rows if self.rows is not None else len(self.events)


class Door:
    """Duplicate window, ingest log and hand-over to the engine, in arrival order."""

    def __init__(
        self,
        log: IngestLog,
        engine: LiveEngine,
        names: Callable[[int], str],
        window_ms: int = DEFAULT_WINDOW_MS,
    ) -> None:
        self.log = log
        self.engine = engine
        self.names = names  # project id -> name (the log names projects)
        self.window_ms = window_ms
        # message ids seen per project: None once durable, else the append it rides on
        self.seen: dict[int, dict[str, Future[Position] | None]] = {}
        self.expiry: collections.deque[tuple[int, int, str]] = collections.deque()
        self.acked = 0  # requests handed to the engine, in log order
        self.failing: str | None = None  # the last append's error, while appends fail
        self._inflight: collections.deque[tuple[Future[Position], Batch]] = collections.deque()
        self._lock = threading.Lock()

    def remember(self, pid: int, message_ids: list[str], received_at: list[int]) -> None:
        """At start: the ids the store (and the log) accepted within the window."""
        seen = self.seen.setdefault(pid, {})
        for at, mid in sorted(zip(received_at, message_ids, strict=True)):
            seen[mid] = None
            self.expiry.append((at, pid, mid))

    async def take(
        self,
        pid: int,
        received_at: int,
        events: list[Event],
        links: list[Link] | None = None,
        traits: list[tuple[str, dict[str, Any], int]] | None = None,
    ) -> Outcome:
        """Make a request's events durable; returns once they are (or raises Unavailable)."""
        self._expire(received_at)
        seen = self.seen.setdefault(pid, {})
        fresh: list[Event] = []
        waits: list[Future[Position]] = []
        for e in events:
            if e.message_id in seen:
                pending = seen[e.message_id]
                if pending is not None:
                    waits.append(pending)  # its first copy is not durable yet
                continue
            seen[e.message_id] = None  # the append's future is filled in below
            fresh.append(e)
        outcome = Outcome(accepted=len(fresh), duplicates=len(events) - len(fresh))
        if fresh or links or traits:
            batch = Batch(pid, received_at, fresh, list(links or ()), list(traits or ()))
            try:
                future = self._submit(batch)
            except (LogError, ValueError) as error:
                self._forget(pid, fresh)
                raise Unavailable(f"events could not be stored, retry: {error}") from None
            for e in fresh:
                seen[e.message_id] = future
                self.expiry.append((received_at, pid, e.message_id))
            waits.append(future)
        for wait in waits:
            try:
                await asyncio.wrap_future(wait)
            except Exception as error:
                self._forget(pid, fresh)
                self.failing = str(error)
                raise Unavailable(f"events could not be stored, retry: {error}") from None
        self.failing = None
        if links:  # later requests resolve these ids at once, not once the store has them
            self.engine.link(pid, links)
        for e in fresh:
            if seen.get(e.message_id) is not None:
                seen[e.message_id] = None
        return outcome

    def _submit(self, batch: Batch) -> Future[Position]:
        table = to_arrow(self.names(batch.project_id), batch)
        batch.rows = table.slice(0, len(batch.events))  # to_arrow puts the events first
        batch.events = []  # the engine reads the rows
        with self._lock:  # the log's order is the order of submits: keep ours the same
            future = self.log.submit(table)
            self._inflight.append((future, batch))
        future.add_done_callback(self._hand_over)
        return future

    def _hand_over(self, _: Future[Position]) -> None:
        """Give the engine every appended batch at the head of the line, in log order."""
        with self._lock:
            while self._inflight and self._inflight[0][0].done():
                future, batch = self._inflight.popleft()
                if future.exception() is None:
                    batch.position = future.result()
                    self.acked += 1
                    self.engine.enqueue(batch)

    def _forget(self, pid: int, events: list[Event]) -> None:
        seen = self.seen.get(pid, {})
        for e in events:
            seen.pop(e.message_id, None)

    def _expire(self, now: int) -> None:
        limit = now - self.window_ms
        expiry = self.expiry
        while expiry and expiry[0][0] < limit:
            _, pid, mid = expiry.popleft()
            seen = self.seen.get(pid)
            if seen is not None and seen.get(mid, 0) is None:
                del seen[mid]


def to_arrow(project: str, batch: Batch) -> pa.RecordBatch:
    """A request as rows of the ingest log."""
    cols: dict[str, list[Any]] = {name: [] for name in EVENT_SCHEMA.names}
    r = batch.received_at

    def row(kind: int, mid: str, profile: str, name: str, ts: int, source: str,
            sent_at: int | None, props: str) -> None:  # fmt: skip
        cols["kind"].append(kind)
        cols["project"].append(project)
        cols["message_id"].append(mid)
        cols["profile_id"].append(profile)
        cols["name"].append(name)
        cols["ts"].append(ts)
        cols["source"].append(source)
        cols["received_at"].append(r)
        cols["sent_at"].append(sent_at)
        cols["properties"].append(props)

    for e in batch.events:
        text = e.raw if e.raw is not None else _encode(e.properties).decode()
        row(EVENT, e.message_id, e.profile_id, e.name, e.ts, e.source, e.sent_at, text)
    for anonymous, (profile, since) in batch.links:
        row(LINK, anonymous, profile, "", r if since is None else since, "", None, "{}")
    for profile, props, at in batch.traits:
        row(TRAITS, "", profile, "", at, "", None, _encode(props).decode())
    return pa.RecordBatch.from_pydict(cols, schema=EVENT_SCHEMA)


def from_arrow(batch: pa.RecordBatch, ids: dict[str, int]) -> Batch | None:
    """Rows of the ingest log back as the request they were (one project per append)."""
    if batch.num_rows == 0:
        return None
    kind = batch.column("kind").to_numpy(zero_copy_only=False)
    received = int(batch.column("received_at")[0].as_py())
    out = Batch(ids[str(batch.column("project")[0].as_py())], received, [])
    events = kind == EVENT
    out.rows = batch.filter(pa.array(events))
    if not events.all():
        cols = batch.filter(pa.array(~events)).to_pydict()
        decode = msgspec.json.decode
        for i, k in enumerate(cols["kind"]):
            if k == LINK:
                tie = Target(cols["profile_id"][i], cols["ts"][i])
                out.links.append((cols["message_id"][i], tie))
            else:
                props = decode(cols["properties"][i])
                out.traits.append((cols["profile_id"][i], props, cols["ts"][i]))
    return out
