"""The stream's work, as Python tasks that Spark schedules: no event row goes through the JVM.

A micro-batch is three Spark jobs over the batch's new files (`driver.py` plans them):

1. **parse**, one task per group of files: each file is read and decoded once
   (`ndjson.file_table`, or `landing.segment_rows` for log segments); its events are cut
   by bucket of profiles (`fnv1a` of `profile_id` mod `--buckets`) into one Arrow IPC
   file under the checkpoint's `work/batch=N/rows/` (record batch B: bucket B's rows,
   `Cuts` reads them), and their narrow columns (message id, arrival order, bucket) by
   partition of message ids (`fnv1a` mod `--buckets`) likewise into `work/.../ids/`;
   rejected lines go to `rejected/` at once. Each file's sorted arrival times go to
   `order/` (what numbers the batch's events in arrival order without a global sort).
2. **duplicates**, one task per group of message-id partitions (R6): the batch's ids of
   a partition against each other (the first copy in arrival order is kept, whichever
   profile the copies name) and against the ids kept in the checkpoint (`ids/p=P/`, a
   window of `received_at`, files sorted by hash and searched): the dropped rows are
   listed per bucket, the kept ids added.
3. **step**, one task per group of buckets: a bucket's fragments less its dropped rows
   through `bucket.apply` (`engine.vector`) from its state in the checkpoint
   (`state/b=B/<batch>.state`, `state_codec`); its outputs written by pyarrow; what the
   late horizon lets it forget dropped (`bucket.forget`); its new state written under
   the batch's number.

Everything a task writes is named after the batch and its bucket, partition or group,
and written whole (a temporary name, then a rename), so a task that Spark retries, or a
batch that a restarted stream runs again, writes the same files with the same rows: each
event once, each session concluded once.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.ipc as ipc

from lull.engine.sets import first_places
from lull.model import Settings

I64 = npt.NDArray[np.int64]
BOOL = npt.NDArray[np.bool_]
# How rows are given to buckets and message ids to partitions (`fnv1a`), noted in the
# checkpoint: the same text always goes to the same bucket.
HASH = "fnv1a64-utf8"
# A row is named by (file, position) as one int64: position below 2^40.
_POS_BITS = 40
_STATE = "state"  # the checkpoint's folders of bucket states and of kept ids
_IDS = "ids"
_MERGE_AFTER = 16  # a partition's id files are merged into one past this many


def fs_path(uri: str) -> tuple[pafs.FileSystem, str]:
    """A local folder or a URI pyarrow's file systems open (file://, hdfs://, s3://, gs://;
    s3a:// is read as s3://) -> (file system, path)."""
    uri = uri.rstrip("/") or "/"
    if uri.startswith("s3a://"):
        uri = "s3://" + uri[len("s3a://") :]
    if "://" not in uri:
        return pafs.LocalFileSystem(), uri
    fs, path = pafs.FileSystem.from_uri(uri)
    return fs, path


_FNV_OFFSET, _FNV_PRIME = np.uint64(0xCBF29CE484222325), np.uint64(0x100000001B3)


def fnv1a(values: pa.Array | pa.ChunkedArray) -> npt.NDArray[np.uint64]:
    """FNV-1a (64 bits) of each text's UTF-8 bytes, a byte position at a time over all."""
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    arr = arr.cast(pa.large_string())
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset : arr.offset + n + 1]
    data = np.frombuffer(arr.buffers()[2] or b"", dtype=np.uint8)
    starts, lengths = offsets[:-1], np.diff(offsets)
    h = np.full(n, _FNV_OFFSET, dtype=np.uint64)
    longest = int(lengths.max()) if n else 0
    with np.errstate(over="ignore"):
        for j in range(longest):
            live = np.flatnonzero(lengths > j) if int(lengths.min()) <= j else None
            if live is None:  # every text is longer than j
                h = (h ^ data[starts + j]) * _FNV_PRIME
            else:
                h[live] = (h[live] ^ data[starts[live] + j]) * _FNV_PRIME
    return h


