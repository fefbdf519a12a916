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

The step writes its outputs itself (`sink`: events staged for their `seq`, concluded
sessions, their Session Concluded events, open-session snapshots, rejected lines) and
gives Spark one row per call: the bucket and how many rows it took.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

from lull.model import Settings
from lull.spark import bucket, sink, state_codec

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql.streaming.state import GroupState

    from lull.engine import vector

OUTPUT_SCHEMA = "bucket int, rows long"
STATE_SCHEMA = "state binary"
_encode = msgspec.json.Encoder().encode
# The bucket of rejected lines and clock lines (profiles' buckets are 0 .. buckets - 1).
REJECTED_BUCKET = -1
# Spark sets this task property to the micro-batch being run (MicroBatchExecution).
_BATCH_ID = "streaming.sql.batchId"

_IN = ("message_id", "profile_id", "name", "ts", "source", "r", "properties", "origin", "pos")
Columns = dict[str, np.ndarray]


class Sessionizer:
    """The function given to `applyInPandasWithState` (picklable: settings and --out)."""

    def __init__(self, timeout_ms: int, excluded: tuple[str, ...], buckets: int, out: str) -> None:
        self.settings = Settings(sessions_enabled=True, timeout_ms=timeout_ms, excluded=excluded)
        self.buckets = buckets
        self.sink = sink.Sink(out)

    def __call__(
        self, key: tuple[Any, ...], frames: Iterator[pd.DataFrame], state: GroupState
    ) -> Iterator[pd.DataFrame]:
        import pandas as pd

        batch_id = _batch_id()
        number = int(key[0])
        if number == REJECTED_BUCKET:
            n = _rejected(self.sink, batch_id, frames)
            yield pd.DataFrame({"bucket": [number], "rows": [n]})
            return
        b = state_codec.decode(state.get[0], self.buckets) if state.exists else bucket.Bucket()
        watermark = state.getCurrentWatermarkMs()
        cols = _columns([f for f in frames if len(f)])
        rows = None if cols is None or state.hasTimedOut else _rows(cols)
        done = bucket.apply(b, rows, watermark, self.settings)
        part = f"{number:05d}"
        if rows is not None and cols is not None:
            self.sink.stage_events(batch_id, part, sink.events_table(cols, done.session_id,
                                                                     done.late))  # fmt: skip
        timeout = self.settings.timeout_ms
        ended, opened = done.concluded, done.opened
        profile = b.table.profile_id[ended.code]
        self.sink.write("sessions", batch_id, part, sink.sessions_table(profile, ended))
        concluded = sink.concluded_table(profile, ended, session_props(ended), timeout)
        self.sink.write("concluded", batch_id, part, concluded)
        snapshots = sink.open_table(b.table.profile_id[opened.code], opened, done.as_of)
        self.sink.write("open", batch_id, part, snapshots)
        # the state last: a retried task starts again from the state before this batch
        if done.timer is not None:
            state.setTimeoutTimestamp(done.timer)
        state.update((state_codec.encode(b, self.buckets),))
        yield pd.DataFrame({"bucket": [number], "rows": [0 if rows is None else len(rows)]})


def session_props(ended: vector.Sessions) -> list[str]:
    """The properties of each session's Session Concluded event (R4), as JSON text."""
    return [
        _encode({"Session Length": n, "Session ID": i}).decode()
        for n, i in zip(((ended.last_ts - ended.first_ts) // 1000).tolist(),
                        ended.session_id.tolist(), strict=True)
    ]  # fmt: skip


def _batch_id() -> int:
    from pyspark import TaskContext

    context = TaskContext.get()
    value = None if context is None else context.getLocalProperty(_BATCH_ID)
    if value is None:
        raise RuntimeError(f"no {_BATCH_ID!r}: the keyed step runs inside a streaming query")
    return int(value)


def _columns(frames: list[pd.DataFrame]) -> Columns | None:
    """The input columns the step reads, the frames' rows one after the other."""
    if not frames:
        return None
    ints = ("ts", "r", "pos")
    return {
        c: np.concatenate([f[c].to_numpy(dtype=np.int64 if c in ints else object) for f in frames])
        for c in _IN
    }


def _rows(cols: Columns) -> bucket.Rows:
    return bucket.Rows(
        cols["message_id"], cols["profile_id"], cols["name"], cols["source"], cols["ts"],
        cols["r"], cols["origin"], cols["pos"],
    )  # fmt: skip


def _rejected(out: sink.Sink, batch_id: int, frames: Iterator[pd.DataFrame]) -> int:
    """Rejected lines (not the clock lines, which share their bucket) to `rejected/`."""
    origin: list[str] = []
    pos: list[int] = []
    error: list[str] = []
    raw: list[str] = []
    for frame in frames:
        frame = frame[frame["error"].notna()]
        origin += frame["origin"].tolist()
        pos += [int(p) for p in frame["pos"].tolist()]
        error += frame["error"].tolist()
        raw += frame["raw"].tolist()
    out.write("rejected", batch_id, "rejected", sink.rejected_table(origin, pos, error, raw))
    return len(origin)
