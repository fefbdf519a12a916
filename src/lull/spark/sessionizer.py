"""The stream's keyed step: a bucket of profiles' new rows (or its timer) through lull's
vectorized engine (`bucket.apply`, which runs `engine.vector`).

Spark calls a `Sessionizer` once per bucket per micro-batch, with the bucket's rows of
the batch and its state (`state_codec`), or with no rows when the bucket's timer fires.
The rules are those of `exact.replay` as an import applies them: each profile's rows in
arrival order (received_at, then origin and position), one arrival instant at a time,
concluding before each instant the sessions that fell due strictly before it.

The stream's clock is the event-time watermark on received_at (the latest arrival of the
batches before); a bucket's timer is set so that each of its open sessions is concluded
once that clock reaches the session's due time (last event + timeout), as `lull import
--keep-open` concludes what is due by its last arrival.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

from lull.engine import vector
from lull.model import SESSION_CONCLUDED, Settings
from lull.spark import bucket, state_codec

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
# The bucket of rejected lines and clock lines (profiles' buckets are 0 .. buckets - 1).
REJECTED_BUCKET = -1


class Sessionizer:
    """The function given to `applyInPandasWithState` (picklable: settings only)."""

    def __init__(self, timeout_ms: int, excluded: tuple[str, ...], buckets: int) -> None:
        self.settings = Settings(sessions_enabled=True, timeout_ms=timeout_ms, excluded=excluded)
        self.buckets = buckets

    def __call__(
        self, key: tuple[Any, ...], frames: Iterator[pd.DataFrame], state: GroupState
    ) -> Iterator[pd.DataFrame]:
        if int(key[0]) == REJECTED_BUCKET:
            yield from _rejected(frames)
            return
        import pandas as pd

        b = state_codec.decode(state.get[0], self.buckets) if state.exists else bucket.Bucket()
        watermark = state.getCurrentWatermarkMs()
        parts = [f for f in frames if len(f)]
        frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else (parts or [None])[0]
        rows = None if frame is None or state.hasTimedOut else _rows(frame)
        done = bucket.apply(b, rows, watermark, self.settings)
        if done.timer is not None:
            state.setTimeoutTimestamp(done.timer)
        state.update((state_codec.encode(b, self.buckets),))
        out = [_events(frame, done)] if rows is not None and frame is not None else []
        out.append(_sessions(b, done.concluded, self.settings.timeout_ms))
        out.append(_open(b, done.opened, done.as_of))
        yield pd.concat(out, ignore_index=True)


def _rows(frame: pd.DataFrame) -> bucket.Rows:
    def ints(name: str) -> bucket.I64:
        return np.asarray(frame[name].to_numpy(dtype=np.int64), dtype=np.int64)

    def objects(name: str) -> bucket.OBJ:
        return np.asarray(frame[name].to_numpy(dtype=object), dtype=object)

    return bucket.Rows(
        objects("message_id"), objects("profile_id"), objects("name"), objects("source"),
        ints("ts"), ints("r"), objects("origin"), ints("pos"),
    )  # fmt: skip


def _frame(n: int, values: dict[str, Any]) -> pd.DataFrame:
    """Output rows: the columns given (arrays of n, or one value for all), None elsewhere;
    int columns as nullable Int64 and `late` as nullable boolean (typed, not objects)."""
    import pandas as pd

    cols: dict[str, Any] = {}
    for c in _COLUMNS:
        v = values.get(c)
        if c in _INTS:
            data = np.zeros(n, dtype=np.int64) if v is None else np.asarray(v, dtype=np.int64)
            cols[c] = pd.arrays.IntegerArray(
                np.broadcast_to(data, (n,)).copy(), np.full(n, v is None)
            )
        elif c == "late":
            data = np.zeros(n, dtype=bool) if v is None else np.asarray(v, dtype=bool)
            cols[c] = pd.arrays.BooleanArray(
                np.broadcast_to(data, (n,)).copy(), np.full(n, v is None)
            )
        else:
            arr = np.empty(n, dtype=object)
            arr[:] = v
            cols[c] = arr
    return pd.DataFrame(cols)


def _events(frame: pd.DataFrame, done: bucket.Applied) -> pd.DataFrame:
    return _frame(
        len(frame),
        {
            "kind": "event",
            **{c: frame[c].to_numpy() for c in ("message_id", "profile_id", "name", "ts",
                                                "source", "properties", "origin", "pos")},
            "received_at": frame["r"].to_numpy(),
            "session_id": done.session_id,
            "late": done.late,
        },
    )  # fmt: skip


def _session_columns(b: bucket.Bucket, s: vector.Sessions) -> dict[str, Any]:
    return {
        "profile_id": b.table.profile_id[s.code],
        "session_id": s.session_id,
        "source": s.source,
        "first_ts": s.first_ts,
        "last_ts": s.last_ts,
        "events": s.events,
    }


def _sessions(b: bucket.Bucket, s: vector.Sessions, timeout: int) -> pd.DataFrame:
    """Concluded sessions, each with its Session Concluded event (R4)."""
    ids = s.session_id.tolist()
    lengths = ((s.last_ts - s.first_ts) // 1000).tolist()
    props = [
        _encode({"Session Length": n, "Session ID": i}).decode()
        for n, i in zip(lengths, ids, strict=True)
    ]
    return _frame(
        len(s),
        {
            "kind": "concluded",
            **_session_columns(b, s),
            "message_id": [f"sc-{i}" for i in ids],
            "name": SESSION_CONCLUDED,
            "ts": s.last_ts,
            "received_at": s.last_ts + timeout,  # raised when it fell due
            "properties": props,
            "late": np.zeros(len(s), dtype=bool),
        },
    )


def _open(b: bucket.Bucket, s: vector.Sessions, as_of: np.ndarray) -> pd.DataFrame:
    """Snapshots of the open sessions of the profiles that had rows."""
    return _frame(len(s), {"kind": "open", **_session_columns(b, s), "as_of": as_of})


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
