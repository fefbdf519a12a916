"""The stream's outputs, written as Parquet by lull's own tasks (pyarrow), not by Spark.

Over a landing or log directory the step tasks (`tasks.py`) write them, events with their
`seq` (`events_out`); what follows is the Kafka path's keyed step, which stages events.

Why: a micro-batch's output rows are mostly its events, which the keyed step has in hand
as columns. Handing them back to Spark cost a pandas -> Arrow -> JVM conversion, a cache
of the batch and one Spark job per output (the events' in one task, for `seq`); written
here they cost one Arrow conversion. Spark keeps what it is good at: the sources, the
duplicates (R6), the shuffle by bucket and the state store.

Layout, as before: `<out>/<output>/batch=N/*.parquet`. Batch N's files are named after
the bucket that wrote them, so a batch that Spark runs again (after a restart, or a task
retried) writes the same names; `clear` removes a batch's folders before it runs, so a
run that differs (Spark keeps either of two copies of a duplicate) leaves nothing behind.
A file appears whole (written under a temporary name, then renamed).

Events need one thing no bucket knows: `seq`, the batch's arrival order (received_at,
then file and line) numbered from N * 2^32. So the buckets write their events to
`<out>/_staging/batch=N/`, and `finish_events` (on the driver, once the batch's keyed
step is done) numbers them in one sort of three columns and writes `events/batch=N/`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from lull.spark.tasks import fs_path, whole, write_arrow

if TYPE_CHECKING:
    from lull.engine import vector

I64 = npt.NDArray[np.int64]
OUTPUTS = ("events", "sessions", "concluded", "open", "rejected")
_STAGING = "_staging"
# the staged events' columns that only order them (`seq`) and are not written
_ORDER = ("r", "origin", "pos")


def iso(ms: I64 | pa.Array) -> pa.Array:
    """Epoch ms as ISO-8601 text (`2026-11-01T10:00:00.000Z`), as `lull export` writes times."""
    # Arrow prints a zone-less timestamp as `2026-11-01 10:00:00.000` in C (strftime
    # costs some thirty times more)
    text = pa.array(ms, pa.int64()).cast(pa.timestamp("ms")).cast(pa.string())
    return pc.binary_join_element_wise(
        pc.replace_substring(text, " ", "T", max_replacements=1), "Z", ""
    )


def events_table(cols: dict[str, np.ndarray], session_id: np.ndarray, late: np.ndarray) -> pa.Table:
    """A bucket's events of a batch, as staged: the `events/` columns but `seq`, and the
    columns that order them."""
    return pa.table(
        {
            "message_id": pa.array(cols["message_id"], pa.string()),
            "profile_id": pa.array(cols["profile_id"], pa.string()),
            "name": pa.array(cols["name"], pa.string()),
            "ts": iso(cols["ts"]),
            "source": pa.array(cols["source"], pa.string()),
            "received_at": iso(cols["r"]),
            "properties": pa.array(cols["properties"], pa.string()),
            "session_id": pa.array(session_id, pa.string()),
            "late": pa.array(late, pa.bool_()),
            "r": pa.array(cols["r"], pa.int64()),
            "origin": pa.array(cols["origin"], pa.string()),
            "pos": pa.array(cols["pos"], pa.int64()),
        }
    )


def events_out(rows: pa.Table, session_id: np.ndarray, late: np.ndarray, seq: I64) -> pa.Table:
    """A bucket's events of a batch as `events/` has them, from its parsed rows (Arrow)."""
    return pa.table(
        {
            "message_id": rows["message_id"],
            "profile_id": rows["profile_id"],
            "name": rows["name"],
            "ts": iso(rows["ts"].combine_chunks()),
            "source": rows["source"],
            "received_at": iso(rows["r"].combine_chunks()),
            "properties": rows["properties"],
            "session_id": pa.array(session_id, pa.string()),
            "late": pa.array(late, pa.bool_()),
            "seq": pa.array(seq, pa.int64()),
        }
    )


