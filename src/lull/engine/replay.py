"""A whole arrival stream through the vectorized engine (`vector.step`), batch by batch.

Why: a bulk import is the live server's replay with the clock read from the file (R5's
simulated clock), so it runs the live engine, not a second one. The stream is cut into
batches at instant boundaries (one instant is never split, as `vector.step` requires);
within a batch the engine works set-wise and sends only the rare irregular profiles to
the exact engine, so a batch of a few tens of thousands of rows keeps that share small
(a profile goes to the exact engine only for the batches in which it is irregular).

Ids are deferred (`vector.Batch` without message ids): every session comes back with the
row of its first event (`head`), from which the caller makes R3's id and source set-wise.

What this keeps, and the engine does not: every session the stream created or extended
(numbered in order of first sight, the table's open sessions first), each row's session,
and the concluded sessions of each profile as a chain, which is the history the exact
engine asks for when an event is older than its profile's horizon (together with what the
caller's store already holds, through `stored`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lull.engine import vector
from lull.engine.state import NONE

I64 = npt.NDArray[np.int64]
BOOL = npt.NDArray[np.bool_]
Stored = Callable[[int], Sequence[tuple[int, int]]]

BATCH = 32_768  # rows a batch (rounded up to the end of an instant)


@dataclass(slots=True)
class Replayed:
    """The outcome of a stream.

    Per row: `session` (index into the session arrays, -1: late or not eligible) and
    `late`. Per session: its profile `code`, `head` (the row of its first event; -1 for a
    session that was open in the table before the stream: those come first, in order of
    code), times, `events` (all its events, earlier ones included) and `concluded`.
    `table` holds every profile's state afterwards.
    """

    session: I64
    late: BOOL
    code: I64
    head: I64
    first_ts: I64
    last_ts: I64
    events: I64
    concluded: BOOL
    table: vector.Profiles


class _Sessions:
    """Growable per-session columns, indexed by the stream's session number."""

    def __init__(self, capacity: int) -> None:
        self.n = 0
        self.cols: dict[str, npt.NDArray[np.generic]] = {}
        for name in ("code", "head", "first_ts", "last_ts", "events", "chain"):
            self.cols[name] = np.empty(max(capacity, 16), dtype=np.int64)
        self.cols["concluded"] = np.zeros(max(capacity, 16), dtype=bool)

    def add(self, count: int) -> I64:
        """Number `count` new sessions; returns their numbers."""
        need = self.n + count
        size = len(self.cols["code"])
        if need > size:
            grown = max(need, size * 2)
            for name, col in self.cols.items():
                bigger = np.zeros(grown, dtype=col.dtype)
                bigger[: self.n] = col[: self.n]
                self.cols[name] = bigger
        at = np.arange(self.n, need, dtype=np.int64)
        self.n = need
        return at

    def __getitem__(self, name: str) -> npt.NDArray[np.generic]:
        return self.cols[name]

    def done(self, name: str) -> npt.NDArray[np.generic]:
        return self.cols[name][: self.n]


def replay(
    table: vector.Profiles,
    code: I64,
    ts: I64,
    clock: I64,
    timeout: int,
    *,
    end: int,
    stored: Stored | None = None,
    batch: int = BATCH,
) -> Replayed:
    """Replay eligible arrivals (arrival order: `clock` never decreases) on `table`, then
    conclude every session due by `end` (last event + timeout <= end), as `exact.replay`
    does per profile. `table` is updated in place. `stored(code)`: the (first_ts, last_ts)
    of the profile's concluded sessions already in the store (default: none)."""
    n = len(code)
    session = np.full(n, -1, dtype=np.int64)
    late = np.zeros(n, dtype=bool)
    out = _Sessions(n // 6 + len(table) // 4)  # about a session in 6 events (grows)
    open_at = np.full(len(table), -1, dtype=np.int64)  # the open session's number
    chain_end = np.full(len(table), -1, dtype=np.int64)  # its latest concluded one

    prior = np.flatnonzero(table.open_last != NONE)
    at = out.add(len(prior))
    out["code"][at], out["head"][at] = prior, -1
    out["first_ts"][at], out["last_ts"][at] = table.open_first[prior], table.open_last[prior]
    out["events"][at] = table.open_events[prior]
    open_at[prior] = at

    def history(c: int) -> list[tuple[int, int]]:
        known = list(stored(c)) if stored is not None else []
        i = int(chain_end[c])
        first, last, chain = out["first_ts"], out["last_ts"], out["chain"]
        while i >= 0:
            known.append((int(first[i]), int(last[i])))
            i = int(chain[i])
        return sorted(known)

    lo = 0
    while lo < n:
        hi = min(n, lo + batch)
        hi = int(np.searchsorted(clock, clock[hi - 1], side="right"))
        rows = np.arange(lo, hi, dtype=np.int64)
        b = vector.Batch(code[lo:hi], ts[lo:hi], clock[lo:hi], rows, None, None)
        step = vector.step(table, b, timeout, history=history)
        table.put(step.codes, step.after)
        s = step.sessions
        number = np.empty(len(s), dtype=np.int64)
        carried = s.head < 0
        number[carried] = open_at[s.code[carried]]
        number[~carried] = out.add(int(np.count_nonzero(~carried)))
        _record(out, number, s, lo)
        _chain(out, chain_end, number[s.concluded], s.code[s.concluded])
        open_at[step.codes[step.after.open_last == NONE]] = -1
        still = ~s.concluded
        open_at[s.code[still]] = number[still]
        hit = step.session >= 0
        session[lo:hi][hit] = number[step.session[hit]]
        late[lo:hi] = step.late
        lo = hi

    due = vector.conclude_due(table, end + 1, timeout)
    table.put(due.codes, due.after)
    out["concluded"][open_at[due.codes]] = True

    def ints(name: str) -> I64:
        return np.asarray(out.done(name), dtype=np.int64)

    return Replayed(
        session, late, ints("code"), ints("head"), ints("first_ts"), ints("last_ts"),
        ints("events"), np.asarray(out.done("concluded"), dtype=bool), table,
    )  # fmt: skip


def _record(out: _Sessions, number: I64, s: vector.Sessions, lo: int) -> None:
    out["code"][number] = s.code
    out["head"][number] = np.where(s.head >= 0, s.head + lo, out["head"][number])
    out["first_ts"][number] = s.first_ts
    out["last_ts"][number] = s.last_ts
    out["events"][number] = s.events
    out["concluded"][number] = s.concluded


def _chain(out: _Sessions, chain_end: I64, number: I64, code: I64) -> None:
    """Append concluded sessions to their profiles' chains (several a profile at once)."""
    if not len(number):
        return
    order = np.argsort(code, kind="stable")
    number, code = number[order], code[order]
    first = np.ones(len(code), dtype=bool)
    first[1:] = code[1:] != code[:-1]
    link = np.empty(len(code), dtype=np.int64)
    link[1:] = number[:-1]
    link[first] = chain_end[code[first]]
    out["chain"][number] = link
    last = np.ones(len(code), dtype=bool)
    last[:-1] = first[1:]
    chain_end[code[last]] = number[last]
