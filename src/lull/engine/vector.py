"""R2-R5 for a batch of live arrivals, set-wise with NumPy; irregular profiles go to `exact`.

Why: the live server applies arrivals one profile and one instant at a time with
`exact.apply`, a few microseconds of Python per event. Almost every profile's events
arrive in time order, after its open session's last event, and before that session fell
due; for those, a whole batch is R2 over (open session + new events), which is a sort
and a diff. This module does that for every such profile at once and hands only the
rare others to the exact engine, which stays the reference. Its answer is exactly that
of `exact.replay` run per profile on the batch's arrival instants.

The API, for a single-writer loop that holds every profile's state in one `Profiles`
table (NumPy arrays indexed by a profile code the caller assigns):

    table = Profiles.new(["u-1", "u-2"])          # later: table = table.concat(Profiles.new(more))
    out = step(table, batch, timeout, now=clock, history=load)
    table.put(out.codes, out.after)               # after the outcome is durable
    ...
    due = conclude_due(table, now, timeout)       # the timer (R4)
    table.put(due.codes, due.after)

- `Batch`: columns in arrival order (seq increasing, clock never decreasing). One arrival
  instant (`clock`) must not be split across two batches: an instant is applied as one
  set. `eligible` False rows (R1) are carried along and get no session.
- `step` returns a `Step`: per batch row, its session (an index into `out.sessions`, or
  -1) and whether it is late (R5); `out.sessions`, every session the batch created,
  extended or concluded, with its id (R3), times, event count (all its events, earlier
  batches included), source and `concluded` flag; and the new state of the profiles the
  batch touched (`codes`, `after`), which `Profiles.put` writes back. `step` is pure:
  nothing is changed until the caller puts the new state.
- `now` (optional): after the batch, also conclude the touched profiles' sessions with
  last_ts + timeout < now, as the timer would.
- `history(code)`: the (first_ts, last_ts) of the profile's concluded sessions in the
  store, sorted. Only called for an event older than its profile's horizon, which only
  the exact engine needs; without it such an event raises ValueError, as `exact.apply`
  does.

Semantics: per profile, sessions that fell due strictly before an instant are concluded
before the events of that instant are applied, and the events of one instant are applied
as one set (`exact.replay`, with the batch's instants as its clock).

The fast path. Sort the eligible rows by (profile, ts, row) (a stable radix sort on the
profile, then by time only where a profile's times run backwards). A profile is
*regular* when its events, in that order, arrive at non-decreasing instants (no event is
older than one of an earlier instant), the first is at or after its open session's last
event and at or after its horizon. For a regular profile the exact engine's run of
instants is a single pass along that order, and it is computed set-wise:

- an event joins the previous one (or the open session) when the gap is below the
  timeout (R2), otherwise it starts a new session, whose id comes from its first event;
- where an instant begins and the session so far (last event `M`) fell due before it
  (`M + timeout < instant`), the session is concluded there: the horizon becomes
  `M + timeout`, and the events from there on that are before it are late (they would
  have joined a concluded session; R5), the rest are laid out again without them.

A regular profile goes to the exact engine only when a late event is followed, at a later
instant, by an event within the timeout of it: the two readings (chain from the late
event, or from the concluded session) then need the exact interleaving. The other
irregular profiles are those with an event older than the open session's last event or
than the horizon, or older than an event of an earlier instant of the batch. Of the last
kind, those whose R2 runs each arrived whole before the next began, as one chain that
grew instant by instant and never fell due, are R2 all the same and stay set-wise
(`_runs_in_arrival_order`), with each run's id from the earliest event of its first
instant; in a bulk import's large batches this is most of them. In live
traffic these are the rare out-of-order or retried events, and each costs what the exact
engine costs; everything else costs a few NumPy passes over the batch. On
bench/generate.py's app (`bench/vector.py --realistic`, batches of 10k) about 1.1% of the
profiles a batch touches go to the exact engine: two thirds for web events overtaking
each other within the batch, a third for an event older than the open session's last
(from an earlier batch), a few older than the horizon; the tangled case is ~1 in 100,000.
Most of them only extend the open session; taking them set-wise too is the next step if
they ever matter.

Deferred ids (a bulk import, `engine/replay.py`): a batch may leave `message_id` and
`source` None. Making R3's id is then the caller's: every session the batch creates comes
back with `session_id` and `source` None and its `head` row, whose message id and source
give them (`session_id_for(profile, message_id[head])`, the head's source), which a store
does set-wise in SQL instead of one md5 a session in Python. The exact engine, which
needs an identity for the sessions it juggles, gets the row's `seq` as a stand-in message
id; an open session carried from an earlier batch keeps whatever id the table holds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lull.engine import exact
from lull.engine.order import group_by_code
from lull.engine.state import NONE, Arrival, ProfileState, Session
from lull.model import session_id_for

I64 = npt.NDArray[np.int64]
BOOL = npt.NDArray[np.bool_]
OBJ = npt.NDArray[np.object_]
History = Callable[[int], Sequence[tuple[int, int]]]

_NEG = -(2**62)  # "no previous event": far enough that any gap from it splits, no overflow


def _objects(values: Sequence[object] | OBJ) -> OBJ:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


@dataclass(slots=True)
class Profiles:
    """Per-profile state, one entry per profile code: what `ProfileState` holds, as arrays.

    NONE marks "no value" in the int64 arrays (no open session: `open_last` is NONE; no
    concluded session: `horizon` is NONE), None in the object arrays. The history of
    concluded sessions is not kept here: `step` asks for it (rarely) through `history`.
    """

    profile_id: OBJ  # str
    open_id: OBJ  # str | None
    open_first: I64
    open_last: I64
    open_events: I64
    open_source: OBJ  # str | None
    horizon: I64
    latest_first: I64  # (latest_first, latest_id): the latest concluded session
    latest_id: OBJ  # str | None

    @classmethod
    def new(cls, profile_ids: Sequence[str]) -> Profiles:
        """Profiles never seen: nothing open, nothing concluded."""
        n = len(profile_ids)

        def none() -> I64:
            return np.full(n, NONE, dtype=np.int64)

        def nothing() -> OBJ:
            return np.full(n, None, dtype=object)

        return cls(
            _objects(profile_ids), nothing(), none(), none(), np.zeros(n, dtype=np.int64),
            nothing(), none(), none(), nothing(),
        )  # fmt: skip

    @classmethod
    def from_states(cls, states: Sequence[ProfileState]) -> Profiles:
        """A table whose code i holds `states[i]` (their history is not kept)."""
        table = cls.new([s.profile_id for s in states])
        for code, state in enumerate(states):
            table.set(code, state)
        return table

    def __len__(self) -> int:
        return len(self.profile_id)

    def take(self, codes: I64) -> Profiles:
        """A copy of the entries of `codes`, in that order."""
        return Profiles(
            self.profile_id[codes], self.open_id[codes], self.open_first[codes],
            self.open_last[codes], self.open_events[codes], self.open_source[codes],
            self.horizon[codes], self.latest_first[codes], self.latest_id[codes],
        )  # fmt: skip

    def put(self, codes: I64, other: Profiles) -> None:
        """Write `other` (aligned with `codes`) into entries `codes`, in place."""
        self.open_id[codes] = other.open_id
        self.open_first[codes] = other.open_first
        self.open_last[codes] = other.open_last
        self.open_events[codes] = other.open_events
        self.open_source[codes] = other.open_source
        self.horizon[codes] = other.horizon
        self.latest_first[codes] = other.latest_first
        self.latest_id[codes] = other.latest_id

    def concat(self, other: Profiles) -> Profiles:
        """This table followed by `other` (new profiles get the next codes)."""
        return Profiles(*(np.concatenate([getattr(self, f), getattr(other, f)]) for f in _FIELDS))

    def state(self, code: int) -> ProfileState:
        """Entry `code` as the exact engine's `ProfileState` (history not loaded)."""
        state = ProfileState(str(self.profile_id[code]))
        if self.open_last[code] != NONE:
            state.open = Session(
                str(self.open_id[code]), state.profile_id, int(self.open_first[code]),
                int(self.open_last[code]), int(self.open_events[code]),
                str(self.open_source[code]),
            )  # fmt: skip
        if self.horizon[code] != NONE:
            state.horizon = int(self.horizon[code])
        if self.latest_first[code] != NONE:
            state.latest = (int(self.latest_first[code]), str(self.latest_id[code]))
        return state

    def set(self, code: int, state: ProfileState) -> None:
        """Write a `ProfileState` into entry `code` (its history is dropped)."""
        o = state.open
        self.open_id[code] = None if o is None else o.session_id
        self.open_first[code] = NONE if o is None else o.first_ts
        self.open_last[code] = NONE if o is None else o.last_ts
        self.open_events[code] = 0 if o is None else o.events
        self.open_source[code] = None if o is None else o.source
        self.horizon[code] = NONE if state.horizon is None else state.horizon
        self.latest_first[code] = NONE if state.latest is None else state.latest[0]
        self.latest_id[code] = None if state.latest is None else state.latest[1]


