"""`lull spark resessionize`: R2 over a whole event history on Spark, set-wise.

The same answer as `lull resessionize` (src/lull/resessionize.py): R1 as a re-sessionization
admits events (sessions taken as on, late events included), each profile's eligible events
ordered by (event time, arrival), a gap of at least the timeout starts a session, and the
session id derived from the profile and the first event (`lull.model.session_id_for`).

Built from DataFrame functions only (no Python on the executors): one sort by (profile,
eligibility, time, arrival), `lag` for the gaps, a running `last(..., ignorenulls)` to
carry each session's first event down its rows; the sessions are then an aggregation of
the events written, by session id. Input: Parquet of canonical events, as
`lull export events --format parquet` writes them. Output under OUT:

- `events/`: every input event (Session Concluded ones excepted: they are rebuilt) with
  its `session_id` (null where R1 gives none) and `late` false;
- `sessions/`: the columns of `lull export sessions`;
- `concluded/`: the Session Concluded events of the concluded sessions (R4), shaped as
  `lull export events` shows them;
- `settings.json`: the settings used (the board reads its time zone from it).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lull.errors import BadInput
from lull.model import SESSION_CONCLUDED, Settings

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

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
_ISO = "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'"


@dataclass(slots=True)
class Result:
    """What a run wrote, and how long it took."""

    out: str
    seconds: float

    def as_json(self) -> dict[str, object]:
        return {"out": self.out, "seconds": round(self.seconds, 3)}


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
    started = time.perf_counter()
    target = Path(out)
    if target.exists() and any(target.iterdir()):
        raise BadInput(f"--out {out}: the directory is not empty; choose a new one")
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    # PySpark logs a failed query as JSON on stderr; the error below says it in one line.
    logging.getLogger("DataFrameQueryContextLogger").setLevel(logging.CRITICAL)
    progress(f"reading {events}")
    frame = read_events(spark, events)
    marked = sessionized(
        frame.withColumn("eligible", _eligible(frame, settings)), settings.timeout_ms
    )
    try:
        progress("writing events/ (sorting by profile and time)")
        _events_out(marked).write.parquet(f"{out}/events")
        # Sessions from what was written: an aggregation by session (no second sort).
        progress("writing sessions/")
        written = spark.read.parquet(f"{out}/events")
        sessions_of(written, settings.timeout_ms, now).write.parquet(f"{out}/sessions")
        progress("writing concluded/")
        written = spark.read.parquet(f"{out}/sessions")
        concluded_events(written, settings.timeout_ms).write.parquet(f"{out}/concluded")
    except Exception as e:  # bad values (e.g. a time that is not one) fail in a task
        raise BadInput(f"--events {events}: the job failed: {_reason(e)}") from None
    (target / "settings.json").write_text(json.dumps(settings.as_json(), indent=2) + "\n")
    return Result(out, time.perf_counter() - started)


def read_events(spark: SparkSession, path: str) -> DataFrame:
    """The Parquet events at `path`, with `ts_ms` (epoch ms, capped at `received_at` as R5
    says) and `arrival` (the `seq` column, else the files' row order) added."""
    from pyspark.sql import functions as F

    if not Path(path).exists() and "://" not in path:
        raise BadInput(f"--events {path}: no such file or directory")
    # A file that is not Parquet fails in a task, which Spark logs with a stack trace:
    # quiet while reading the footers, and say it in one line.
    spark.sparkContext.setLogLevel("OFF")
    try:
        frame = spark.read.parquet(path)
    except Exception as e:  # AnalysisException, or Py4JJavaError from the task
        raise BadInput(f"--events {path}: not readable as Parquet ({_reason(e)})") from None
    finally:
        spark.sparkContext.setLogLevel("ERROR")
    types = dict(frame.dtypes)
    missing = [c for c in REQUIRED if c not in types]
    if missing:
        raise BadInput(
            f"--events {path}: missing column(s) {', '.join(missing)} "
            f"(found: {', '.join(types) or 'none'})"
        )
    for name in ("message_id", "profile_id", "name", "source"):
        if types[name] != "string":
            raise BadInput(f"--events {path}: column {name} is {types[name]}, expected string")
    # Times are written as ISO text (as `lull export` does): given text passes through
    # unless R5's cap moved it.
    given = _epoch_ms(F.col("ts"), types["ts"], path, "ts")
    ts_ms, shown = given, F.col("ts") if types["ts"] == "string" else iso(given)
    received: Column = _null("string")
    if "received_at" in types:
        received_ms = _epoch_ms(F.col("received_at"), types["received_at"], path, "received_at")
        ts_ms = F.least(given, F.coalesce(received_ms, given))
        shown = F.when(ts_ms == given, shown).otherwise(iso(ts_ms))
        string = types["received_at"] == "string"
        received = F.col("received_at") if string else iso(received_ms)
    if "seq" in types and types["seq"] not in ("bigint", "int"):
        raise BadInput(f"--events {path}: column seq is {types['seq']}, expected an integer")
    # Without `seq`, the rows' order is the arrival order, and is written as `seq`.
    arrival = F.col("seq").cast("bigint") if "seq" in types else F.monotonically_increasing_id()
    properties = F.col("properties") if "properties" in types else _null("string")
    if types.get("properties", "string") != "string":
        properties = F.to_json("properties")
    # All computed from the columns as read (withColumns evaluates them side by side).
    added = {
        "ts_ms": ts_ms,
        "ts": shown,
        "received_at": received,
        "arrival": arrival,
        "properties": properties,
    }
    return frame.where(F.col("name") != SESSION_CONCLUDED).withColumns(added)


def sessionized(events: DataFrame, timeout: int) -> DataFrame:
    """The events with their `session_id` (null unless `eligible`).

    Eligible and other events are apart in the window's partitions (by profile and
    eligibility), so the others neither start nor extend sessions, and one scan and one
    shuffle serve all events."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    by_time = Window.partitionBy("profile_id", "eligible").orderBy("ts_ms", "arrival")
    so_far = by_time.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    previous = F.lag("ts_ms").over(by_time)
    starts = events.withColumn("starts", previous.isNull() | (F.col("ts_ms") - previous >= timeout))
    first = F.last(F.when(F.col("starts"), F.col("message_id")), ignorenulls=True).over(so_far)
    session_id = F.md5(F.concat(F.col("profile_id"), F.lit("\x1f"), first))
    return starts.withColumn("session_id", F.when(F.col("eligible"), session_id))


def sessions_of(events: DataFrame, timeout: int, now: int) -> DataFrame:
    """The sessions of events that carry their `session_id`, as `lull export sessions`
    has them. The source is the first event's (by time, then arrival: `seq`); a
    profile's last session is concluded once its due time has passed, the others are."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    ts_ms = F.unix_millis(F.to_timestamp("ts"))
    grouped = (
        events.where(F.col("session_id").isNotNull())
        .withColumn("ts_ms", ts_ms)
        .groupBy("profile_id", "session_id")
        .agg(
            F.min("ts_ms").alias("first_ms"),
            F.max("ts_ms").alias("last_ms"),
            F.count("*").alias("events"),
            F.min_by("source", F.struct("ts_ms", "seq")).alias("source"),
        )
    )
    last_ms, first_ms = F.col("last_ms"), F.col("first_ms")
    latest = last_ms == F.max("last_ms").over(Window.partitionBy("profile_id"))
    return grouped.select(
        "session_id",
        "profile_id",
        iso(first_ms).alias("first_ts"),
        iso(last_ms).alias("last_ts"),
        F.floor((last_ms - first_ms) / 1000).cast("long").alias("length_s"),
        F.col("events").cast("long").alias("events"),
        "source",
        (~latest | (last_ms + timeout <= F.lit(now))).alias("concluded"),
    )


def concluded_events(sessions: DataFrame, timeout: int) -> DataFrame:
    """R4's Session Concluded events of these sessions, as `lull export events` has them:
    at the last event's time, raised at its due time, `sc-` + the id as message id."""
    from pyspark.sql import functions as F

    props = F.to_json(
        F.struct(F.col("length_s").alias("Session Length"), F.col("session_id").alias("Session ID"))
    )
    return sessions.where("concluded").select(
        F.concat(F.lit("sc-"), F.col("session_id")).alias("message_id"),
        "profile_id",
        F.lit(SESSION_CONCLUDED).alias("name"),
        F.col("last_ts").alias("ts"),
        "source",
        iso(F.unix_millis(F.to_timestamp("last_ts")) + timeout).alias("received_at"),
        props.alias("properties"),
        "session_id",
        F.lit(False).alias("late"),
        _null("bigint").alias("seq"),
    )


def _events_out(frame: DataFrame) -> DataFrame:
    from pyspark.sql import functions as F

    done = {"late": F.lit(False), "seq": F.col("arrival")}
    return frame.withColumns(done).select(*EVENT_COLUMNS)


def _eligible(frame: DataFrame, settings: Settings) -> Column:
    """R1 as a re-sessionization applies it (`eligible_sql(..., as_if_enabled=True)`)."""
    from pyspark.sql import functions as F

    excluded = F.col("name").isin(list(settings.excluded)) if settings.excluded else F.lit(False)
    return (F.col("source") != "api") & ~excluded


def _epoch_ms(col: Column, dtype: str, path: str, name: str) -> Column:
    """A time column as epoch ms: ISO-8601 text, a timestamp, or integer epoch ms."""
    from pyspark.sql import functions as F

    if dtype == "string":
        return F.unix_millis(F.to_timestamp(col))
    if dtype in ("timestamp", "timestamp_ntz"):
        return F.unix_millis(col.cast("timestamp"))
    if dtype in ("bigint", "int"):
        return col.cast("bigint")
    raise BadInput(
        f"--events {path}: column {name} is {dtype}, expected ISO-8601 text, a timestamp "
        "or epoch milliseconds"
    )


def iso(ms: Column) -> Column:
    """Epoch ms as ISO-8601 text, as `lull export` writes times."""
    from pyspark.sql import functions as F

    return F.date_format(F.timestamp_millis(ms), _ISO)


def _null(dtype: str) -> Column:
    from pyspark.sql import functions as F

    return F.lit(None).cast(dtype)


def _reason(e: Exception) -> str:
    """The innermost cause's message, on one line."""
    causes = [line for line in str(e).splitlines() if "Exception: " in line]
    text = causes[-1].split("Exception: ", 1)[1] if causes else str(e).strip()
    return (text.splitlines() or [type(e).__name__])[0][:200]