def hashed(values: pa.Array | pa.ChunkedArray, modulo: int, *, repeats: bool) -> I64:
    """`HASH` of each text mod `modulo` (`repeats`: many equal values, hash each once)."""
    if repeats:
        coded = pc.dictionary_encode(values)
        coded = coded.combine_chunks() if isinstance(coded, pa.ChunkedArray) else coded
        once = fnv1a(coded.dictionary) % np.uint64(modulo)
        result: I64 = once.astype(np.int64)[coded.indices.to_numpy()]
        return result
    return (fnv1a(values) % np.uint64(modulo)).astype(np.int64)


@dataclass(frozen=True, slots=True)
class Plan:
    """What every task of micro-batch `batch` needs (sent to the executors, pickled)."""

    batch: int
    out: str
    checkpoint: str
    source: str  # the landing or log directory
    files: tuple[str, ...]  # the batch's files in path order; a row's `f` is its index
    project: str  # the project taken from log segments
    buckets: int
    timeout_ms: int
    excluded: tuple[str, ...]
    watermark: int  # the stream's clock before this batch (latest arrival of the earlier)
    committed: int  # the last batch done before this one (-1: none)
    window_ms: int  # R6: ids kept at least this long past the stream's clock
    late_ms: int | None = None  # the late horizon (`bucket.apply`'s `late_after`)

    @property
    def work(self) -> str:
        return f"{self.checkpoint}/work/batch={self.batch}"

    def settings(self) -> Settings:
        return Settings(sessions_enabled=True, timeout_ms=self.timeout_ms, excluded=self.excluded)


# --- files ------------------------------------------------------------------------------


@contextmanager
def whole(fs: pafs.FileSystem, path: str) -> Iterator[str]:
    """`path` written whole: the block writes the temporary name it is given (beside
    `path`, its folder made), which is then renamed to `path`, so a reader never sees
    part of a file, and a task that Spark retries writes the same name again."""
    folder = path.rsplit("/", 1)[0]
    fs.create_dir(folder, recursive=True)
    tmp = f"{folder}/.{uuid.uuid4().hex}.tmp"
    try:
        yield tmp
    except BaseException:
        with suppress(OSError):  # (a failed write leaves no stray temporary file)
            fs.delete_file(tmp)
        raise
    fs.move(tmp, path)


def write_arrow(fs: pafs.FileSystem, path: str, table: pa.Table) -> None:
    """An Arrow IPC file, whole."""
    with (
        whole(fs, path) as tmp,
        fs.open_output_stream(tmp) as out,
        ipc.new_file(out, table.schema) as w,
    ):
        w.write_table(table)


def read_arrow(fs: pafs.FileSystem, path: str) -> pa.Table:
    with fs.open_input_file(path) as f:
        return ipc.open_file(f).read_all()


def listed(fs: pafs.FileSystem, folder: str, suffix: str) -> list[str]:
    """The files of a folder whose names end with `suffix` (not temporary ones), sorted."""
    if fs.get_file_info(folder).type != pafs.FileType.Directory:
        return []
    infos = fs.get_file_info(pafs.FileSelector(folder))
    return sorted(
        i.path
        for i in infos
        if i.type == pafs.FileType.File
        and i.base_name.endswith(suffix)
        and not i.base_name.startswith((".", "_"))
    )


def read_folder(fs: pafs.FileSystem, folder: str) -> pa.Table | None:
    tables = [read_arrow(fs, p) for p in listed(fs, folder, ".arrow")]
    return pa.concat_tables(tables) if tables else None


# --- 1. parse ---------------------------------------------------------------------------


def read_rows(fs: pafs.FileSystem, path: str, project: str) -> pa.Table:
    """A file's parsed rows (`landing.PARSED_SCHEMA`): a log segment's events of `project`
    and clock rows, or a landing file's lines."""
    from lull.spark.landing import segment_rows
    from lull.spark.ndjson import file_table

    with fs.open_input_file(path) as f:
        data = f.read_buffer()
    if path.endswith(".seg"):
        return segment_rows(project, path, data)
    return file_table(data.to_pybytes(), path)


