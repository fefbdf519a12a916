"""The stream's micro-batches over a landing or log directory, with Spark as the scheduler
of Python tasks (`tasks.py`) rather than the mover of rows.

Each micro-batch N takes the directory's files not yet taken (in path order; at most
`--max-files`), and notes them with the stream's clock before the batch (the watermark:
the latest `received_at` of the batches before, or of a clock line) in the checkpoint's
`offsets/N.json` before it runs; its three Spark jobs (parse, duplicates, step) then
write the outputs of batch N and each bucket's state as of N; `commits/N.json` (the new
clock and each bucket's next timer) marks it done. A batch with no files runs when the
clock has passed a bucket's timer: only the step, for those buckets (the sessions that
fell due). A stream started again runs the planned batches that have no commit, as they
were planned, after removing what they had written: so its outputs are those of a
stream that never stopped.

The checkpoint (a folder, or a URI pyarrow opens):

    meta.json                    version, bucket count, hash (fixed by the first run)
    offsets/N.json, commits/N.json  the last 10 to 20 batches (`Stream.compact`)
    taken.json                   the files of the batches folded out of offsets/
    state/b=B/N.state            bucket B's state after batch N (the latest kept)
    ids/p=P/N.arrow              message ids kept by batch N (R6), merged now and then
    work/batch=N/                what batch N's jobs hand each other (removed once done)
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pyarrow.fs as pafs

from lull.errors import BadInput
from lull.spark import tasks
from lull.spark.sink import Sink

if TYPE_CHECKING:
    from pyspark import SparkContext

    from lull.spark.stream import StreamConfig

VERSION = 2
# offsets/ and commits/ keep the last KEEP to 2 * KEEP batches (older ones: taken.json)
KEEP = 10
HELD = ("profiles", "open", "concluded", "bytes")  # a bucket's figures, as step gives them
SWEEPS = 8  # every bucket is stepped each time the clock moves on 1/8 of the late horizon
T = TypeVar("T")
R = TypeVar("R")


class Checkpoint:
    """The stream's own checkpoint folder (see the module docstring)."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.fs, self.root = tasks.fs_path(uri)

    def check(self, buckets: int) -> None:
        """Start the checkpoint, or refuse one of another bucket count or format."""
        path = f"{self.root}/meta.json"
        if self.fs.get_file_info(path).type == pafs.FileType.File:
            meta = json.loads(self._read(path))
            if meta.get("version") != VERSION or meta.get("hash") != tasks.HASH:
                raise BadInput(f"the checkpoint {self.uri} is of another version of the stream: "
                               "start a new checkpoint")  # fmt: skip
            if meta["buckets"] != buckets:
                raise BadInput(
                    f"the checkpoint was started with --buckets {meta['buckets']}, not "
                    f"{buckets}: give that number (or start a new checkpoint)"
                )
            return
        if self.fs.get_file_info(f"{self.root}/metadata").type == pafs.FileType.File:
            raise BadInput(f"the checkpoint {self.uri} was written by the Spark-native stream of "
                           "an earlier lull: start a new checkpoint")  # fmt: skip
        self.write(path, {"version": VERSION, "buckets": buckets, "hash": tasks.HASH})

    def _read(self, path: str) -> str:
        with self.fs.open_input_stream(path) as f:
            return bytes(f.read()).decode()

    def write(self, path: str, value: Any) -> None:
        with tasks.whole(self.fs, path) as tmp, self.fs.open_output_stream(tmp) as f:
            f.write(json.dumps(value).encode())

    def log(self, kind: str) -> dict[int, dict[str, Any]]:
        """offsets/ or commits/: batch -> what was noted."""
        files = tasks.listed(self.fs, f"{self.root}/{kind}", ".json")
        return {int(p.rsplit("/", 1)[1][:-5]): json.loads(self._read(p)) for p in files}

    def note(self, kind: str, batch: int, value: dict[str, Any]) -> None:
        self.write(f"{self.root}/{kind}/{batch}.json", value)

    def forget_from(self, batch: int, committed: int) -> None:
        """Remove what runs of batches >= `batch` wrote into the checkpoint: states, kept
        ids (and merges of uncommitted batches' ids), the work folder."""
        for name in ("state", "ids"):
            folder = f"{self.root}/{name}"
            if self.fs.get_file_info(folder).type != pafs.FileType.Directory:
                continue
            for part in self.fs.get_file_info(pafs.FileSelector(folder)):
                for path in tasks.listed(self.fs, part.path, ""):
                    n = tasks._batch_of(path)
                    merged = path.endswith(".m.arrow")
                    if (merged and n > committed) or (not merged and n >= batch):
                        self.fs.delete_file(path)
        self.clear_work(batch)

    def taken(self) -> set[str]:
        """The files of the batches folded into `taken.json` (`fold`)."""
        path = f"{self.root}/taken.json"
        if self.fs.get_file_info(path).type != pafs.FileType.File:
            return set()
        return set(json.loads(self._read(path))["files"])

    def fold(self, upto: int, taken: Sequence[str]) -> None:
        """Note every file taken so far in `taken.json` (written whole first), then remove
        `offsets/` and `commits/` of the batches up to `upto`: a restart reads both."""
        self.write(f"{self.root}/taken.json", {"upto": upto, "files": list(taken)})
        for kind in ("offsets", "commits"):
            for path in tasks.listed(self.fs, f"{self.root}/{kind}", ".json"):
                if int(path.rsplit("/", 1)[1][:-5]) <= upto:
                    self.fs.delete_file(path)

    def log_files(self) -> int:
        """How many files `offsets/` and `commits/` hold."""
        return sum(len(tasks.listed(self.fs, f"{self.root}/{k}", ".json"))
                   for k in ("offsets", "commits"))  # fmt: skip

    def clear_work(self, batch: int) -> None:
        folder = f"{self.root}/work/batch={batch}"
        if self.fs.get_file_info(folder).type == pafs.FileType.Directory:
            self.fs.delete_dir(folder)


