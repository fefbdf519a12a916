"""The front door: where an accepted request becomes durable and is acknowledged.

A request's events, checked by their handler, go through three steps here:

1. **Duplicates (R6).** A message id the project accepted within the duplicate window
   (at least 7 days of `received_at` by default, `lull serve --duplicate-window`) is
   acknowledged and dropped. Ids still on their way to the log are kept as they are;
   once the engine has them (in `lull serve`: once durable), as 64-bit hashes
   (`Window`: sorted NumPy arrays by day of arrival, 8 bytes an id), and a hash that
   matches is checked against the store. So
   memory follows the traffic of the window, not the size of the store. A day of ids
   is dropped once all of it is older than the window: a repeat that comes later than
   that after its first copy is stored again.
2. **The ingest log.** The events (with the identity links and profile properties the
   request makes) are appended to the ingest log in a frame: one Arrow batch of the
   requests that came while the frames before were being written, made on the event
   loop; it is durable once on disk (group commit, fdatasync). Only then is the request
   answered 2xx: a crash after it loses nothing ("Acknowledgement").
3. **The live engine** applies the log's batches to the store in log order, in large
   groups, a moment later (reads wait for what was acknowledged before they began).

If the log cannot be written (a full disk, an I/O error) the request is answered 503
with `Retry-After`, nothing of it counts as accepted, and the next request tries again.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lull.errors import Unavailable
from lull.ingest.columns import EventColumns
from lull.server.identity import Link, Target
from lull.store.log import EVENT_SCHEMA, START, IngestLog, LogError, Position

if TYPE_CHECKING:
    from lull.ingest.records import Event
    from lull.server.live import LiveEngine

DAY_MS = 24 * 3600 * 1000
DEFAULT_WINDOW_MS = 7 * DAY_MS
RETRY_AFTER_S = 2
# Frames in the log's hands at once: one being written and fsynced, the next one ready
# behind it, so the log never waits for the event loop to make one.
IN_FLIGHT = 2
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
        stored: Stored | None = None,
    ) -> None:
        self.log = log
        self.engine = engine
        self.names = names  # project id -> name (the log names projects)
        self.window_ms = window_ms
        # message ids not yet in the store per project: the append each rides on (done
        # once durable); once the engine has them (`engine.applied`), they move to `windows`
        self.seen: dict[int, dict[str, asyncio.Future[Position]]] = {}
        self.windows: dict[int, Window] = {}  # per project: ids the store holds, hashed
        self.stored = stored  # (project, ids, since): those the store holds since then
        # requests handed to the engine, by where they end in the log, with their ids,
        # until the engine has applied them
        self._unfrozen: collections.deque[tuple[Position, int, int, list[str]]] = (
            collections.deque()
        )
        self.acked = START  # the end of what was acknowledged and handed to the engine
        self.failing: str | None = None  # the last append's error, while appends fail
        self._dropped = -1  # the window's days before this are dropped
        self._keeper: queue.SimpleQueue[tuple[int, int, list[str]]] = queue.SimpleQueue()
        threading.Thread(target=self._keep, name="lull-window", daemon=True).start()
        self._parts: list[_Part] = []  # requests waiting for the next frame
        self._writing = 0  # frames in the log's hands, not yet durable

    def remember(self, pid: int, day: int, message_ids: list[str]) -> None:
        """At start: ids the store accepted on `day` (received_at // DAY_MS)."""
        self._window(pid).add(day, hashes(message_ids))

    def _window(self, pid: int) -> Window:
        window = self.windows.get(pid)
        if window is None:  # (not setdefault: a Window is not cheap to make and drop)
            window = self.windows[pid] = Window()
        return window

    def _known(
        self, pid: int, ids: list[str]
    ) -> tuple[list[asyncio.Future[Position] | None] | None, list[str]]:
        """Where the door has these ids: each one's append if it is in `seen` (None: no id
        is), and those whose hash the window knows. `seen` is asked first: the keeper puts
        an id in the window before it takes it out of `seen`."""
        seen = self.seen.setdefault(pid, {})
        flying = None if seen.keys().isdisjoint(ids) else [seen.get(mid) for mid in ids]
        window = self.windows.get(pid)
        return flying, window.matches(ids) if window is not None and window.days else []

    async def take(
        self,
        pid: int,
        received_at: int,
        events: EventColumns,
        links: list[Link] | None = None,
        traits: list[tuple[str, dict[str, Any], int]] | None = None,
    ) -> Outcome:
        """Make a request's events durable; returns once they are (or raises Unavailable)."""
        self._expire(received_at)
        ids = events.message_ids
        flying, maybe = self._known(pid, ids)
        held: set[str] = set()
        if maybe:  # a hash the window knows: almost always a repeat (two ids share a 64-bit
            # hash with a chance of 5e-20), checked against the store off the event loop
            window = self.windows[pid]
            if self.stored is None:
                held = set(maybe)
            else:
                held = await asyncio.to_thread(self.stored, pid, maybe, window.since())
            flying, again = self._known(pid, ids)  # what came and went meanwhile
            held |= set(again) - set(maybe)
        seen = self.seen[pid]
        waits: list[asyncio.Future[Position]] = []
        if not held and flying is None and len(set(ids)) == len(ids):
            fresh = events  # the common case, decided set-wise
        else:
            rows, taken = [], set()
            for i, mid in enumerate(ids):
                pending = flying[i] if flying is not None else None
                if pending is not None:
                    waits.append(pending)  # durable once its first copy is
                elif mid not in held and mid not in taken:
                    taken.add(mid)
                    rows.append(i)
            fresh = events.take(rows)
            ids = fresh.message_ids
        outcome = Outcome(accepted=len(fresh), duplicates=len(events) - len(fresh))
        if len(fresh) or links or traits:
            batch = Batch(pid, received_at, [], list(links or ()), list(traits or ()))
            future = self._submit(batch, fresh)
            seen.update(dict.fromkeys(ids, future))  # no await since the check above
            waits.append(future)
        for wait in waits:
            try:
                await asyncio.shield(wait)  # (a client gone does not cancel others' wait)
            except Exception as error:
                self._forget(pid, ids)
                self.failing = str(error)
                raise Unavailable(f"events could not be stored, retry: {error}") from None
        self.failing = None
        if links:  # later requests resolve these ids at once, not once the store has them
            self.engine.link(pid, links)
        return outcome

    def _submit(self, batch: Batch, events: EventColumns) -> asyncio.Future[Position]:
        """Queue a request for the log; the future resolves once it is durable. Requests
        queued while a frame is being written go into the next frame together."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Position] = loop.create_future()
        self._parts.append((self.names(batch.project_id), batch, events, future))
        if len(self._parts) == 1 and self._writing < IN_FLIGHT:  # the log has room: after
            loop.call_soon(self._flush)  # the requests this turn of the loop has read
        return future

    def _flush(self) -> None:
        """The queued requests as one frame of the log (made here, on the event loop's
        thread, which holds the GIL anyway: the log's thread only writes)."""
        if not self._parts or self._writing >= IN_FLIGHT:
            return
        parts, self._parts = self._parts, []
        loop = asyncio.get_running_loop()
        try:
            frame = _combine([(name, batch, events) for name, batch, events, _ in parts])
            durable = self.log.submit(frame)
        except (LogError, ValueError, pa.ArrowException) as error:
            for *_, future in parts:
                future.set_exception(LogError(str(error)))
            return
        self._writing += 1
        durable.add_done_callback(lambda d: loop.call_soon_threadsafe(self._durable, parts, d))

    def _durable(self, parts: list[_Part], durable: Future[Position]) -> None:
        """A frame is on disk (or failed): answer its requests and give them to the engine
        (in log order: frames are written, and so reported, in the order made)."""
        self._writing -= 1
        error = durable.exception()
        if error is None:
            position = self.acked = durable.result()
            for _, batch, events, future in parts:
                batch.position = position
                if len(events):
                    ids = events.message_ids
                    self._unfrozen.append((position, batch.project_id, batch.received_at, ids))
                future.set_result(position)
            self.engine.enqueue([batch for _, batch, _, _ in parts])
        else:
            for *_, future in parts:
                future.set_exception(error)
        if self._parts:
            self._flush()

    def _forget(self, pid: int, ids: list[str]) -> None:
        """Out of `seen` (a loop in C)."""
        collections.deque(map(self.seen.get(pid, {}).pop, ids, itertools.repeat(None)), 0)

    def _expire(self, now: int) -> None:
        """Ids the engine has applied go to the keeper, which moves them from `seen` to
        the hashed window (with no window, they are forgotten once durable: only copies in
        flight are dropped); days wholly older than the window are dropped. The sorting
        and merging of the window's arrays is the keeper's (NumPy releases the GIL), not
        the event loop's."""
        applied = self.engine.applied
        unfrozen = self._unfrozen
        while unfrozen and (unfrozen[0][0] <= applied or self.window_ms <= 0):
            _, pid, received_at, ids = unfrozen.popleft()
            if self.window_ms > 0:
                self._keeper.put((pid, received_at // DAY_MS, ids))
            else:  # durable: forgotten
                self._forget(pid, ids)
        oldest = (now - self.window_ms) // DAY_MS  # a day before it is wholly past
        if self.window_ms > 0 and oldest > self._dropped:
            self._dropped = oldest
            self._keeper.put((-1, oldest, []))

    def _keep(self) -> None:
        """The keeper's thread: the window's changes, in order."""
        while True:
            pid, day, ids = self._keeper.get()
            if pid < 0:
                for window in list(self.windows.values()):
                    window.drop_before(day)
                continue
            self._window(pid).add(day, hashes(ids))  # published, then out of `seen`
            self._forget(pid, ids)


Stored = Callable[[int, list[str], int], set[str]]
# a request waiting for the log: its project's name, itself, its events, its answer
_Part = tuple[str, Batch, EventColumns, "asyncio.Future[Position]"]
_CHUNK = 1 << 16  # ids of a day gathered in a set before they become a sorted array


def hashes(ids: list[str]) -> np.ndarray:
    """64-bit hashes of message ids (Python's string hash: this process's own)."""
    return np.fromiter(map(hash, ids), dtype=np.int64, count=len(ids))


class Window:
    """A project's message ids the store holds, as 64-bit hashes with their day of arrival:
    the days that are over in one sorted NumPy array (12 bytes an id with its day), the
    current day in another (each run of its newest merged into it) and a set of its
    newest. Membership: the set, then a binary search in each array.

    One thread changes it (the door's keeper) while the event loop asks it: every change
    makes new arrays and publishes them by one assignment, and an id is published before
    it leaves the door's `seen` (so an id is always in one or the other)."""

    def __init__(self) -> None:
        self.closed = np.zeros(0, dtype=np.int64)  # sorted hashes of the days that are over
        self.closed_day = np.zeros(0, dtype=np.int32)  # the day of each
        self.day: int | None = None  # the current day
        self.runs: tuple[np.ndarray, ...] = ()  # its hashes, in sorted runs
        self.newest: set[int] = set()  # and its newest
        self.first: int | None = None  # the earliest day held

    def __len__(self) -> int:
        return len(self.closed) + sum(len(r) for r in self.runs) + len(self.newest)

    @property
    def days(self) -> bool:
        return self.first is not None

    def since(self) -> int:
        """The first instant (ms) the window covers."""
        return 0 if self.first is None else self.first * DAY_MS

    def add(self, day: int, values: np.ndarray | list[int]) -> None:
        """Hashes of ids that arrived on `day` (a list: a few, an array: many)."""
        if not len(values):
            return
        self.first = day if self.first is None else min(self.first, day)
        if self.day is None or day > self.day:
            self._close()
            self.day = day
        elif day < self.day:  # an earlier day (rare): straight into the closed days
            self._into_closed(np.sort(np.asarray(values, dtype=np.int64)), day)
            return
        if len(values) >= _CHUNK:
            self._push(np.sort(np.asarray(values, dtype=np.int64)))
            return
        self.newest.update(values.tolist() if isinstance(values, np.ndarray) else values)
        if len(self.newest) >= _CHUNK:
            newest = self.newest
            self._push(np.sort(np.fromiter(newest, np.int64, len(newest))))
            self.newest = set()  # (after the run that holds them is published)

    def _push(self, run: np.ndarray) -> None:
        """A sorted run joins the current day's: merged into one array (by the keeper, and
        NumPy's sort releases the GIL) so that a lookup searches one array a day."""
        self.runs = (*self.runs, run)
        if len(self.runs) > 1:
            self.runs = (np.sort(np.concatenate(self.runs), kind="stable"),)

    def _close(self) -> None:
        """The current day is over: its ids join the closed days."""
        if self.day is None:
            return
        newest = np.sort(np.fromiter(self.newest, np.int64, len(self.newest)))
        self._into_closed(np.sort(np.concatenate([*self.runs, newest])), self.day)
        self.runs, self.newest = (), set()

    def _into_closed(self, values: np.ndarray, day: int) -> None:
        hashes = np.concatenate([self.closed, values])
        days = np.concatenate([self.closed_day, np.full(len(values), day, dtype=np.int32)])
        order = np.argsort(hashes, kind="stable")  # two sorted runs: a merge
        self.closed_day = days[order]
        self.closed = hashes[order]

    def matches(self, ids: list[str]) -> list[str]:
        """The ids whose hash is in the window."""
        if not ids:
            return []
        h = list(map(hash, ids))
        newest = self.newest
        found = (
            {i for i, v in enumerate(h) if v in newest}
            if newest and not newest.isdisjoint(h)
            else set()
        )
        arrays = [a for a in (self.closed, *self.runs) if len(a)]
        if arrays:
            hs = np.array(h, dtype=np.int64)
            hit = np.zeros(len(hs), dtype=bool)
            for run in arrays:
                hit |= run[np.minimum(np.searchsorted(run, hs), len(run) - 1)] == hs
            found.update(np.flatnonzero(hit).tolist())
        return [ids[i] for i in sorted(found)]

    def drop_before(self, day: int) -> None:
        """Forget the days before `day`."""
        if self.first is None or self.first >= day:
            return
        keep = self.closed_day >= day
        self.closed, self.closed_day = self.closed[keep], self.closed_day[keep]
        if self.day is not None and self.day < day:
            self.day, self.runs, self.newest = None, (), set()
        held = [int(self.closed_day.min())] if len(self.closed_day) else []
        held += [self.day] if self.day is not None else []
        self.first = min(held) if held else None


def to_arrow(project: str, batch: Batch, events: EventColumns | None = None) -> pa.RecordBatch:
    """A request as rows of the ingest log (its events: `events`, else `batch.events`)."""
    return _combine([(project, batch, EventColumns.of(batch.events) if events is None else events)])


def _combine(parts: list[tuple[str, Batch, EventColumns]]) -> pa.RecordBatch:
    """Requests (project name, request, its events) as the rows of one log frame: each
    request's events, then its links and traits. Sets each request's `rows` (a slice: its
    events). Column by column, one conversion for all of them."""
    ids: list[str] = []
    profiles: list[str] = []
    names: list[str] = []
    ts: list[int] = []
    sent: list[int | None] = []
    props: list[pa.Array] = []  # runs of properties of one type (bytes or str)
    run: list[bytes | str] = []
    sources: list[str] = []  # each request's ("" where a request has one per event)
    kinds: list[int] = []  # per row, only once a request has other rows
    counts, owner = [], []  # rows per request, and its project
    spans = []  # (request, first row, events)
    projects: dict[str, int] = {}
    received: list[int] = []
    plain_source = True
    for project, batch, events in parts:
        n = len(events)
        spans.append((batch, len(ids), n))
        ids += events.message_ids
        profiles += events.profile_ids
        names += events.names
        ts += events.ts
        sent += events.sent_at
        values = events.properties
        if isinstance(values, pa.Array):
            if run:
                props.append(_strings(run))
                run = []
            props.append(values)
        else:
            if run and values and type(values[0]) is not type(run[0]):
                props.append(_strings(run))
                run = []
            run += values
        other: list[tuple[int, str, str, int, str]] = [
            (LINK, anonymous, profile, batch.received_at if since is None else since, "{}")
            for anonymous, (profile, since) in batch.links
        ]
        other += [(TRAITS, "", p, at, _encode(t).decode()) for p, t, at in batch.traits]
        if other:
            kinds += [EVENT] * (len(ids) - len(kinds))  # the rows so far are events
            if run and type(run[0]) is bytes:
                props.append(_strings(run))
                run = []
            ids += [o[1] for o in other]
            profiles += [o[2] for o in other]
            names += [""] * len(other)
            ts += [o[3] for o in other]
            sent += [None] * len(other)
            run += [o[4] for o in other]
            kinds += [o[0] for o in other]
        source = events.source
        if isinstance(source, str):
            sources.append(source)
        else:
            plain_source = False
            sources.append("")
        counts.append(n + len(other))
        owner.append(projects.setdefault(project, len(projects)))
        received.append(batch.received_at)
    if run or not props:
        props.append(_strings(run))
    total = len(ids)
    if kinds:
        kinds += [EVENT] * (total - len(kinds))
    each = np.repeat(np.arange(len(parts)), counts)
    if plain_source:
        source_column: pa.Array = pa.array(sources, pa.string()).take(each)
    else:  # some request has a source per event: spell every row's out
        rows: list[str] = []
        for (_, _, events), count in zip(parts, counts, strict=True):
            s = events.source
            rows += [s] * count if isinstance(s, str) else [*s, *[""] * (count - len(s))]
        source_column = pa.array(rows, pa.string())
    cols: list[pa.Array] = [
        pa.array(list(projects), pa.string()).take(np.asarray(owner)[each]),
        pa.array(ids, pa.string()),
        pa.array(profiles, pa.string()),
        pa.array(names, pa.string()),
        pa.array(ts, pa.int64()),
        source_column,
        pa.array(np.asarray(received, dtype=np.int64)[each]),
        pa.array(sent, pa.int64()),
        pa.concat_arrays(props) if len(props) > 1 else props[0],
        (
            pa.array(np.asarray(kinds, dtype=np.int8)) if kinds
            else pa.array(np.zeros(total, dtype=np.int8))
        ),
    ]  # fmt: skip
    out = pa.RecordBatch.from_arrays(cols, schema=EVENT_SCHEMA)
    for batch, first, n in spans:
        batch.rows = out.slice(first, n)
    return out


def _strings(values: Sequence[str | bytes]) -> pa.Array:
    """A string column of texts, or of UTF-8 bytes (checked by whoever made them)."""
    if values and type(values[0]) is bytes:
        return pa.array(values, pa.binary()).view(pa.string())
    return pa.array(values, pa.string())


def from_arrow(batch: pa.RecordBatch, ids: dict[str, int]) -> list[Batch]:
    """A frame of the ingest log back as requests, one per project it holds (in the order
    they first appear)."""
    if batch.num_rows == 0:
        return []
    kind = batch.column("kind").to_numpy(zero_copy_only=False)
    project = batch.column("project")
    projects = pc.unique(project).to_pylist()
    out = []
    for name in projects:
        rows = batch if len(projects) == 1 else batch.filter(pc.equal(project, name))
        k = kind if rows is batch else rows.column("kind").to_numpy(zero_copy_only=False)
        request = Batch(ids[str(name)], int(rows.column("received_at")[0].as_py()), [])
        events = k == EVENT
        request.rows = rows if events.all() else rows.filter(pa.array(events))
        if not events.all():
            cols = rows.filter(pa.array(~events)).to_pydict()
            decode = msgspec.json.decode
            for i, row_kind in enumerate(cols["kind"]):
                if row_kind == LINK:
                    tie = Target(cols["profile_id"][i], cols["ts"][i])
                    request.links.append((cols["message_id"][i], tie))
                else:
                    props = decode(cols["properties"][i])
                    request.traits.append((cols["profile_id"][i], props, cols["ts"][i]))
        out.append(request)
    return out