def parse(plan: Plan, group: int, files: Sequence[int]) -> dict[str, Any]:
    """Stage 1 for a group of the batch's files (see the module docstring). Returns the
    group's number of events, their earliest arrival, the latest arrival of its events
    and clock lines (the stream's clock), and the buckets it wrote rows for."""
    from lull.spark import sink
    from lull.spark.landing import REJECTED_KEY

    started = time.perf_counter()
    src, _ = fs_path(plan.source)
    fs, _ = fs_path(plan.checkpoint)
    _, work = fs_path(plan.work)
    events: list[pa.Table] = []
    times: list[pa.Table] = []  # each file's arrival times, sorted
    rejected: list[pa.Table] = []
    hi: int | None = None
    for f in files:
        rows = read_rows(src, plan.files[f], plan.project)
        bad = pc.is_valid(rows["error"])
        if pc.any(bad).as_py():
            rejected.append(rows.filter(bad))
        clocked = rows.filter(pc.invert(bad))["r"]  # events and clock lines move the clock
        if len(clocked):
            top = pc.max(clocked).as_py()
            hi = top if hi is None else max(hi, top)
        key = pc.equal(rows["key"], REJECTED_KEY)
        good = rows.filter(pc.invert(key))
        r = good["r"].to_numpy()
        order = np.lexsort((good["pos"].to_numpy(), r))
        frank = np.empty(len(r), dtype=np.int64)
        frank[order] = np.arange(len(r), dtype=np.int64)
        times.append(pa.table({"f": np.full(len(r), f, dtype=np.int32), "r": r[order]}))
        columns = ("message_id", "profile_id", "name", "ts", "source", "r", "properties", "pos")
        events.append(
            good.select(list(columns))
            .append_column("f", pa.array(np.full(len(r), f, dtype=np.int32)))
            .append_column("frank", pa.array(frank))
        )
    if rejected:
        bad_rows = pa.concat_tables(rejected)
        table = sink.rejected_table(*(bad_rows[c].to_pylist() for c in ("origin", "pos", "error",
                                                                        "raw")))  # fmt: skip
        sink.Sink(plan.out).write("rejected", plan.batch, f"g{group:05d}", table)
    if times:
        write_arrow(fs, f"{work}/order/g-{group:05d}.arrow", pa.concat_tables(times))
    table = pa.concat_tables(events) if events else None
    if table is None or not table.num_rows:
        return {"group": group, "events": 0, "lo": None, "hi": hi, "buckets": [],
                "seconds": time.perf_counter() - started}  # fmt: skip
    bucket = hashed(table["profile_id"], plan.buckets, repeats=True)
    part = hashed(table["message_id"], plan.buckets, repeats=False)
    written = cut(fs, f"{work}/rows/g-{group:05d}.arrow", table, bucket, plan.buckets)
    ids = pa.table(
        {"message_id": table["message_id"], "r": table["r"], "f": table["f"],
         "pos": table["pos"], "bucket": pa.array(bucket.astype(np.int32))}
    )  # fmt: skip
    cut(fs, f"{work}/ids/g-{group:05d}.arrow", ids, part, plan.buckets)
    lo = pc.min(table["r"]).as_py()
    return {"group": group, "events": table.num_rows, "lo": lo, "hi": hi, "buckets": written,
            "seconds": time.perf_counter() - started}  # fmt: skip


def cut(fs: pafs.FileSystem, path: str, table: pa.Table, key: I64, keys: int) -> list[int]:
    """The table's rows by `key` (0 .. keys - 1) into one Arrow IPC file, record batch k
    holding key k's rows (`Cuts` reads them); returns the keys that have rows."""
    order = np.argsort(key, kind="stable")
    bounds = np.searchsorted(key[order], np.arange(keys + 1))
    table = table.take(pa.array(order)).combine_chunks()
    batches = [table.slice(a, b - a) for a, b in itertools.pairwise(bounds.tolist())]
    with (
        whole(fs, path) as tmp,
        fs.open_output_stream(tmp) as out,
        ipc.new_file(out, table.schema) as w,
    ):
        for part in batches:
            w.write_batch(part.to_batches()[0] if part.num_rows else _empty_batch(table.schema))
    return np.flatnonzero(np.diff(bounds)).tolist()