_FIELDS = Profiles.__slots__


@dataclass(slots=True)
class Batch:
    """Arrivals in arrival order: `seq` increasing, `clock` (the arrival instant, ms)
    never decreasing. `code` indexes the `Profiles` table; `ts` is the event time after
    R5's clock fix. `message_id` and `source` are object arrays (or lists) of str; for
    Arrow columns, pass `column.to_numpy(zero_copy_only=False)`; both None: the ids are
    deferred to the caller (see the module docstring). `eligible` None: all."""

    code: I64
    ts: I64
    clock: I64
    seq: I64
    message_id: OBJ | Sequence[str] | None
    source: OBJ | Sequence[str] | None
    eligible: BOOL | None = None

    @property
    def deferred(self) -> bool:
        """True when the caller makes the new sessions' ids and sources (from `head`)."""
        return self.message_id is None or self.source is None

    def texts(self, rows: Sequence[int]) -> tuple[list[str], list[str]]:
        """The message ids and sources of `rows` (stand-ins when deferred: the seq, '')."""
        if self.message_id is None or self.source is None:
            return [f"\x00{int(self.seq[r])}" for r in rows], [""] * len(rows)
        m, s = self.message_id, self.source
        return [str(m[r]) for r in rows], [str(s[r]) for r in rows]

    def __len__(self) -> int:
        return len(self.code)


