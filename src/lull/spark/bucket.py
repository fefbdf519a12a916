"""A bucket of profiles through `engine.vector`: the stream's keyed step, without Spark.

The stream keys its state by a bucket of profiles (a stable hash of the profile id
modulo the bucket count), so that Spark calls Python once per bucket per micro-batch,
not once per profile. A bucket holds what the live server holds for a project: a
`vector.Profiles` table, plus each profile's clock (its latest arrival instant: a row
whose received_at is behind it arrives at it, so a profile's clock never runs backwards)
and the (first_ts, last_ts) of its concluded sessions, which the exact engine reads for
an event older than the profile's horizon (R5). Spark cannot load that history on
demand the way the server loads it from the store, so the bucket keeps it.

`apply` gives, for a micro-batch's rows of the bucket, what `exact.replay` gives per
profile on the rows' arrival instants (received_at, then origin and position), with the
stream's clock (the watermark: the latest arrival of the batches before) as its end:
each row's session id and late mark, the sessions concluded, the open session of each
profile the batch touched, and when the bucket's timer must fire next.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from lull.engine import vector
from lull.engine.columnar import NONE
from lull.engine.sets import distinct
from lull.model import SYSTEM_EVENTS, Settings

I64 = npt.NDArray[np.int64]
BOOL = npt.NDArray[np.bool_]
OBJ = npt.NDArray[np.object_]

_FAR = 2**62  # a clock past every due time: conclude_due then takes every open session


@dataclass(slots=True)
class Rows:
    """A micro-batch's event rows of one bucket, in any order (as Spark hands them)."""

    message_id: OBJ
    profile_id: OBJ
    name: OBJ
    source: OBJ
    ts: I64  # R5's clock fix done
    r: I64  # received_at
    origin: OBJ | npt.NDArray[np.int32]  # file (or segment, or Kafka partition), or its
    # number in path order; with position, ties in received_at
    pos: I64

    def __len__(self) -> int:
        return len(self.r)


def _empty() -> I64:
    return np.zeros((3, 0), dtype=np.int64)


@dataclass(slots=True)
class Bucket:
    """The state of a bucket of profiles (see the module docstring).

    `history` is a (3, n) array of (code, first_ts, last_ts), one column per concluded
    session, appended to in the order they are concluded."""

    table: vector.Profiles = field(default_factory=lambda: vector.Profiles.new([]))
    clock: I64 = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    history: I64 = field(default_factory=_empty)
    _codes: dict[str, int] | None = None

    def code(self, profile_ids: OBJ) -> I64:
        """The table codes of these profile ids, new ones added to the table."""
        if self._codes is None:
            self._codes = {str(p): i for i, p in enumerate(self.table.profile_id.tolist())}
        codes = self._codes
        fresh = [p for p in dict.fromkeys(profile_ids.tolist()) if p not in codes]
        if fresh:
            base = len(self.table)
            codes.update((p, base + i) for i, p in enumerate(fresh))
            self.table = self.table.concat(vector.Profiles.new(fresh))
            self.clock = np.concatenate([self.clock, np.full(len(fresh), NONE, dtype=np.int64)])
        get = codes.__getitem__
        return np.fromiter(map(get, profile_ids.tolist()), dtype=np.int64, count=len(profile_ids))

    def past(self, code: int) -> list[tuple[int, int]]:
        """The profile's concluded sessions (first_ts, last_ts), sorted: `step`'s history."""
        mine = self.history[:, self.history[0] == code]
        pairs = sorted(zip(mine[1].tolist(), mine[2].tolist(), strict=True))
        return [(int(f), int(la)) for f, la in pairs]

    def remember(self, concluded: vector.Sessions) -> None:
        added = np.stack([concluded.code, concluded.first_ts, concluded.last_ts])
        self.history = np.concatenate([self.history, added], axis=1)