def _empty_batch(schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([], schema=schema)


class Cuts:
    """The files `cut` wrote into a folder: key k's rows of all of them."""

    def __init__(self, fs: pafs.FileSystem, folder: str) -> None:
        self.readers = [ipc.open_file(fs.open_input_file(p)) for p in listed(fs, folder, ".arrow")]

    def get(self, k: int) -> pa.Table | None:
        parts = [r.get_batch(k) for r in self.readers]
        parts = [b for b in parts if b.num_rows]
        return pa.Table.from_batches(parts) if parts else None


# --- 2. duplicates (R6) -----------------------------------------------------------------


def dedupe(plan: Plan, parts: Sequence[int]) -> tuple[int, dict[int, list[int]]]:
    """Stage 2 for some partitions of message ids; returns how many rows were dropped,
    and for each partition the ids it keeps and their files' bytes.

    The kept ids are files sorted by `fnv1a` of the id (column `h`): a batch's ids are
    looked up by binary search in each (memory-mapped where local), so a batch reads
    about log2(window) entries an id, not the window's ids."""
    fs, ck = fs_path(plan.checkpoint)
    _, work = fs_path(plan.work)
    dropped = 0
    held: dict[int, list[int]] = {}
    cuts = Cuts(fs, f"{work}/ids")
    for p in parts:
        batch = cuts.get(p)
        if batch is None:
            continue
        kept_dir = f"{ck}/{_IDS}/p={p:05d}"
        known = listed(fs, kept_dir, ".arrow")
        order = pc.sort_indices(batch, [("r", "ascending"), ("f", "ascending"),
                                        ("pos", "ascending")])  # fmt: skip
        batch = batch.take(order)
        codes = pc.dictionary_encode(batch["message_id"]).combine_chunks().indices.to_numpy()
        keep = np.zeros(len(codes), dtype=bool)
        keep[first_places(codes)] = True  # the first copy in arrival order
        ids = batch["message_id"].combine_chunks()
        h = fnv1a(ids)
        for path in known:
            keep &= ~_seen_in(fs, path, ids, h)
        kept = pa.table({"h": h, "message_id": ids, "r": batch["r"]}).filter(pa.array(keep))
        write_arrow(fs, f"{kept_dir}/{plan.batch:012d}.arrow", _by_hash(kept))
        if not keep.all():
            gone = batch.filter(pa.array(~keep)).select(["bucket", "f", "pos"])
            dropped += gone.num_rows
            b = gone["bucket"].to_numpy().astype(np.int64)
            cut(fs, f"{work}/dropped/p-{p:05d}.arrow", gone, b, plan.buckets)
        _merge(fs, kept_dir, known, plan)
        files = listed(fs, kept_dir, ".arrow")
        held[p] = [sum(_open_ids(fs, f).num_rows for f in files), sum(map(fs_size(fs), files))]
    return dropped, held


def _by_hash(table: pa.Table) -> pa.Table:
    return table.take(pa.array(np.argsort(table["h"].to_numpy(), kind="stable")))


def _open_ids(fs: pafs.FileSystem, path: str) -> pa.Table:
    """A kept-ids file, memory-mapped when local (its pages read as they are touched)."""
    if isinstance(fs, pafs.LocalFileSystem):
        return ipc.open_file(pa.memory_map(path)).read_all()
    return read_arrow(fs, path)


def fs_size(fs: pafs.FileSystem) -> Callable[[str], int]:
    """A file's size in bytes, on `fs`."""
    return lambda path: int(fs.get_file_info(path).size or 0)


def _seen_in(fs: pafs.FileSystem, path: str, ids: pa.Array, h: npt.NDArray[np.uint64]) -> BOOL:
    """Which of `ids` (with their hashes `h`) a kept-ids file holds."""
    table = _open_ids(fs, path)
    if "h" not in table.column_names:  # a file of an earlier lull: no hashes
        seen = pc.is_in(ids, value_set=table["message_id"].combine_chunks())
        return np.asarray(seen.to_numpy(zero_copy_only=False), dtype=bool)
    hs = table["h"].combine_chunks().to_numpy()
    lo, hi = np.searchsorted(hs, h, "left"), np.searchsorted(hs, h, "right")
    found = np.zeros(len(h), dtype=bool)
    maybe = np.flatnonzero(hi > lo)
    stored = table["message_id"].combine_chunks()
    for extra in range(int((hi - lo).max(initial=0))):  # hash collisions: rarely past 0
        at = maybe[lo[maybe] + extra < hi[maybe]]
        same = pc.equal(ids.take(pa.array(at)), stored.take(pa.array(lo[at] + extra)))
        found[at] |= np.asarray(same.to_numpy(zero_copy_only=False), dtype=bool)
    return found


def _merge(fs: pafs.FileSystem, folder: str, known: Sequence[str], plan: Plan) -> None:
    """A partition's id files of committed batches: those whose every id the stream's
    clock passed more than the window ago (R6's window) removed, and past _MERGE_AFTER
    files, all merged into one, less such ids."""
    done = [p for p in known if _batch_of(p) <= plan.committed]
    since = plan.watermark - plan.window_ms
    for path in done:
        newest = pc.max(_open_ids(fs, path)["r"]).as_py()
        if newest is None or newest < since:
            fs.delete_file(path)
    done = [p for p in done if fs.get_file_info(p).type == pafs.FileType.File]
    if len(done) <= _MERGE_AFTER:
        return
    table = pa.concat_tables([read_arrow(fs, p).select(["message_id", "r"]) for p in done])
    table = table.filter(pc.greater_equal(table["r"], since))
    ids = table["message_id"].combine_chunks()  # (hashed again: files of an earlier lull
    table = _by_hash(pa.table({"h": fnv1a(ids), "message_id": ids, "r": table["r"]}))  # lack h)
    write_arrow(fs, f"{folder}/{plan.committed:012d}.m.arrow", table)
    for p in done:
        if p != f"{folder}/{plan.committed:012d}.m.arrow":
            fs.delete_file(p)


def _batch_of(path: str) -> int:
    return int(path.rsplit("/", 1)[1].split(".", 1)[0])


# --- 3. the keyed step ------------------------------------------------------------------


Stepped = tuple[int, int, int | None, dict[str, int]]


def step(plan: Plan, buckets: Sequence[int]) -> list[Stepped]:
    """Stage 3 for some buckets: (bucket, rows taken, its next timer, what its state
    holds: profiles, open and concluded sessions, bytes) for each. The buckets' outputs
    are written together, a file per output named after the first bucket (the batch's
    folders are cleared before the batch is run again)."""
    from lull.spark import sink

    fs, _ = fs_path(plan.checkpoint)
    _, work = fs_path(plan.work)
    orders: list[tuple[int, I64]] | None = None
    cuts, dropped = Cuts(fs, f"{work}/rows"), Cuts(fs, f"{work}/dropped")
    outputs: dict[str, list[pa.Table]] = {}
    done = []
    for b in buckets:
        rows = cuts.get(b)
        seq = None
        if rows is not None:
            gone = dropped.get(b)
            if gone is not None:
                rows = rows.filter(pa.array(~np.isin(_names(rows), _names(gone))))
            if orders is None:
                orders = _orders(read_folder(fs, f"{work}/order"))
            seq = (plan.batch << 32) + ranks(rows, orders)
        done.append(_step_bucket(plan, fs, b, rows, seq, outputs))
    out = sink.Sink(plan.out)
    for name, tables in outputs.items():
        out.write(name, plan.batch, f"{buckets[0]:05d}", pa.concat_tables(tables))
    return done


def _orders(table: pa.Table | None) -> list[tuple[int, I64]]:
    """(file, its sorted arrival times) for each file of the batch."""
    if table is None:
        return []
    f, r = table["f"].to_numpy(), table["r"].to_numpy()
    cut = np.flatnonzero(np.diff(f)) + 1
    return [(int(part[0]), times) for part, times in zip(np.split(f, cut), np.split(r, cut),
                                                         strict=True)]  # fmt: skip


def _names(t: pa.Table) -> I64:
    """(file, position) of each row as one int64."""
    names: I64 = (t["f"].to_numpy().astype(np.int64) << _POS_BITS) | t["pos"].to_numpy()
    return names


def ranks(rows: pa.Table, orders: Sequence[tuple[int, I64]]) -> I64:
    """Each row's place in the batch's arrival order (received_at, then file, then line)
    among all the batch's events: from each file's sorted arrival times, the rows of
    earlier files at or before its time, of later files before it, and its rank in its
    own file. (A dropped duplicate keeps its place: `seq` then has a gap.)"""
    r = rows["r"].to_numpy()
    f = rows["f"].to_numpy()
    rank: I64 = rows["frank"].to_numpy().astype(np.int64, copy=True)
    for g, times in orders:
        at = np.where(f > g, np.searchsorted(times, r, "right"), np.searchsorted(times, r, "left"))
        rank += np.where(f == g, 0, at)
    return rank


def _step_bucket(
    plan: Plan,
    fs: pafs.FileSystem,
    b: int,
    rows: pa.Table | None,
    seq: I64 | None,
    outputs: dict[str, list[pa.Table]],
) -> Stepped:
    """One bucket's rows through the engine from its state; its outputs added to
    `outputs`, its new state written."""
    from lull.spark import bucket, sink, state_codec
    from lull.spark.sessionizer import session_props

    _, ck = fs_path(plan.checkpoint)
    folder = f"{ck}/{_STATE}/b={b:05d}"
    versions = [p for p in listed(fs, folder, ".state") if _batch_of(p) < plan.batch]
    for old in versions[:-1]:  # older than a finished batch's state: not needed again
        fs.delete_file(old)
    if versions:
        with fs.open_input_file(versions[-1]) as f:
            state = state_codec.decode(f.read(), plan.buckets)
    else:
        state = bucket.Bucket()
    given = None
    if rows is not None and rows.num_rows:
        obj = {c: np.asarray(rows[c].to_numpy(zero_copy_only=False), dtype=object)
               for c in ("message_id", "profile_id", "name", "source")}  # fmt: skip
        given = bucket.Rows(
            obj["message_id"], obj["profile_id"], obj["name"], obj["source"],
            rows["ts"].to_numpy(), rows["r"].to_numpy(), rows["f"].to_numpy(),
            rows["pos"].to_numpy(),
        )  # fmt: skip
    settings = plan.settings()
    applied = bucket.apply(state, given, plan.watermark, settings, plan.late_ms)
    ended, opened = applied.concluded, applied.opened
    profile = state.table.profile_id[ended.code]
    made = {
        "sessions": sink.sessions_table(profile, ended),
        "concluded": sink.concluded_table(profile, ended, session_props(ended), plan.timeout_ms),
        "open": sink.open_table(state.table.profile_id[opened.code], opened, applied.as_of),
    }
    if given is not None and rows is not None and seq is not None:
        made["events"] = sink.events_out(rows, applied.session_id, applied.late, seq)
    for name, table in made.items():
        if table.num_rows:
            outputs.setdefault(name, []).append(table)
    if plan.late_ms is not None:
        bucket.forget(state, plan.watermark, plan.late_ms, plan.timeout_ms)
    data = state_codec.encode(state, plan.buckets)
    with whole(fs, f"{folder}/{plan.batch:012d}.state") as tmp, fs.open_output_stream(tmp) as f:
        f.write(data)
    kept = bucket.held(state) | {"bytes": len(data)}
    return b, 0 if given is None else len(given), applied.timer, kept