@dataclass(slots=True)
class Sessions:
    """Sessions a batch created, extended or concluded (or the timer concluded).

    `events` counts all the session's events (earlier batches included). `head` is the
    batch row of its first event (-1: it was open before the batch). `concluded`: it was
    concluded by this batch (its Session Concluded is due at last_ts + timeout, R4);
    otherwise it is its profile's open session after the batch.
    """

    code: I64
    session_id: OBJ
    first_ts: I64
    last_ts: I64
    events: I64
    source: OBJ
    head: I64
    concluded: BOOL

    def __len__(self) -> int:
        return len(self.code)

    @classmethod
    def of(cls, rows: Sequence[tuple[int, Session, int, bool]]) -> Sessions:
        """From (code, session, head, concluded) rows."""
        return cls(
            np.array([r[0] for r in rows], dtype=np.int64),
            _objects([r[1].session_id for r in rows]),
            np.array([r[1].first_ts for r in rows], dtype=np.int64),
            np.array([r[1].last_ts for r in rows], dtype=np.int64),
            np.array([r[1].events for r in rows], dtype=np.int64),
            _objects([r[1].source for r in rows]),
            np.array([r[2] for r in rows], dtype=np.int64),
            np.array([r[3] for r in rows], dtype=bool),
        )

    @staticmethod
    def join(parts: Sequence[Sessions]) -> Sessions:
        return Sessions(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in Sessions.__slots__)
        )


@dataclass(slots=True)
class Step:
    """The outcome of one batch.

    `session[row]`: index into `sessions`, or -1 (late, or not eligible). `late[row]`: the
    row is late (R5). `codes`: the profiles the batch touched (sorted); `after`: their
    state after it. `exact`: the codes that went to the exact engine.
    """

    session: I64
    late: BOOL
    sessions: Sessions
    codes: I64
    after: Profiles
    exact: I64


@dataclass(slots=True)
class Concluded:
    """What the timer concluded: the sessions, and the new state of their profiles."""

    sessions: Sessions
    codes: I64
    after: Profiles


