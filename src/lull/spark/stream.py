"""`lull spark stream`: the session rules on Spark, as micro-batches.

Over a landing directory or an ingest log (`--landing`, `--log`), Spark schedules lull's
Python tasks over each micro-batch's new files and no row goes through the JVM
(`driver.py`, `tasks.py`): parse each file once and cut its rows by bucket of profiles,
drop duplicates (R6) by a pass over the message ids alone, then each bucket through
lull's vectorized engine from its state in the checkpoint. Over Kafka
(`--kafka-bootstrap`, untested) the Spark-native plan below is kept: parsed rows ->
watermark on received_at -> `dropDuplicates` -> `applyInPandasWithState` keyed by bucket
(`sessionizer`, `bucket`).

Either way, each micro-batch N writes `<output>/batch=N/` under `--out`, again the same
if it is run again after a restart, so nothing is written twice: `events/` (with
session_id, late), `sessions/` (concluded sessions, each once), `concluded/` (their
Session Concluded events), `open/` (snapshots of open sessions: the latest per
session_id not in `sessions/` is still open) and `rejected/` (lines that are not valid
events, with the reason).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from lull.model import DEFAULT_EXCLUDED, DEFAULT_TIMEOUT_MS, Settings
from lull.spark.sink import Sink

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# Spark drops rows older than the watermark before an operator with event-time timeouts.
# R5 decides lateness itself, from the profile's sessions, so no row may be dropped: the
# keyed step sees the watermark's column only as this constant, which is never behind.
# (The watermark itself still follows received_at, set upstream.)
_NEVER_LATE_MS = 7_258_118_400_000  # 2200-01-01
# Profiles are keyed by a bucket: Spark calls Python once per bucket per micro-batch (and
# its per-key cost is paid per bucket). A few per state partition keeps both cores busy.
DEFAULT_BUCKETS = 32
# R6: a repeat is recognised if it comes within this long of the first copy (at least).
DEFAULT_WINDOW_MS = 7 * 24 * 3600 * 1000
# R5 over a long run: concluded sessions are kept this long past their profile's clock
# (`bucket.forget`); an event that arrives later than this after its time, and before
# its profile's horizon, is late without a look at them (--late-horizon).
DEFAULT_LATE_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """What the job needs besides Spark: where to read and write, and the settings."""

    out: str
    checkpoint: str
    landing: str | None = None
    log: str | None = None  # an ingest log directory: its closed segments
    project: str = "default"  # the project whose events are taken from the log
    kafka_bootstrap: str | None = None
    kafka_topic: str | None = None
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    excluded: tuple[str, ...] = DEFAULT_EXCLUDED
    timezone: str = "UTC"  # for the board's days (`lull board --from-parquet OUT`)
    trigger_ms: int = 5000
    until_idle: bool = False
    partitions: int | None = None  # of the state; fixed by the checkpoint's first run
    buckets: int = DEFAULT_BUCKETS  # of profiles, one keyed state each; fixed likewise
    max_files: int | None = None  # per micro-batch (--landing, --log)
    window_ms: int = DEFAULT_WINDOW_MS  # R6: how long message ids are kept (--landing, --log)
    late_ms: int | None = DEFAULT_LATE_MS  # the late horizon (--landing, --log; None: none)


def sessionized(spark: SparkSession, config: StreamConfig) -> DataFrame:
    """Kafka: the streaming frame of the keyed step's rows (it writes the outputs)."""
    from pyspark.sql import functions as F
    from pyspark.sql.streaming.state import GroupStateTimeout

    from lull.spark.landing import REJECTED_KEY, read_kafka
    from lull.spark.sessionizer import OUTPUT_SCHEMA, REJECTED_BUCKET, STATE_SCHEMA, Sessionizer

    parsed = read_kafka(spark, config.kafka_bootstrap or "", config.kafka_topic or "")
    clocked = parsed.withColumn("arrived", F.timestamp_millis("r")).withWatermark(
        "arrived", "0 seconds"
    )
    never = F.timestamp_millis(F.lit(_NEVER_LATE_MS)).alias(
        "arrived", metadata={"spark.watermarkDelayMs": 0}
    )
    # (No filter here for the clock lines: Spark would push it below the watermark.)
    unique = clocked.select(*parsed.columns, never).dropDuplicates(["dedupe"])
    # Spark's xxhash64 (seed 42) is fixed, so a profile stays in its bucket across restarts
    bucket = F.when(F.col("key") == REJECTED_KEY, F.lit(REJECTED_BUCKET)).otherwise(
        F.pmod(F.xxhash64("key"), F.lit(config.buckets))
    )
    keyed = unique.withColumn("bucket", bucket.cast("int")).drop("dedupe", "key")
    return keyed.groupBy("bucket").applyInPandasWithState(
        Sessionizer(config.timeout_ms, config.excluded, config.buckets, _where(config.out)),
        OUTPUT_SCHEMA,
        STATE_SCHEMA,
        "append",
        GroupStateTimeout.EventTimeTimeout,
    )