@dataclass(slots=True)
class Applied:
    """What one call gave. Per row of the input (in its order): `session_id` (None: no
    session) and `late`. `concluded`: the sessions concluded (each once, R4). `opened`:
    the open session of each profile that had rows, after them, and `as_of` (the
    profile's clock) for each. `timer`: the watermark at which the bucket's earliest open
    session falls due, less 1 (Spark fires an event-time timer once the watermark passes
    it), or None when nothing is open."""

    session_id: OBJ
    late: BOOL
    concluded: vector.Sessions
    opened: vector.Sessions
    as_of: I64
    timer: int | None


def eligible(settings: Settings, name: OBJ, source: OBJ) -> BOOL:
    """R1 for every row at once (sessions taken as on, as `Settings.is_eligible`)."""
    barred = {*settings.excluded_set, *SYSTEM_EVENTS}
    ok = np.fromiter((n not in barred for n in name.tolist()), dtype=bool, count=len(name))
    if not settings.sessions_enabled:
        ok[:] = False
    result: BOOL = ok & (source != "api")
    return result


def arrival_order(rows: Rows) -> I64:
    """The rows in arrival order: received_at, then origin, then position."""
    origin: npt.NDArray[np.integer[Any]] | OBJ = rows.origin  # file numbers in path order
    if origin.dtype.kind not in "iu":  # or texts
        origin = np.unique(origin.astype(str), return_inverse=True)[1]
    order: I64 = np.lexsort((rows.pos, origin, rows.r))
    return order


def apply(
    bucket: Bucket,
    rows: Rows | None,
    watermark: int,
    settings: Settings,
    late_after: int | None = None,
) -> Applied:
    """Apply a micro-batch's rows of the bucket (None: its timer fired), then conclude
    every session of the bucket due before its profile's clock or by the watermark.

    `late_after` (the stream's late horizon, ms; None: none): an eligible row that
    arrives more than this after its time, and whose time is before its profile's
    horizon as the batch starts, is late without being laid out against the profile's
    concluded sessions (those may be forgotten: `forget`)."""
    timeout = settings.timeout_ms
    n = 0 if rows is None else len(rows)
    session_id = np.full(n, None, dtype=object)
    late = np.zeros(n, dtype=bool)
    concluded: list[vector.Sessions] = []
    touched = np.zeros(0, dtype=np.int64)
    if rows is not None and n:
        codes = bucket.code(rows.profile_id)
        instant = np.maximum(rows.r, bucket.clock[codes])  # never behind the profile's clock
        arrival = arrival_order(rows)
        # one order for the batch whose instants never decrease; per profile it is the
        # arrival order (a profile's instants already never decrease along it)
        order = arrival[np.argsort(instant[arrival], kind="stable")]
        take = order[eligible(settings, rows.name, rows.source)[order]]
        if late_after is not None:
            horizon = bucket.table.horizon[codes]
            stale = (rows.ts < instant - late_after) & (horizon != NONE) & (rows.ts < horizon)
            late[take[stale[take]]] = True
            take = take[~stale[take]]
        for part in _chunks(instant[take]):
            rows_in = take[part]
            batch = vector.Batch(
                code=codes[rows_in],
                ts=rows.ts[rows_in],
                clock=instant[rows_in],
                seq=np.arange(len(rows_in), dtype=np.int64),
                message_id=rows.message_id[rows_in],
                source=rows.source[rows_in],
            )
            out = vector.step(bucket.table, batch, timeout, history=bucket.past)
            bucket.table.put(out.codes, out.after)
            joined = out.session >= 0
            session_id[rows_in[joined]] = out.sessions.session_id[out.session[joined]]
            late[rows_in] = out.late
            ended = _take(out.sessions, out.sessions.concluded)
            bucket.remember(ended)  # the history of the next chunk's exact profiles
            concluded.append(ended)
        np.maximum.at(bucket.clock, codes, instant)
        touched = distinct(codes)
    table = bucket.table
    # due before the profile's latest instant (no later arrival of it can join), or by
    # the stream's clock
    now = np.maximum(bucket.clock, watermark + 1)
    due = np.flatnonzero((table.open_last != NONE) & (table.open_last < now - timeout))
    if len(due):
        done = vector.conclude_due(table, _FAR, timeout, due)
        table.put(done.codes, done.after)
        concluded.append(done.sessions)
        bucket.remember(done.sessions)
    ended = vector.Sessions.join(concluded) if concluded else _take(_none(), np.zeros(0, bool))
    still = touched[table.open_last[touched] != NONE]
    opened = vector.Sessions(
        still, table.open_id[still], table.open_first[still], table.open_last[still],
        table.open_events[still], table.open_source[still],
        np.full(len(still), -1, dtype=np.int64), np.zeros(len(still), dtype=bool),
    )  # fmt: skip
    lasts = table.open_last[table.open_last != NONE]
    timer = int(lasts.min()) + timeout - 1 if len(lasts) else None
    return Applied(session_id, late, ended, opened, bucket.clock[still], timer)