def conclude_due(table: Profiles, now: int, timeout: int, codes: I64 | None = None) -> Concluded:
    """R4, the timer: conclude every open session with last_ts + timeout < now (among
    `codes`, or the whole table). Pure: the caller puts `after` back."""
    last = table.open_last if codes is None else table.open_last[codes]
    at = np.flatnonzero((last != NONE) & (last < now - timeout))
    if codes is not None:
        at = codes[at]
    after = table.take(at)
    n = len(at)
    sessions = Sessions(
        at, after.open_id.copy(), after.open_first.copy(), after.open_last.copy(),
        after.open_events.copy(), after.open_source.copy(), np.full(n, -1, dtype=np.int64),
        np.ones(n, dtype=bool),
    )  # fmt: skip
    _conclude_into(after, np.ones(n, dtype=bool), sessions, np.arange(n), timeout)
    _clear_open(after, np.ones(n, dtype=bool))
    return Concluded(sessions, at, after)


def _conclude_into(
    after: Profiles, mask: BOOL, sessions: Sessions, index: I64, timeout: int
) -> None:
    """Where `mask`: session `index` (the profile's latest concluded one) moves the
    horizon and the latest session, as `exact._close` does."""
    s = index[mask]
    due = sessions.last_ts[s] + timeout
    after.horizon[mask] = np.maximum(after.horizon[mask], due)
    first = sessions.first_ts[s]
    newer = first >= after.latest_first[mask]  # NONE is the smallest int64
    where = np.flatnonzero(mask)[newer]
    after.latest_first[where] = first[newer]
    after.latest_id[where] = sessions.session_id[s[newer]]


def _clear_open(after: Profiles, mask: BOOL) -> None:
    after.open_id[mask] = None
    after.open_first[mask] = NONE
    after.open_last[mask] = NONE
    after.open_events[mask] = 0
    after.open_source[mask] = None


def _check(batch: Batch) -> None:
    n = len(batch.code)
    if (batch.message_id is None) != (batch.source is None):
        raise ValueError("batch columns 'message_id' and 'source' are given together or not at all")
    for name in ("ts", "clock", "seq", "message_id", "source"):
        if getattr(batch, name) is not None and len(getattr(batch, name)) != n:
            raise ValueError(f"batch column {name!r} has {len(getattr(batch, name))} rows, not {n}")
    if batch.eligible is not None and len(batch.eligible) != n:
        raise ValueError("batch column 'eligible' has the wrong length")
    if n > 1 and bool(np.any(batch.clock[1:] < batch.clock[:-1])):
        raise ValueError("batch rows must be in arrival order: clock went backwards")
    if n > 1 and bool(np.any(batch.seq[1:] <= batch.seq[:-1])):
        raise ValueError("batch rows must be in arrival order: seq must increase")