def _session_columns(profile_id: np.ndarray, s: vector.Sessions) -> dict[str, pa.Array]:
    return {
        "session_id": pa.array(s.session_id, pa.string()),
        "profile_id": pa.array(profile_id, pa.string()),
        "first_ts": iso(s.first_ts),
        "last_ts": iso(s.last_ts),
        "length_s": pa.array((s.last_ts - s.first_ts) // 1000, pa.int64()),
        "events": pa.array(s.events, pa.int64()),
        "source": pa.array(s.source, pa.string()),
    }


def sessions_table(profile_id: np.ndarray, s: vector.Sessions) -> pa.Table:
    """Concluded sessions, as `lull export sessions` has them."""
    cols = _session_columns(profile_id, s)
    return pa.table(cols | {"concluded": pa.array(np.ones(len(s), dtype=bool))})


def open_table(profile_id: np.ndarray, s: vector.Sessions, as_of: I64) -> pa.Table:
    """Snapshots of open sessions, with the clock they were taken at."""
    cols = _session_columns(profile_id, s)
    return pa.table(
        cols | {"concluded": pa.array(np.zeros(len(s), dtype=bool)), "as_of": iso(as_of)}
    )


def concluded_table(
    profile_id: np.ndarray, s: vector.Sessions, props: list[str], timeout: int
) -> pa.Table:
    """The Session Concluded events of concluded sessions (R4), as `events/` has events."""
    from lull.model import SESSION_CONCLUDED

    n = len(s)
    ids = pa.array(s.session_id, pa.string())
    return pa.table(
        {
            "message_id": pc.binary_join_element_wise("sc-", ids, ""),
            "profile_id": pa.array(profile_id, pa.string()),
            "name": pa.array([SESSION_CONCLUDED] * n, pa.string()),
            "ts": iso(s.last_ts),
            "source": pa.array(s.source, pa.string()),
            "received_at": iso(s.last_ts + timeout),  # raised when it fell due
            "properties": pa.array(props, pa.string()),
            "session_id": ids,
            "late": pa.array(np.zeros(n, dtype=bool)),
            "seq": pa.nulls(n, pa.int64()),
        }
    )


def rejected_table(origin: list[str], pos: list[int], error: list[str], raw: list[str]) -> pa.Table:
    return pa.table(
        {
            "file": pa.array(origin, pa.string()),
            "line": pa.array(pos, pa.int64()),
            "reason": pa.array(error, pa.string()),
            "raw": pa.array(raw, pa.string()),
        }
    )


@dataclass(frozen=True, slots=True)
class Sink:
    """`--out`: a local folder or a URI that pyarrow's file systems open (file://,
    hdfs://, s3://, gs://; s3a:// is read as s3://)."""

    out: str

    def _fs(self) -> tuple[pafs.FileSystem, str]:
        return fs_path(self.out)

    def clear(self, batch_id: int) -> None:
        """Remove what an earlier run of batch N wrote (none, or all of it, or part)."""
        fs, root = self._fs()
        for name in (*OUTPUTS, _STAGING):
            folder = f"{root}/{name}/batch={batch_id}"
            if fs.get_file_info(folder).type == pafs.FileType.Directory:
                fs.delete_dir(folder)

    def write(self, name: str, batch_id: int, part: str, table: pa.Table) -> None:
        """`<out>/<name>/batch=N/part-<part>.parquet` (staged events: `.arrow`), whole."""
        if not table.num_rows:
            return
        fs, root = self._fs()
        folder = f"{root}/{name}/batch={batch_id}"
        if name == _STAGING:
            write_arrow(fs, f"{folder}/part-{part}.arrow", table)
        else:
            with whole(fs, f"{folder}/part-{part}.parquet") as tmp:
                pq.write_table(table, tmp, filesystem=fs, compression="snappy")

    def stage_events(self, batch_id: int, part: str, table: pa.Table) -> None:
        self.write(_STAGING, batch_id, part, table)

    def finish_events(self, batch_id: int) -> int:
        """Number batch N's staged events in arrival order (`seq`), write `events/batch=N/`
        and drop the staging; returns the number of events."""
        fs, root = self._fs()
        folder = f"{root}/{_STAGING}/batch={batch_id}"
        if fs.get_file_info(folder).type != pafs.FileType.Directory:
            return 0
        files = fs.get_file_info(pafs.FileSelector(folder))
        tables = []
        for info in sorted(files, key=lambda i: i.path):
            if info.base_name.endswith(".arrow"):
                with fs.open_input_file(info.path) as f:
                    tables.append(ipc.open_file(f).read_all())
        if not tables:
            fs.delete_dir(folder)
            return 0
        events = pa.concat_tables(tables)
        order = pc.sort_indices(
            events, sort_keys=[("r", "ascending"), ("origin", "ascending"), ("pos", "ascending")]
        )
        n = int(events.num_rows)
        seq = np.empty(n, dtype=np.int64)
        seq[order.to_numpy()] = (batch_id << 32) + np.arange(n, dtype=np.int64)
        events = events.drop_columns(list(_ORDER)).append_column("seq", pa.array(seq))
        self.write("events", batch_id, "0", events)
        fs.delete_dir(folder)
        if not fs.get_file_info(pafs.FileSelector(f"{root}/{_STAGING}")):
            fs.delete_dir(f"{root}/{_STAGING}")
        return n
