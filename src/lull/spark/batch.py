"""`lull spark resessionize`: R2 over a whole event history on Spark.

The same answer as `lull resessionize` (src/lull/resessionize.py): R1 as a re-sessionization
admits events (sessions taken as on, late events included), each profile's eligible events
ordered by (event time, arrival), a gap of at least the timeout starts a session, and the
session id derived from the profile and the first event (`lull.model.session_id_for`).

Spark is the scheduler of lull's Python tasks (pyarrow and NumPy), as in the stream
(`driver.py`): no row goes through the JVM. Three Spark jobs, over the input's row groups:

1. **cut**, a task per run of row groups: the *narrow* columns (profile, time, arrival,
   message id, source) of the eligible events, cut by bucket of profiles (FNV-1a, as the
   stream) into one Arrow IPC file per task under `OUT/_work/rows/`.
2. **sessions**, a task per group of buckets: a bucket's rows sorted by (profile, time,
   arrival), a gap of at least the timeout starts a session; the task writes the
   sessions (`sessions/`, `concluded/`) and each event's session id, cut by the run of
   row groups it came from (`_work/ids/`).
3. **events**, a task per run of row groups: its rows read whole once more, each given
   its session id (a lookup by row number, no sort) and written to `events/`.

So every column is read twice and written once, and only the narrow ones move between
tasks: Spark's own `session_window` shuffles the narrow columns alone and writes one row a
session, and the per-event `CT Session ID` costs this job one copy of the events on top.
Input: Parquet of canonical events, as `lull export events --format parquet` writes them.
Output under OUT:

- `events/`: every input event (Session Concluded ones excepted: they are rebuilt) with
  its `session_id` (null where R1 gives none) and `late` false;
- `sessions/`: the columns of `lull export sessions`;
- `concluded/`: the Session Concluded events of the concluded sessions (R4), shaped as
  `lull export events` shows them;
- `settings.json`: the settings used (the board reads its time zone from it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from lull.errors import BadInput
from lull.model import SESSION_CONCLUDED, Settings, session_id_for
from lull.spark import sink, tasks

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

REQUIRED = ("message_id", "profile_id", "name", "ts", "source")
# What events/ and concluded/ carry, in order (as `lull export events --format parquet`).
EVENT_COLUMNS = (
    "message_id",
    "profile_id",
    "name",
    "ts",
    "source",
    "received_at",
    "properties",
    "session_id",
    "late",
    "seq",
)
_EVENTS = pa.schema(
    [(c, pa.bool_() if c == "late" else pa.int64() if c == "seq" else pa.string())
     for c in EVENT_COLUMNS]
)  # fmt: skip
_SESSIONS = pa.schema(
    [("session_id", pa.string()), ("profile_id", pa.string()), ("first_ts", pa.string()),
     ("last_ts", pa.string()), ("length_s", pa.int64()), ("events", pa.int64()),
     ("source", pa.string()), ("concluded", pa.bool_())]
)  # fmt: skip
SCHEMAS = {"events": _EVENTS, "sessions": _SESSIONS, "concluded": _EVENTS}
_TEXT = ("message_id", "profile_id", "name", "source")
_OPTIONAL = ("received_at", "seq")
_WORK = "_work"
_ROWS_PER_BUCKET = 1_000_000  # the sessions tasks' buckets hold about this many rows
_encode = msgspec.json.Encoder().encode
I64 = npt.NDArray[np.int64]


@dataclass(slots=True)
class Result:
    """What a run wrote, and how long it took."""

    out: str
    seconds: float

    def as_json(self) -> dict[str, object]:
        return {"out": self.out, "seconds": round(self.seconds, 3)}


@dataclass(frozen=True, slots=True)
class Job:
    """What every task needs (pickled to the executors). A piece is a run of row groups:
    (file, row group, number of the group's first row among all rows) for each; files in
    path order, so without `seq` a row's number is its arrival order."""

    events: str
    out: str
    pieces: tuple[tuple[tuple[str, int, int], ...], ...]
    types: tuple[tuple[str, str], ...]  # the columns used: name -> kind (text, ms, ...)
    buckets: int
    timeout_ms: int
    excluded: tuple[str, ...]
    now: int

    @property
    def work(self) -> str:
        return f"{self.out}/{_WORK}"

    def kind(self, column: str) -> str | None:
        return dict(self.types).get(column)


def resessionize(
    spark: SparkSession,
    events: str,
    out: str,
    settings: Settings,
    *,
    now: int,
    progress: Callable[[str], None] = lambda _: None,
) -> Result:
    """Rebuild every session of the events at `events` (Parquet) into `out`.

    `now` (epoch ms) decides, as in `lull resessionize`, whether a profile's last session
    is concluded (its last event + timeout has passed)."""
    from lull.spark.driver import spark_map, split

    started = time.perf_counter()
    fs, root = tasks.fs_path(out)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.Directory and fs.get_file_info(pafs.FileSelector(root)):
        raise BadInput(f"--out {out}: the directory is not empty; choose a new one")
    progress(f"reading {events}")
    sc = spark.sparkContext
    cores = max(1, sc.defaultParallelism)
    units, types = _layout(events)
    rows = units[-1][2] + _group_rows(units[-1]) if units else 0
    pieces = tuple(tuple(p) for p in split(units, 4 * cores))
    buckets = max(2 * cores, -(-rows // _ROWS_PER_BUCKET))
    job = Job(events, _absolute(out), pieces, types, buckets, settings.timeout_ms,
              settings.excluded, now)  # fmt: skip
    try:
        progress("finding sessions: narrow columns cut by bucket of profiles")
        _done(job, spark_map(sc, lambda i: _guard(cut, job, i), range(len(pieces))))
        progress("writing sessions/ and concluded/")
        groups = split(range(buckets), 2 * cores)
        _done(job, spark_map(sc, lambda g: _guard(sessions, job, g), groups))
        progress("writing events/")
        _done(job, spark_map(sc, lambda i: _guard(write_events, job, i), range(len(pieces))))
    except BadInput:
        raise
    except Exception as e:  # a task that failed in Spark's hands (a lost executor, ...)
        raise BadInput(f"--events {events}: the job failed: {_reason(e)}") from None
    for name, schema in SCHEMAS.items():
        fs.create_dir(f"{root}/{name}", recursive=True)
        if not tasks.listed(fs, f"{root}/{name}", ".parquet"):  # none: readers see the columns
            _write(job, name, "empty", schema.empty_table(), always=True)
        with fs.open_output_stream(f"{root}/{name}/_SUCCESS"):
            pass
    fs.delete_dir(f"{root}/{_WORK}")
    with fs.open_output_stream(f"{root}/settings.json") as f:
        f.write((json.dumps(settings.as_json(), indent=2) + "\n").encode())
    return Result(out, time.perf_counter() - started)


def _absolute(out: str) -> str:
    """--out as the executors must see it (they need not run in this directory)."""
    return out if "://" in out else str(Path(out).resolve())


def _group_rows(unit: tuple[str, int, int]) -> int:
    fs, path = tasks.fs_path(unit[0])
    with fs.open_input_file(path) as f:
        return int(pq.ParquetFile(f).metadata.row_group(unit[1]).num_rows)


def _layout(events: str) -> tuple[list[tuple[str, int, int]], tuple[tuple[str, str], ...]]:
    """The input's row groups (file, group, first row's number) and its columns' kinds;
    refuses a missing path, a file that is not Parquet, and missing or mistyped columns."""
    import pyarrow.dataset as ds

    fs, path = tasks.fs_path(_absolute(events))
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        raise BadInput(f"--events {events}: no such file or directory")
    try:
        dataset = ds.dataset(path, format="parquet", filesystem=fs)
        files = sorted(dataset.files)
        schema = dataset.schema
        metas = []
        for name in files:
            with fs.open_input_file(name) as f:
                metas.append(pq.ParquetFile(f).metadata)
    except (pa.ArrowException, OSError) as e:
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise BadInput(f"--events {events}: not readable as Parquet ({reason})") from None
    types = {f.name: f.type for f in schema}
    missing = [c for c in REQUIRED if c not in types]
    if missing:
        raise BadInput(
            f"--events {events}: missing column(s) {', '.join(missing)} "
            f"(found: {', '.join(types) or 'none'})"
        )
    kinds: dict[str, str] = {}
    for name in _TEXT:
        if not _is_text(types[name]):
            raise BadInput(f"--events {events}: column {name} is {types[name]}, expected string")
        kinds[name] = "text"
    for name in ("ts", "received_at"):
        if name in types:
            kinds[name] = _time_kind(types[name], events, name)
    if "seq" in types:
        if not pa.types.is_integer(types["seq"]):
            raise BadInput(f"--events {events}: column seq is {types['seq']}, expected an integer")
        kinds["seq"] = "int"
    if "properties" in types:
        kinds["properties"] = "text" if _is_text(types["properties"]) else "json"
    prefix = events.split("://", 1)[0] + "://" if "://" in events else ""
    units: list[tuple[str, int, int]] = []
    base = 0
    for name, meta in zip(files, metas, strict=True):
        for g in range(meta.num_row_groups):
            units.append((prefix + name, g, base))
            base += meta.row_group(g).num_rows
    return units, tuple(kinds.items())


def _is_text(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


def _time_kind(t: pa.DataType, events: str, name: str) -> str:
    """A time column's kind: ISO-8601 text, a timestamp, or integer epoch ms."""
    if _is_text(t):
        return "iso"
    if pa.types.is_timestamp(t):
        return "timestamp"
    if pa.types.is_integer(t):
        return "int"
    raise BadInput(
        f"--events {events}: column {name} is {t}, expected ISO-8601 text, a timestamp "
        "or epoch milliseconds"
    )


# --- the tasks --------------------------------------------------------------------------


def _guard(fn: Callable[[Job, Any], None], job: Job, arg: Any) -> str | None:
    """Run a task; a value it cannot read comes back as a message, not a stack trace."""
    try:
        fn(job, arg)
    except BadInput as e:
        return str(e)
    except pa.ArrowException as e:
        return str(e).strip().splitlines()[0][:300]
    return None


def _done(job: Job, results: Sequence[str | None]) -> None:
    errors = [r for r in results if r]
    if errors:
        raise BadInput(f"--events {job.events}: the job failed: {errors[0]}")


def _read(job: Job, piece: int, columns: Sequence[str] | None) -> tuple[pa.Table, I64]:
    """A piece's rows (these columns, or all) and each row's number."""
    tables, numbers = [], []
    for path, group, base in job.pieces[piece]:
        fs, name = tasks.fs_path(path)
        with fs.open_input_file(name) as f:
            table = pq.ParquetFile(f).read_row_group(group, columns=columns)
        tables.append(table)
        numbers.append(base + np.arange(table.num_rows, dtype=np.int64))
    return pa.concat_tables(tables, promote_options="default"), np.concatenate(numbers)


def _ms(job: Job, table: pa.Table, column: str) -> pa.Array:
    """A time column as epoch ms (int64, nulls kept)."""
    values = table[column].combine_chunks()
    kind = job.kind(column)
    if kind == "int":
        return values.cast(pa.int64())
    if kind == "timestamp":
        return _floor_ms(values.cast(pa.timestamp("us", values.type.tz)).cast(pa.int64()))
    return _parse_iso(values, column)


def _parse_iso(values: pa.Array, column: str) -> pa.Array:
    """ISO-8601 text -> epoch ms (floor): with `Z` or an offset, or without (UTC)."""
    try:  # every value with a zone (as exports write them): one cast, 20x quicker
        return _floor_ms(values.cast(pa.timestamp("us", "UTC")).cast(pa.int64()))
    except pa.ArrowInvalid:
        pass
    zoned = pc.match_substring_regex(values, r"(Z|z|[+-]\d\d(:?\d\d)?)$")
    try:
        with_zone = pc.if_else(zoned, values, None).cast(pa.timestamp("us", "UTC"))
        without = pc.if_else(zoned, None, values).cast(pa.timestamp("us"))
    except pa.ArrowInvalid as e:
        bad = str(e).split("Failed to parse string: ", 1)[-1].split(" as a scalar", 1)[0]
        raise BadInput(f"column {column}: {bad} is not an ISO-8601 time") from None
    return _floor_ms(pc.if_else(zoned, with_zone.cast(pa.int64()), without.cast(pa.int64())))


def _floor_ms(micros: pa.Array) -> pa.Array:
    us = pc.fill_null(micros, 0).to_numpy()
    valid = pc.is_valid(micros).to_numpy(zero_copy_only=False)
    ms = np.floor_divide(us, 1000)
    return pa.array(ms, pa.int64(), mask=~valid)


@dataclass(slots=True)
class _Times:
    """R5's clock fix: `ts` (ms) capped at `received_at`, and whether the cap moved it."""

    ts: pa.Array
    moved: pa.Array
    received: pa.Array | None


def _times(job: Job, table: pa.Table) -> _Times:
    given = _ms(job, table, "ts")
    if given.null_count:
        raise BadInput("column ts: a row has no time")
    if job.kind("received_at") is None:
        return _Times(given, pa.array(np.zeros(len(given), dtype=bool)), None)
    received = _ms(job, table, "received_at")
    ts = pc.min_element_wise(given, pc.coalesce(received, given))
    return _Times(ts, pc.less(ts, given), received)


def _kept(table: pa.Table) -> pa.Array:
    """Rows that are not Session Concluded events (those are rebuilt)."""
    return pc.fill_null(pc.not_equal(table["name"], SESSION_CONCLUDED), True)


def cut(job: Job, piece: int) -> None:
    """Job 1 for a piece: its eligible events' narrow columns, cut by bucket of profiles."""
    columns = [*REQUIRED, *(c for c in _OPTIONAL if job.kind(c))]
    table, number = _read(job, piece, columns)
    clock = _times(job, table)
    arrival = table["seq"].cast(pa.int64()) if job.kind("seq") else pa.array(number)
    excluded = pa.array(list(job.excluded), pa.string())
    eligible = pc.and_kleene(
        pc.and_kleene(_kept(table), pc.not_equal(table["source"], "api")),
        pc.invert(pc.is_in(table["name"], value_set=excluded)),
    )
    eligible = pc.fill_null(eligible, False)
    narrow = pa.table(
        {
            "profile_id": table["profile_id"],
            "ts": clock.ts,
            "arrival": arrival,
            "message_id": table["message_id"],
            "source": table["source"],
            "number": pa.array(number),
        }
    ).filter(eligible)
    bucket = tasks.hashed(narrow["profile_id"], job.buckets, repeats=True)
    fs, work = tasks.fs_path(job.work)
    tasks.cut(fs, f"{work}/rows/p-{piece:05d}.arrow", narrow, bucket, job.buckets)


def sessions(job: Job, buckets: Sequence[int]) -> None:
    """Job 2 for some buckets: R2 on their narrow rows; the sessions and Session Concluded
    events written, each event's session id cut by piece."""
    fs, work = tasks.fs_path(job.work)
    rows = tasks.Cuts(fs, f"{work}/rows")
    found = [s for s in (_sessions_of(job, rows.get(b)) for b in buckets) if s is not None]
    if not found:
        return
    part = f"{buckets[0]:05d}"
    made, ids = zip(*found, strict=True)
    table = pa.concat_tables(made)
    _write(job, "sessions", part, table.drop_columns(["last_ms"]))
    _write(job, "concluded", part, _concluded(table.filter(table["concluded"]), job.timeout_ms))
    assigned = pa.concat_tables(ids)
    bases = np.array([p[0][2] for p in job.pieces], dtype=np.int64)
    piece = np.searchsorted(bases, assigned["number"].to_numpy(), side="right") - 1
    tasks.cut(fs, f"{work}/ids/s-{part}.arrow", assigned, piece, len(job.pieces))


def _sessions_of(job: Job, rows: pa.Table | None) -> tuple[pa.Table, pa.Table] | None:
    """A bucket's sessions (the `sessions/` columns, and `last_ms`), and (row number,
    session id) for each of its events."""
    if rows is None or not rows.num_rows:
        return None
    codes = pc.dictionary_encode(rows["profile_id"]).combine_chunks().indices.to_numpy()
    ts, arrival = rows["ts"].to_numpy(), rows["arrival"].to_numpy()
    order = np.lexsort((arrival, ts, codes))
    code, t = codes[order], ts[order]
    n = len(order)
    starts = np.ones(n, dtype=bool)
    starts[1:] = (code[1:] != code[:-1]) | (t[1:] - t[:-1] >= job.timeout_ms)
    head = np.flatnonzero(starts)
    last = np.append(head[1:], n) - 1
    first_ms, last_ms = t[head], t[last]
    take = pa.array(order[head])
    profile = rows["profile_id"].take(take)
    ids = [
        session_id_for(p, m)
        for p, m in zip(profile.to_pylist(), rows["message_id"].take(take).to_pylist(),
                        strict=True)
    ]  # fmt: skip
    session_id = pa.array(ids, pa.string())
    # a profile's last session is concluded once due by `now`; the others are
    latest = np.append(code[head][1:] != code[head][:-1], True)
    table = pa.table(
        {
            "session_id": session_id,
            "profile_id": profile,
            "first_ts": sink.iso(first_ms),
            "last_ts": sink.iso(last_ms),
            "length_s": pa.array((last_ms - first_ms) // 1000, pa.int64()),
            "events": pa.array(np.diff(np.append(head, n)), pa.int64()),
            "source": rows["source"].take(take),
            "concluded": pa.array(~latest | (last_ms + job.timeout_ms <= job.now)),
            "last_ms": pa.array(last_ms, pa.int64()),
        }
    )
    number = rows["number"].to_numpy()[order]
    each = session_id.take(pa.array(np.cumsum(starts) - 1))
    return table, pa.table({"number": pa.array(number), "session_id": each})


def _concluded(s: pa.Table, timeout: int) -> pa.Table:
    """R4's Session Concluded events of these sessions, as `lull export events` has them:
    at the last event's time, raised at its due time, `sc-` + the id as message id."""
    n = s.num_rows
    props = [
        _encode({"Session Length": length, "Session ID": i}).decode()
        for length, i in zip(s["length_s"].to_pylist(), s["session_id"].to_pylist(), strict=True)
    ]
    return pa.table(
        {
            "message_id": pc.binary_join_element_wise("sc-", s["session_id"], ""),
            "profile_id": s["profile_id"],
            "name": pa.array([SESSION_CONCLUDED] * n, pa.string()),
            "ts": s["last_ts"],
            "source": s["source"],
            "received_at": sink.iso(s["last_ms"].to_numpy() + timeout),
            "properties": pa.array(props, pa.string()),
            "session_id": s["session_id"],
            "late": pa.array(np.zeros(n, dtype=bool)),
            "seq": pa.nulls(n, pa.int64()),
        }
    )


def write_events(job: Job, piece: int) -> None:
    """Job 3 for a piece: its rows whole, each with its session id, to `events/`."""
    table, number = _read(job, piece, None)
    clock = _times(job, table)
    n = table.num_rows
    fs, work = tasks.fs_path(job.work)
    found = tasks.Cuts(fs, f"{work}/ids").get(piece)
    where = np.full(n, -1, dtype=np.int64)
    if found is not None:
        where[found["number"].to_numpy() - number[0]] = np.arange(found.num_rows)
        session_id = found["session_id"].take(pa.array(where, mask=where < 0))
    else:
        session_id = pa.nulls(n, pa.string())
    # given text passes through unless R5's cap moved it; other times are written as text
    shown = sink.iso(clock.ts.to_numpy(zero_copy_only=False))
    if job.kind("ts") == "iso":
        shown = pc.if_else(clock.moved, shown, table["ts"].combine_chunks().cast(pa.string()))
    received: pa.Array = pa.nulls(n, pa.string())
    if clock.received is not None:
        received = table["received_at"].combine_chunks().cast(pa.string())
        if job.kind("received_at") != "iso":
            received = _iso_or_null(clock.received)
    arrival = table["seq"].cast(pa.int64()) if job.kind("seq") else pa.array(number)
    events = pa.table(
        {
            "message_id": table["message_id"],
            "profile_id": table["profile_id"],
            "name": table["name"],
            "ts": shown,
            "source": table["source"],
            "received_at": received,
            "properties": _properties(job, table),
            "session_id": session_id,
            "late": pa.array(np.zeros(n, dtype=bool)),
            "seq": arrival,
        }
    ).filter(_kept(table))
    _write(job, "events", f"{piece:05d}", events)


def _iso_or_null(ms: pa.Array) -> pa.Array:
    valid = pc.is_valid(ms)
    text = sink.iso(pc.fill_null(ms, 0).to_numpy())
    return pc.if_else(valid, text, pa.scalar(None, pa.string()))


def _properties(job: Job, table: pa.Table) -> pa.Array:
    """`properties` as JSON text (a struct or map column is written as JSON)."""
    kind = job.kind("properties")
    if kind is None:
        return pa.nulls(table.num_rows, pa.string())
    values = table["properties"].combine_chunks()
    if kind == "text":
        return values.cast(pa.string())
    texts = [None if v is None else json.dumps(v, separators=(",", ":"), default=str)
             for v in values.to_pylist()]  # fmt: skip
    return pa.array(texts, pa.string())


def _write(job: Job, name: str, part: str, table: pa.Table, *, always: bool = False) -> None:
    """`OUT/<name>/part-<part>.parquet`, whole (a temporary name, then a rename)."""
    if not table.num_rows and not always:
        return
    table = table.cast(SCHEMAS[name])
    fs, root = tasks.fs_path(job.out)
    with tasks.whole(fs, f"{root}/{name}/part-{part}.parquet") as tmp:
        pq.write_table(table, tmp, filesystem=fs, compression="snappy")


def _reason(e: Exception) -> str:
    """The innermost cause's message, on one line."""
    causes = [line for line in str(e).splitlines() if "Exception: " in line]
    text = causes[-1].split("Exception: ", 1)[1] if causes else str(e).strip()
    return (text.splitlines() or [type(e).__name__])[0][:200]
