"""What the stream reads: canonical NDJSON lines (a landing directory, or Kafka messages)
turned into rows, each either a valid event or a rejected line with its reason.

Lines are checked by lull's own validator (`ingest.records.to_record`), so the stream
accepts exactly what `lull import` accepts, and additionally needs `received_at` (the
stream's clock reads it). A line `{"clock": TIME}` (in `.clock` files, which `lull serve
--events-sink` writes while no events arrive) is no event: it only moves the clock on, so
that sessions are concluded when they fall due even when traffic stops.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import msgspec

from lull.errors import BadInput
from lull.ingest.records import corrected_time, to_record
from lull.model import parse_time

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

# The key of rejected rows and clock lines: a profile id is never empty.
REJECTED_KEY = ""
# The dedupe key of every clock line: they only move the watermark, which is upstream of
# the duplicates' step, so one of them at most goes on from there (and is not output).
CLOCK = "\x00clock"

PARSED_SCHEMA = (
    "key string, dedupe string, message_id string, profile_id string, name string, "
    "ts long, source string, r long, properties string, origin string, pos long, "
    "error string, raw string"
)
_COLUMNS = [c.split()[0] for c in PARSED_SCHEMA.split(", ")]
_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


def parse_line(text: str, origin: str, pos: int) -> dict[str, Any]:
    """One line -> a row: the event (time corrected, R5) or the reason it is rejected.

    `origin` and `pos` (file and line, or Kafka partition and offset) order the events
    that arrive at the same instant, and name a rejected line."""
    row: dict[str, Any] = dict.fromkeys(_COLUMNS)
    row.update(origin=origin, pos=pos)
    try:
        obj = _decode(text)
        if isinstance(obj, dict) and obj.keys() == {"clock"}:
            when = parse_time(obj["clock"], "field 'clock'")
            row.update(key=REJECTED_KEY, dedupe=CLOCK, r=when)
            return row
        rec = to_record(obj)
        if rec.received_at is None:
            raise BadInput("field 'received_at' is missing: the stream's clock reads it")
    except msgspec.DecodeError as e:
        return _rejected(row, text, f"malformed JSON ({e})")
    except BadInput as e:
        return _rejected(row, text, e.message)
    row.update(
        key=rec.profile_id,
        dedupe=rec.message_id,
        message_id=rec.message_id,
        profile_id=rec.profile_id,
        name=rec.name,
        ts=corrected_time(rec.ts, rec.sent_at, rec.received_at),
        source=rec.source,
        r=rec.received_at,
        properties=_encode(rec.properties).decode(),
    )
    return row


def _rejected(row: dict[str, Any], text: str, reason: str) -> dict[str, Any]:
    row.update(key=REJECTED_KEY, dedupe=f"\x00{row['origin']}:{row['pos']}", error=reason)
    row["raw"] = text[:4096]
    return row


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame(rows, columns=_COLUMNS)
    for c in ("ts", "r", "pos"):
        frame[c] = frame[c].astype("Int64")
    return frame


def _split_files(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """Whole files (value, origin) -> one row per non-blank line (numbered from 1)."""
    for frame in frames:
        rows = []
        for text, origin in zip(frame["value"], frame["origin"], strict=True):
            for number, line in enumerate(str(text).splitlines(), start=1):
                if line.strip():
                    rows.append(parse_line(line, str(origin), number))
        yield _frame(rows)


def _split_messages(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """Kafka messages (value, origin, pos): one event each."""
    for frame in frames:
        rows = [
            parse_line(str(text), str(origin), int(pos))
            for text, origin, pos in zip(frame["value"], frame["origin"], frame["pos"], strict=True)
        ]
        yield _frame(rows)


def read_landing(spark: SparkSession, landing: str) -> DataFrame:
    """A streaming frame of parsed rows from the NDJSON files of a landing directory.

    Each file is read whole (so its lines keep their numbers): landing files are meant to
    be small, a second or so of events each. Files whose names start with `.` or `_` are
    not read (temporary names while a file is written)."""
    from pyspark.sql import functions as F

    files = (
        spark.readStream.format("text")
        .option("wholetext", "true")
        .option("pathGlobFilter", "*.{ndjson,clock}")
        .load(landing)
        .select("value", F.col("_metadata.file_path").alias("origin"))
    )
    return files.mapInPandas(_split_files, PARSED_SCHEMA)


def read_kafka(spark: SparkSession, bootstrap: str, topic: str) -> DataFrame:
    """A streaming frame of parsed rows from a Kafka topic, one event per message.

    Needs the Kafka connector on the classpath (spark-submit --packages
    org.apache.spark:spark-sql-kafka-0-10_2.13:<Spark's version>)."""
    from pyspark.sql import functions as F

    messages = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", bootstrap)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .load()
        .select(
            F.col("value").cast("string").alias("value"),
            F.format_string("kafka:%s:%05d", F.col("topic"), F.col("partition")).alias("origin"),
            F.col("offset").alias("pos"),
        )
    )
    return messages.mapInPandas(_split_messages, PARSED_SCHEMA)