def split(items: Sequence[T], parts: int) -> list[list[T]]:
    """`items` in at most `parts` runs of nearly equal length, in order."""
    cuts = np.array_split(np.arange(len(items)), max(1, min(parts, len(items))))
    return [[items[i] for i in c.tolist()] for c in cuts if len(c)]


def spark_map(sc: SparkContext, fn: Callable[[T], R], jobs: Sequence[T]) -> list[R]:
    """One Spark task per job (Python, on the executors); their results, in order."""
    if not jobs:
        return []
    result: list[R] = sc.parallelize(list(jobs), len(jobs)).map(fn).collect()
    return result


class Stream:
    """`lull spark stream --landing/--log`: the micro-batch loop (see the module docstring)."""

    def __init__(self, sc: SparkContext, config: StreamConfig) -> None:
        self.sc = sc
        self.config = config
        self.source = config.log or config.landing or ""
        self.suffixes = (".seg",) if config.log else (".ndjson", ".clock")
        self.ck = Checkpoint(config.checkpoint)
        self.cores = max(1, sc.defaultParallelism)
        self.taken: set[str] = set()
        # bucket -> HELD figures; id partition -> (ids, bytes); as of the last batch
        self.held: dict[str, dict[str, list[int]]] = {"buckets": {}, "ids": {}}
        self.swept = 0  # the clock at the last batch that stepped every bucket

    def listing(self) -> list[str]:
        fs, folder = tasks.fs_path(self.source)
        if fs.get_file_info(folder).type != pafs.FileType.Directory:
            raise BadInput(f"{self.source} is not a directory")
        return [p for s in self.suffixes for p in tasks.listed(fs, folder, s)]

    def files(self, taken: set[str]) -> list[str]:
        new = sorted(p for p in self.listing() if p not in taken)
        return new[: self.config.max_files] if self.config.max_files else new

    def run(self) -> None:
        config = self.config
        self.ck.check(config.buckets)
        offsets, commits = self.ck.log("offsets"), self.ck.log("commits")
        done = max(commits, default=-1)
        self.ck.clear_work(done)  # left if the stream stopped right after its commit
        taken = self.taken = self.ck.taken() | {f for o in offsets.values() for f in o["files"]}
        last = commits.get(done, {"watermark": 0, "timers": {}})
        self.held = last.get("held", {"buckets": {}, "ids": {}})
        self.swept = int(last.get("swept", 0))
        watermark = int(last["watermark"])
        timers = {int(b): int(t) for b, t in last["timers"].items()}
        for n in sorted(k for k in offsets if k > done):  # planned, not done: again
            self.ck.forget_from(n, done)
            planned = offsets[n]
            watermark, timers = self.batch(n, planned["files"], planned["watermark"], timers)
            done = n
        trigger = config.trigger_ms / 1000
        while True:
            started = time.monotonic()
            new = self.files(taken)
            if new or any(watermark > t for t in timers.values()):
                n = done + 1
                self.ck.clear_work(n)
                self.ck.note("offsets", n, {"files": new, "watermark": watermark})
                taken.update(new)
                watermark, timers = self.batch(n, new, watermark, timers)
                done = n
                continue
            if config.until_idle:
                return
            time.sleep(max(0.0, trigger - (time.monotonic() - started)))

    def batch(
        self, n: int, files: list[str], watermark: int, timers: dict[int, int]
    ) -> tuple[int, dict[int, int]]:
        """Run micro-batch n; returns the clock after it and the buckets' timers."""
        c = self.config
        plan = tasks.Plan(
            n, c.out, c.checkpoint, self.source, tuple(files), c.project, c.buckets,
            c.timeout_ms, c.excluded, watermark, n - 1, c.window_ms, c.late_ms,
        )  # fmt: skip
        Sink(c.out).clear(n)
        took: dict[str, float] = {}
        clock = time.perf_counter()

        def lap(what: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            took[what] = now - clock
            clock = now

        parsed = spark_map(
            self.sc, lambda job: tasks.parse(plan, *job),
            list(enumerate(split(range(len(files)), 4 * self.cores))),
        )  # fmt: skip
        lap("parse")
        took["(in its tasks)"] = sum(p["seconds"] for p in parsed)
        events = sum(p["events"] for p in parsed)
        his = [p["hi"] for p in parsed if p["hi"] is not None]
        with_rows = {b for p in parsed for b in p["buckets"]}
        dropped = 0
        if events:
            parts = split(range(c.buckets), 2 * self.cores)
            for d, ids in spark_map(self.sc, lambda ps: tasks.dedupe(plan, ps), parts):
                dropped += d
                self.held["ids"].update({str(p): v for p, v in ids.items()})
        lap("duplicates")
        due = {b for b, t in timers.items() if watermark > t}
        # now and then every bucket, so that each forgets what the clock has passed
        sweep = c.late_ms is not None and watermark - self.swept >= c.late_ms // SWEEPS
        if sweep:
            due, self.swept = set(range(c.buckets)), watermark
        run = sorted(with_rows | due)
        stepped = spark_map(
            self.sc, lambda bs: tasks.step(plan, bs), split(run, 2 * self.cores)
        )  # fmt: skip
        lap("step")
        timers = dict(timers)
        for b, _, timer, kept in (x for group in stepped for x in group):
            self.held["buckets"][str(b)] = [kept[k] for k in HELD]
            if timer is None:
                timers.pop(b, None)
            else:
                timers[b] = timer
        after = max([watermark, *his])
        state = {"clock_before": watermark, "clock": after} | self.state_size()
        self.ck.note("commits", n, {"watermark": after, "timers": {str(b): t for b, t in
                                                                   timers.items()},
                                    "held": self.held, "state": state,
                                    "swept": self.swept})  # fmt: skip
        self.ck.clear_work(n)
        self.compact(n)
        lap("commit")
        phases = ", ".join(f"{k} {v:.1f}s" for k, v in took.items())
        print(f"lull: batch {n}: {len(files)} files, {events} rows, {dropped} duplicates, "
              f"{len(run)} buckets stepped; {phases}", file=sys.stderr)  # fmt: skip
        print(f"lull: batch {n} state: {json.dumps(state)}", file=sys.stderr)
        return after, timers

    def state_size(self) -> dict[str, int]:
        """What the checkpoint holds after a batch: the buckets' profiles, open and
        concluded sessions and state bytes, the message ids kept (R6) and their bytes."""
        b, ids = self.held["buckets"].values(), self.held["ids"].values()
        size = {k: sum(v[i] for v in b) for i, k in enumerate(HELD)}
        return {
            "profiles": size["profiles"],
            "open_sessions": size["open"],
            "concluded_sessions": size["concluded"],
            "state_bytes": size["bytes"],
            "ids": sum(v[0] for v in ids),
            "ids_bytes": sum(v[1] for v in ids),
            "log_files": self.ck.log_files(),
        }

    def compact(self, n: int) -> None:
        """Every KEEP batches: the files of the batches more than KEEP behind go into
        `taken.json` (less those gone from the source directory), and their
        `offsets/` and `commits/` are removed."""
        if n % KEEP or n < KEEP:
            return
        present = set(self.listing())
        self.taken &= present
        self.ck.fold(n - KEEP, sorted(self.taken))