def _where(out: str) -> str:
    """--out as the executors must see it: a local folder as an absolute path (Python
    workers need not run in the driver's directory)."""
    return out if "://" in out else str(Path(out).resolve())


class BatchWriter:
    """foreachBatch: batch N's keyed step writes its outputs itself (`sink`); here its
    folders are cleared first (Spark may be running batch N again after a restart: it
    then writes the same rows) and its events numbered once it is done."""

    def __init__(self, out: str) -> None:
        self.sink = Sink(out)
        self.took: dict[int, tuple[float, float]] = {}  # batch -> seconds (run, numbering)

    def __call__(self, frame: DataFrame, batch_id: int) -> None:
        started = time.perf_counter()
        self.sink.clear(batch_id)
        frame.count()  # runs the batch: sources, duplicates, the keyed step
        ran = time.perf_counter()
        self.sink.finish_events(batch_id)
        self.took[batch_id] = (ran - started, time.perf_counter() - ran)


def _query_conf(spark: SparkSession, config: StreamConfig) -> dict[str, str]:
    """Settings of Spark for this query. On a local master: one state partition per core
    (a partition is a task in every micro-batch, timers' included: on 2 cores, 8 of them
    took twice as long as 2), and input files split into a few partitions per core (the
    parsing is Python: 20 files went to 3 tasks, one of them alone on a core)."""
    cores = spark.sparkContext.defaultParallelism
    local = str(spark.sparkContext.master).startswith("local")
    conf: dict[str, str] = {}
    partitions = config.partitions or (cores if local else None)
    if partitions is not None:
        conf["spark.sql.shuffle.partitions"] = str(partitions)  # fixed by the first run
    if local:
        conf["spark.sql.files.minPartitionNum"] = str(2 * cores)
    return conf


def run(config: StreamConfig, master: str | None) -> None:
    """Run the stream: until stopped, or with `until_idle` until what is there is done."""
    from lull.spark.session import spark_context, spark_session

    if "://" not in config.out:  # a local --out: the settings, as the batch job writes them
        settings = Settings(True, config.timeout_ms, config.excluded, config.timezone)
        Path(config.out).mkdir(parents=True, exist_ok=True)
        (Path(config.out) / "settings.json").write_text(json.dumps(settings.as_json()) + "\n")
    if config.kafka_bootstrap:
        run_kafka(spark_session(master, app="lull-stream"), config)
        return
    from lull.spark.driver import Stream

    # every path as the executors must see it (they do not run in the driver's folder)
    config = replace(
        config,
        out=_where(config.out),
        checkpoint=_where(config.checkpoint),
        landing=config.landing and _where(config.landing),
        log=config.log and _where(config.log),
    )
    started = time.perf_counter()
    context = spark_context(master, app="lull-stream")
    print(f"lull: Spark started in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    Stream(context, config).run()


def run_kafka(spark: SparkSession, config: StreamConfig) -> None:
    """Kafka, by Spark's own streaming (see the module docstring)."""
    conf = _query_conf(spark, config)
    before = {key: spark.conf.get(key, None) for key in conf}
    for key, value in conf.items():
        spark.conf.set(key, value)  # for this query; set back at the end
    batches = BatchWriter(_where(config.out))
    writer = (
        sessionized(spark, config)
        .writeStream.foreachBatch(batches)
        .option("checkpointLocation", config.checkpoint)
        .queryName("lull-sessions")
    )
    if config.until_idle:
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=f"{config.trigger_ms} milliseconds")
    try:
        query = writer.start()
        try:
            query.awaitTermination()
        finally:
            if query.isActive:
                query.stop()
            for p in query.recentProgress:  # a line per micro-batch, for the operator
                times = ", ".join(f"{k} {v / 1000:.1f}s" for k, v in p["durationMs"].items())
                ran, numbered = batches.took.get(p["batchId"], (0.0, 0.0))
                print(f"lull: batch {p['batchId']}: {p['numInputRows']} rows; {times} "
                      f"(of addBatch: run {ran:.1f}s, events numbered {numbered:.1f}s)",
                      file=sys.stderr)  # fmt: skip
    finally:
        for key, old in before.items():
            if old is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, old)