def step(
    table: Profiles,
    batch: Batch,
    timeout: int,
    *,
    now: int | None = None,
    history: History | None = None,
) -> Step:
    """Apply a batch of arrivals (R2-R5), as `exact.replay` would per profile.

    See the module docstring for the contract. Regular profiles are computed set-wise;
    the others (`Step.exact`) with `exact.conclude_due` and `exact.apply`.
    """
    _check(batch)
    n = len(batch.code)
    rows = np.arange(n) if batch.eligible is None else np.flatnonzero(batch.eligible)
    session = np.full(n, -1, dtype=np.int64)
    late_out = np.zeros(n, dtype=bool)
    if len(rows) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Step(session, late_out, Sessions.of([]), empty, table.take(empty), empty)
    code = batch.code[rows]

    # (profile, ts, row) order: group the rows by profile (stable), then sort by time
    # only the profiles whose times run backwards
    order = group_by_code(code)
    s = rows[order]
    c = code[order]
    m = len(s)
    start = np.ones(m, dtype=bool)
    start[1:] = c[1:] != c[:-1]
    g = np.cumsum(start) - 1  # the row's profile, as an index into `touched`
    t = batch.ts[s]
    backwards = np.flatnonzero((t[1:] < t[:-1]) & ~start[1:])
    if len(backwards):
        flagged = np.zeros(int(g[-1]) + 1, dtype=bool)
        flagged[g[backwards + 1]] = True
        part = np.flatnonzero(flagged[g])
        sub = s[part]
        s[part] = sub[np.lexsort((batch.ts[sub], g[part]))]
        t = batch.ts[s]
    k = batch.clock[s]
    first = np.flatnonzero(start)
    last_row = np.append(first[1:], m) - 1
    touched = c[first]
    n_groups = len(first)

    before = table.take(touched)
    o_last = before.open_last
    has_open = o_last != NONE

    prev = np.empty(m, dtype=np.int64)
    prev[1:] = t[:-1]
    prev[first] = np.where(has_open, o_last, _NEG)
    new_instant = start.copy()
    new_instant[1:] |= k[1:] != k[:-1]

    # irregular: older than the open session's last event or than the horizon, or older
    # than an event of an earlier instant (the instants run backwards in time order)
    bad = has_open & (t[first] < o_last)
    bad |= (before.horizon != NONE) & (t[first] < before.horizon)
    backwards = np.zeros(n_groups, dtype=bool)
    backwards[g[np.flatnonzero((k[1:] < k[:-1]) & ~start[1:]) + 1]] = True
    # ... unless each of its R2 runs arrived whole before the next began, as one growing
    # chain that never fell due (then it is R2, with heads taken at first arrival)
    fine = np.zeros(n_groups, dtype=bool)
    alt_head = np.zeros(0, dtype=np.int64)
    if now is None and bool((backwards & ~bad).any()):
        fine, alt_head = _runs_in_arrival_order(
            backwards & ~bad, g, s, t, k, prev, start, before, timeout
        )
    bad |= backwards & ~fine

    # R4 then R5: where an instant begins and the session so far fell due before it, it
    # is concluded there; the events from there on before its due time are late
    join = t - prev < timeout
    due_point = join & new_instant & (prev + timeout < k) & ~fine[g]
    late = np.zeros(m, dtype=bool)
    if due_point.any():
        at = np.maximum.accumulate(np.where(due_point, np.arange(m), -1))
        late = (at >= first[g]) & (t < prev[np.maximum(at, 0)] + timeout)
        # a due point right after a late event: which one it chains from needs the
        # exact interleaving
        tangled = np.flatnonzero(due_point[1:] & late[:-1] & ~start[1:]) + 1
        bad[g[tangled]] = True

    ok = ~bad
    keep = ok[g] & ~late
    ks, kt, kg = s[keep], t[keep], g[keep]
    km = len(ks)
    kstart = np.ones(km, dtype=bool)
    kstart[1:] = kg[1:] != kg[:-1]
    kfirst = np.flatnonzero(kstart)
    kprev = np.empty(km, dtype=np.int64)
    kprev[1:] = kt[:-1]
    kprev[kfirst] = np.where(has_open[kg[kfirst]], o_last[kg[kfirst]], _NEG)
    cut = kt - kprev >= timeout  # R2 over the events that are not late

    # sessions: per regular profile, its open session (when it has one) then one per cut
    carried = has_open & ok
    n_sess = carried.astype(np.int64) + np.bincount(kg[cut], minlength=n_groups)
    offset = np.cumsum(n_sess) - n_sess
    total = int(n_sess.sum())
    cc = np.cumsum(cut)
    base = np.zeros(n_groups, dtype=np.int64)
    base[kg[kfirst]] = cc[kfirst] - cut[kfirst]
    row_sess = offset[kg] + carried[kg] + cc - base[kg] - 1

    sg = np.flatnonzero(carried)
    cpos = offset[sg]
    heads = ks[cut]
    hpos = row_sess[cut]
    head_ts = kt[cut]
    if fine.any():  # their sessions are headed by the earliest event of their first instant
        at_cut = np.flatnonzero(keep)[cut]
        swap = fine[g[at_cut]]
        heads[swap] = s[alt_head[at_cut[swap]]]
    first_ts = np.empty(total, dtype=np.int64)
    last_ts = np.empty(total, dtype=np.int64)
    events = np.zeros(total, dtype=np.int64)
    head = np.full(total, -1, dtype=np.int64)
    sid = np.empty(total, dtype=object)
    source = np.empty(total, dtype=object)
    first_ts[cpos] = before.open_first[sg]
    last_ts[cpos] = o_last[sg]
    events[cpos] = before.open_events[sg]
    sid[cpos] = before.open_id[sg]
    source[cpos] = before.open_source[sg]
    first_ts[hpos] = head_ts
    head[hpos] = heads
    messages, sources = batch.message_id, batch.source
    if messages is None or sources is None:
        sid[hpos] = None
        source[hpos] = None
    else:
        sid[hpos] = [
            session_id_for(p, messages[r])
            for p, r in zip(before.profile_id[kg[cut]].tolist(), heads.tolist(), strict=True)
        ]
        source[hpos] = (
            sources[heads] if isinstance(sources, np.ndarray) else [sources[r] for r in heads]
        )
    events += np.bincount(row_sess, minlength=total)
    ends = np.ones(km, dtype=bool)
    ends[:-1] = row_sess[1:] != row_sess[:-1]
    last_ts[row_sess[ends]] = kt[ends]

    # every session but a profile's last is concluded; the last one too when the
    # profile's last event is late (it fell due) or it is due before `now`
    concluded = np.ones(total, dtype=bool)
    og = np.flatnonzero(ok)
    last_sess = (offset + n_sess - 1)[og]
    still = ~late[last_row[og]]
    if now is not None:
        still &= last_ts[last_sess] >= now - timeout
    concluded[last_sess] = ~still
    sessions = Sessions(touched[np.repeat(np.arange(n_groups), n_sess)], sid, first_ts,
                        last_ts, events, source, head, concluded)  # fmt: skip

    # the new state of the regular profiles
    after = before.take(np.arange(n_groups))
    latest_concluded = np.where(still, last_sess - 1, last_sess)
    has_concluded = np.zeros(n_groups, dtype=bool)
    has_concluded[og] = ~still | (n_sess[og] >= 2)
    index = np.zeros(n_groups, dtype=np.int64)
    index[og] = latest_concluded
    _conclude_into(after, has_concluded, sessions, index, timeout)
    open_now = np.zeros(n_groups, dtype=bool)
    open_now[og] = still
    at_open = last_sess[still]
    wo = og[still]
    after.open_id[wo] = sid[at_open]
    after.open_first[wo] = first_ts[at_open]
    after.open_last[wo] = last_ts[at_open]
    after.open_events[wo] = events[at_open]
    after.open_source[wo] = source[at_open]
    _clear_open(after, ok & ~open_now)

    session[ks] = row_sess
    late_out[s[late & ok[g]]] = True

    # Out of order but fresh: every event of the profile (and its open session's last)
    # is within the timeout of the batch's last instant, and none is before the horizon.
    # Then nothing can fall due between the batch's instants and every gap is below the
    # timeout: the profile's events and its open session are one run (exact.apply), so
    # set-wise: the open session extended (its id and source kept), or a new session
    # headed by the earliest event of the profile's first instant.
    rescue = np.zeros(n_groups, dtype=bool)
    if now is None and bad.any():
        limit = int(batch.clock[rows].max()) - timeout
        t_min = np.minimum.reduceat(t, first)
        rescue = bad & (t_min > limit) & (~has_open | (o_last > limit))
        rescue &= (before.horizon == NONE) | (t_min >= before.horizon)
    if rescue.any():
        more = _rescued(rescue, first, last_row, s, t, k, touched, before, after, batch,
                        session, len(sessions))  # fmt: skip
        sessions = Sessions.join([sessions, more])
        session_base = len(sessions)
    else:
        session_base = total
    slow = np.flatnonzero(bad & ~rescue)
    if len(slow):
        extra: list[tuple[int, Session, int, bool]] = []
        for gi in slow.tolist():
            rows_g = np.sort(s[first[gi] : last_row[gi] + 1])
            code_g = int(touched[gi])
            state = before.state(gi)
            for row, index_or_late in _exact_profile(
                state, code_g, rows_g, batch, timeout, now, history, extra, session_base
            ):
                if index_or_late < 0:
                    late_out[row] = True
                else:
                    session[row] = index_or_late
            after.set(gi, state)
        more = Sessions.of(extra)
        if batch.deferred:  # the stand-in ids stay inside the exact engine's state
            more.session_id[more.head >= 0] = None
            more.source[more.head >= 0] = None
        sessions = Sessions.join([sessions, more])
    return Step(session, late_out, sessions, touched, after, touched[slow])


