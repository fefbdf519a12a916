"""The stream's keyed step: one profile's new rows (or its timer) through lull's engine.

Spark calls a `Sessionizer` per profile with the rows of a micro-batch and the profile's
state (`state_codec`), or with no rows when the profile's timer fires. The rules are
`engine.exact`'s, applied as `exact.replay` applies them during an import: the rows in
arrival order (received_at, then origin and position), one arrival instant at a time,
concluding before each instant the sessions that fell due strictly before it.

The stream's clock is the event-time watermark on received_at (the latest arrival of the
batches before); a profile's timer is set so that its open session is concluded once
that clock reaches the session's due time (last event + timeout), as `lull import
--keep-open` concludes what is due by its last arrival.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from lull.engine import exact
from lull.engine.state import Arrival, ProfileState, Session
from lull.model import SESSION_CONCLUDED, Settings
from lull.spark import state_codec
from lull.spark.landing import REJECTED_KEY

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql.streaming.state import GroupState

OUTPUT_SCHEMA = (
    "kind string, message_id string, profile_id string, name string, ts long, "
    "source string, received_at long, properties string, session_id string, late boolean, "
    "first_ts long, last_ts long, events long, as_of long, origin string, pos long, "
    "error string, raw string"
)
STATE_SCHEMA = "state binary"
_COLUMNS = [c.split()[0] for c in OUTPUT_SCHEMA.split(", ")]
_INTS = ("ts", "received_at", "first_ts", "last_ts", "events", "as_of", "pos")
_encode = msgspec.json.Encoder().encode
NO_CLOCK = -1


class _Out:
    """The rows one call emits (events, concluded sessions, open-session snapshots), as
    columns: one cheap frame per call (pandas' typed constructors dominate otherwise)."""

    def __init__(self, timeout: int) -> None:
        self.timeout = timeout
        self.cols: dict[str, list[Any]] = {c: [] for c in _COLUMNS}

    def _add(self, values: dict[str, Any]) -> None:
        for c, column in self.cols.items():
            column.append(values.get(c))

    def event(self, row: _Row, session_id: str | None, late: bool) -> None:
        self._add(
            {
                "kind": "event",
                "message_id": row.message_id,
                "profile_id": row.profile_id,
                "name": row.name,
                "ts": row.ts,
                "source": row.source,
                "received_at": row.r,
                "properties": row.properties,
                "session_id": session_id,
                "late": late,
                "origin": row.origin,
                "pos": row.pos,
            }
        )

    def session(self, kind: str, s: Session, as_of: int | None = None) -> None:
        """A concluded session (with its Session Concluded event, R4) or an open one."""
        row: dict[str, Any] = {
            "kind": kind,
            "profile_id": s.profile_id,
            "session_id": s.session_id,
            "source": s.source,
            "first_ts": s.first_ts,
            "last_ts": s.last_ts,
            "events": s.events,
            "as_of": as_of,
        }
        if kind == "concluded":
            props = {"Session Length": s.length_s, "Session ID": s.session_id}
            row.update(
                message_id=f"sc-{s.session_id}",
                name=SESSION_CONCLUDED,
                ts=s.last_ts,
                received_at=s.last_ts + self.timeout,  # raised when it fell due
                properties=_encode(props).decode(),
                late=False,
            )
        self._add(row)

    def frame(self) -> pd.DataFrame:
        import pandas as pd

        # Python objects (ints, None): Arrow types them by OUTPUT_SCHEMA when Spark reads it
        return pd.DataFrame(self.cols, dtype=object)


@dataclass(slots=True)
class _Row:
    message_id: str
    profile_id: str
    name: str
    ts: int
    source: str
    r: int
    properties: str
    origin: str
    pos: int


def _rows(frames: Iterator[pd.DataFrame]) -> list[_Row]:
    """A profile's new rows in arrival order: received_at, then origin and position."""
    rows: list[_Row] = []
    for f in frames:
        rows.extend(
            map(_Row, f["message_id"].tolist(), f["profile_id"].tolist(), f["name"].tolist(),
                f["ts"].tolist(), f["source"].tolist(), f["r"].tolist(),
                f["properties"].tolist(), f["origin"].tolist(), f["pos"].tolist())
        )  # fmt: skip
    rows.sort(key=lambda e: (e.r, e.origin, e.pos))
    return rows


class Sessionizer:
    """The function given to `applyInPandasWithState` (picklable: settings only)."""

    def __init__(self, timeout_ms: int, excluded: tuple[str, ...]) -> None:
        self.settings = Settings(sessions_enabled=True, timeout_ms=timeout_ms, excluded=excluded)

    def __call__(
        self, key: tuple[Any, ...], frames: Iterator[pd.DataFrame], state: GroupState
    ) -> Iterator[pd.DataFrame]:
        timeout = self.settings.timeout_ms
        out = _Out(timeout)
        profile = str(key[0])
        if profile == REJECTED_KEY:
            yield from _rejected(frames)
            return
        if state.exists:
            ps, clock = state_codec.decode(profile, state.get[0])
        else:
            ps, clock = state_codec.fresh(profile), NO_CLOCK
        watermark = state.getCurrentWatermarkMs()
        if state.hasTimedOut:
            due = exact.conclude_due(ps, watermark + 1, timeout)
            if due is not None:
                out.session("concluded", due)
        else:
            clock = self._apply(ps, clock, frames, out)
        s = ps.open
        if s is not None:
            due_at = s.last_ts + timeout
            # Due before the profile's last instant (no later arrival of it can join), or
            # by the stream's clock: conclude now. Otherwise the timer fires once the
            # watermark passes due_at - 1, i.e. reaches due_at.
            if due_at < clock or due_at <= watermark:
                exact.conclude_due(ps, due_at + 1, timeout)
                out.session("concluded", s)
            else:
                out.session("open", s, clock)
                state.setTimeoutTimestamp(due_at - 1)
        state.update((state_codec.encode(ps, clock),))
        yield out.frame()

    def _apply(
        self, ps: ProfileState, clock: int, frames: Iterator[pd.DataFrame], out: _Out
    ) -> int:
        """Apply the rows in arrival order, one instant at a time (`exact.replay`, as an
        import does); returns the new clock."""
        items = _rows(frames)
        if not items:
            return clock
        instants = [max(e.r, clock) for e in items]  # the clock never runs backwards
        eligible = [i for i, e in enumerate(items) if self.settings.is_eligible(e.name, e.source)]
        arrivals = [Arrival(items[i].ts, i, items[i].message_id, items[i].source) for i in eligible]
        # end: conclude what fell due before the last instant (no later arrival can join)
        done = exact.replay(
            ps,
            [instants[i] for i in eligible],
            arrivals,
            self.settings.timeout_ms,
            instants[-1] - 1,
        )
        for s, _ in done.concluded:
            out.session("concluded", s)
        ids = dict(zip(eligible, done.session_ids, strict=True))
        for i, e in enumerate(items):
            sid = ids.get(i)
            out.event(e, sid, i in ids and sid is None)
        return instants[-1]


def _rejected(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """Rejected lines pass through the keyed step (one query, one checkpoint)."""
    import pandas as pd

    for frame in frames:
        frame = frame[frame["error"].notna()]  # not the clock lines
        rows = pd.DataFrame({c: frame[c] for c in ("origin", "pos", "error", "raw")})
        rows["kind"] = "rejected"
        full = rows.reindex(columns=_COLUMNS)
        for c in _INTS:
            full[c] = full[c].astype("Int64")
        full["late"] = full["late"].astype("boolean")
        yield full