def held(bucket: Bucket) -> dict[str, int]:
    """What a bucket holds: profiles, open sessions, concluded sessions (history)."""
    opened = int(np.count_nonzero(bucket.table.open_last != NONE))
    return {"profiles": len(bucket.table), "open": opened, "concluded": bucket.history.shape[1]}


def forget(bucket: Bucket, watermark: int, late_after: int, timeout: int) -> None:
    """Drop what no later row can need, given `apply`'s `late_after` rule:

    - a concluded session due (last event + timeout) at least `late_after` before its
      profile's clock: a later row of the profile arrives at or after that clock, so
      either its time is at or after the due time (it cannot reach the session), or
      it is more than `late_after` older than its arrival and before the horizon (late
      by the rule, without looking at the sessions);
    - a profile with nothing open, whose horizon and latest row are both more than
      `late_after` behind the stream's clock (`watermark`): it is dropped, and a later
      row of it is taken as the first of a new profile. That is the same answer for a
      row that arrives after the stream's clock and within `late_after` of its time
      (its time is then past the old horizon: it could not reach an old session); one
      that comes later than that after its time gets a session of its own, not late."""
    clock, table = bucket.clock, bucket.table
    known = clock != NONE
    line = np.where(known, clock - late_after, NONE)  # no overflow below NONE
    h = bucket.history
    if h.shape[1]:
        bucket.history = h[:, h[2] + timeout > line[h[0]]]
    since = watermark - late_after
    quiet = (table.open_last == NONE) & ((table.horizon == NONE) | (table.horizon <= since))
    gone = quiet & ((known & (clock < since)) | ~known)
    if not gone.any():
        return
    keep = np.flatnonzero(~gone)
    renumber = np.cumsum(~gone) - 1
    h = bucket.history
    h = h[:, ~gone[h[0]]]
    bucket.history = np.stack([renumber[h[0]], h[1], h[2]]) if h.shape[1] else _empty()
    bucket.table = table.take(keep)
    bucket.clock = clock[keep]
    bucket._codes = None


CHUNK = 4096


def _chunks(instant: I64) -> list[slice]:
    """The rows cut into runs of about CHUNK at instant boundaries (an instant is one set).

    Why: `vector.step` sends a profile whose events arrive out of time order to the exact
    engine with all its events of the step; on a long micro-batch (a backlog) that is all
    of the profile's backlog, on a chunk only its events near the overtaking."""
    n = len(instant)
    cuts = [0]
    while cuts[-1] + CHUNK < n:
        at = cuts[-1] + CHUNK
        at += int(np.searchsorted(instant[at:], instant[at - 1], side="right"))
        if at >= n:
            break
        cuts.append(at)
    cuts.append(n)
    return [slice(a, b) for a, b in itertools.pairwise(cuts)]


def _take(s: vector.Sessions, mask: BOOL) -> vector.Sessions:
    return vector.Sessions(*(getattr(s, f)[mask] for f in vector.Sessions.__slots__))


def _none() -> vector.Sessions:
    return vector.Sessions.of([])