def _runs_in_arrival_order(
    candidates: BOOL,
    g: I64,
    s: I64,
    t: I64,
    k: I64,
    prev: I64,
    start: BOOL,
    before: Profiles,
    timeout: int,
) -> tuple[BOOL, I64]:
    """Profiles (among `candidates`, whose instants run backwards in time order) whose
    batch equals R2 all the same: cut into R2's runs (with the open session), the runs
    arrive one after another (a run's last instant is at or before the next one's first),
    and within a run every event, taken in arrival order, lies within the timeout of the
    span of those before it (so each instant extends one chain) and arrives before that
    chain fell due. Returns the mask of such profiles and, per position of the (profile,
    time) order, the position of its run's head: the earliest event of the run's first
    instant, which the exact engine takes the id from.
    """
    n_groups = len(candidates)
    pos = np.flatnonzero(candidates[g])
    pg, pt, pk = g[pos], t[pos], k[pos]
    newrun = start[pos] | (pt - prev[pos] >= timeout)
    run = np.cumsum(newrun) - 1
    heads_at = np.flatnonzero(newrun)
    run_group = pg[heads_at]
    carried = ~(pt[heads_at] - prev[pos][heads_at] >= timeout)  # continues the open one
    carried &= before.open_last[run_group] != NONE
    kmin = np.minimum.reduceat(pk, heads_at)
    kmax = np.maximum.reduceat(pk, heads_at)
    fine = candidates.copy()
    # the runs of a profile arrive one after another
    overlap = (kmax[:-1] > kmin[1:]) & (run_group[:-1] == run_group[1:])
    fine[run_group[:-1][overlap]] = False

    # within a run, in arrival order: the span of the events before each one (and the
    # open session's, for a run that continues it)
    a = np.lexsort((s[pos], run))
    ar, at_, ak = run[a], pt[a], pk[a]
    seg = np.ones(len(a), dtype=bool)
    seg[1:] = ar[1:] != ar[:-1]
    lo_t = int(min(at_.min(), before.open_first[run_group[carried]].min(initial=at_.min())))
    rel = at_ - lo_t
    span = int(rel.max()) + 1
    if (len(heads_at) + 1) * span >= 2**62:
        return np.zeros(n_groups, dtype=bool), np.zeros(0, dtype=np.int64)
    offset = ar * span
    hi = np.maximum.accumulate(rel + offset) - offset + lo_t
    lo = lo_t + span - 1 - (np.maximum.accumulate(span - 1 - rel + offset) - offset)
    max_before = np.empty(len(a), dtype=np.int64)
    min_before = np.empty(len(a), dtype=np.int64)
    max_before[1:], min_before[1:] = hi[:-1], lo[:-1]
    open_run = carried[ar[seg]]
    max_before[seg] = np.where(open_run, before.open_last[run_group[ar[seg]]], NONE)
    min_before[seg] = np.where(open_run, before.open_first[run_group[ar[seg]]], NONE)
    has_before = max_before != NONE
    chained = ~has_before | ((at_ > min_before - timeout) & (at_ < max_before + timeout))
    # not due at its instant: the chain of the earlier instants (or the open session)
    instant = seg.copy()
    instant[1:] |= ak[1:] != ak[:-1]
    at_instant = np.maximum.accumulate(np.where(instant, np.arange(len(a)), 0))
    earlier = max_before[at_instant]
    due_ok = (earlier == NONE) | (earlier + timeout >= ak)
    broken = ~(chained & due_ok)
    fine[pg[a[broken]]] = False

    # heads: per run, the first position (time order) among its first instant's events
    alt_head = np.zeros(len(t), dtype=np.int64)
    first_of = np.flatnonzero(pk == kmin[run])
    head_pos = first_of[np.searchsorted(run[first_of], np.arange(len(heads_at)))]
    alt_head[pos] = pos[head_pos[run]]
    return fine, alt_head


def _rescued(
    rescue: BOOL,
    first: I64,
    last_row: I64,
    s: I64,
    t: I64,
    k: I64,
    touched: I64,
    before: Profiles,
    after: Profiles,
    batch: Batch,
    session: I64,
    base: int,
) -> Sessions:
    """The one session of each rescued profile (see `step`), numbered from `base`; the
    rows' `session` and the profiles' open session in `after` are filled in here."""
    gi = np.flatnonzero(rescue)
    lo, hi = first[gi], last_row[gi] + 1
    t_min = np.minimum.reduceat(t, first)[gi]
    t_max = np.maximum.reduceat(t, first)[gi]
    count = (hi - lo).astype(np.int64)
    # the head of a new session: the profile's first row (time order, then arrival)
    # among those of its first instant
    k_first = np.repeat(np.minimum.reduceat(k, first), np.diff(np.append(first, len(k))))
    candidates = np.flatnonzero(k == k_first)
    heads = s[candidates[np.searchsorted(candidates, lo)]]
    opened = before.open_last[gi] != NONE
    profiles = before.profile_id[gi].tolist()
    if batch.deferred:
        new_id = np.full(len(gi), None, dtype=object)
        new_source = np.full(len(gi), None, dtype=object)
    else:
        messages, sources = batch.texts(heads.tolist())
        new_id = _objects([session_id_for(p, m) for p, m in zip(profiles, messages, strict=True)])
        new_source = _objects(sources)
    sid = np.where(opened, before.open_id[gi], new_id)
    source = np.where(opened, before.open_source[gi], new_source)
    first_ts = np.where(opened, np.minimum(before.open_first[gi], t_min), t_min)
    last_ts = np.where(opened, np.maximum(before.open_last[gi], t_max), t_max)
    events = np.where(opened, before.open_events[gi], 0) + count
    number = base + np.arange(len(gi), dtype=np.int64)
    session[s[np.concatenate([np.arange(a, b) for a, b in zip(lo, hi, strict=True)])]] = np.repeat(
        number, count
    )
    after.open_id[gi] = sid
    after.open_first[gi] = first_ts
    after.open_last[gi] = last_ts
    after.open_events[gi] = events
    after.open_source[gi] = source
    return Sessions(
        touched[gi], sid, first_ts, last_ts, events, source,
        np.where(opened, -1, heads).astype(np.int64), np.zeros(len(gi), dtype=bool),
    )  # fmt: skip


def _exact_profile(
    state: ProfileState,
    code: int,
    rows: I64,
    batch: Batch,
    timeout: int,
    now: int | None,
    history: History | None,
    out: list[tuple[int, Session, int, bool]],
    offset: int,
) -> list[tuple[int, int]]:
    """One profile's rows (in arrival order) through the exact engine, as `exact.replay`
    does, loading its history only when an event is older than its horizon. Appends the
    sessions it touched to `out` (their indices start at `offset + len(out)`) and returns
    (row, session index or -1 for late)."""
    carried = state.open
    messages, sources = batch.texts(rows.tolist())
    arrivals = [
        Arrival(int(batch.ts[r]), int(batch.seq[r]), m, src)
        for r, m, src in zip(rows.tolist(), messages, sources, strict=True)
    ]
    clocks = batch.clock[rows].tolist()
    touched: dict[str, tuple[Session, bool]] = {}  # in order of first touch
    concluded_here: list[Session] = []

    def close(s: Session) -> None:
        touched[s.session_id] = (s, True)
        concluded_here.append(s)

    marks: list[tuple[int, str | None]] = []
    i, n = 0, len(arrivals)
    while i < n:
        j = i
        while j < n and clocks[j] == clocks[i]:
            j += 1
        due = exact.conclude_due(state, clocks[i], timeout)
        if due is not None:
            close(due)
        group = arrivals[i:j]
        if exact.needs_history(state, group):
            if history is None:
                raise ValueError(f"history of profile {state.profile_id!r} must be loaded")
            known = {*history(code), *((x.first_ts, x.last_ts) for x in concluded_here)}
            state.history = sorted(known)
        applied = exact.apply(state, group, timeout)
        for s in applied.concluded:
            close(s)
        if state.open is not None and state.open.session_id not in touched:
            touched[state.open.session_id] = (state.open, False)
        marks.extend(zip(rows[i:j].tolist(), applied.session_ids, strict=True))
        i = j
    if now is not None:
        due = exact.conclude_due(state, now, timeout)
        if due is not None:
            close(due)
    used = {sid for _, sid in marks if sid is not None}
    heads: dict[str, int] = {}
    for r, m in zip(rows.tolist(), messages, strict=True):
        heads.setdefault(session_id_for(state.profile_id, m), r)
    index: dict[str, int] = {}
    for sid, (s, done) in touched.items():
        if done or sid in used:
            index[sid] = offset + len(out)
            head = -1 if s is carried else heads.get(sid, -1)
            out.append((code, s, head, done))
    return [(row, -1 if sid is None else index[sid]) for row, sid in marks]
