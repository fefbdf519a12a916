"""What the stream reads: the closed segments of an ingest log (`lull serve` writes them),
or canonical NDJSON lines (a landing directory, or Kafka messages), turned into rows,
each either a valid event or a rejected line with its reason.

Log rows were validated by the server that acknowledged them: the stream takes the
events (kind 0) of its project, with R5's clock fix applied as the live server applies
it, and the clock rows (kind 3) that ingest-only servers append while they are quiet.

Lines are checked by lull's own validator (`ingest.records.to_record`), so the stream
accepts exactly what `lull import` accepts, and additionally needs `received_at` (the
stream's clock reads it). A line `{"clock": TIME}` (in `.clock` files: write one while no
events arrive) is no event: it only moves the clock on, so that sessions are concluded
when they fall due even when traffic stops.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import msgspec

from lull.errors import BadInput
from lull.ingest.records import corrected_time, corrected_times, to_record
from lull.model import parse_time

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
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
COLUMNS = [c.split()[0] for c in PARSED_SCHEMA.split(", ")]
_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


def parse_line(text: str, origin: str, pos: int) -> dict[str, Any]:
    """One line -> a row: the event (time corrected, R5) or the reason it is rejected.

    `origin` and `pos` (file and line, or Kafka partition and offset) order the events
    that arrive at the same instant, and name a rejected line."""
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
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

    frame = pd.DataFrame(rows, columns=COLUMNS)
    for c in ("ts", "r", "pos"):
        frame[c] = frame[c].astype("Int64")
    return frame


def _split_messages(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """Kafka messages (value, origin, pos): one event each."""
    for frame in frames:
        rows = [
            parse_line(str(text), str(origin), int(pos))
            for text, origin, pos in zip(frame["value"], frame["origin"], frame["pos"], strict=True)
        ]
        yield _frame(rows)


# The `kind` of an ingest-log row: an event; a clock row (no event: it moves the stream's
# clock on, for every project; ingest-only servers append one while they are quiet).
LOG_EVENT, LOG_CLOCK = 0, 3


def segment_rows(project: str, path: str, data: pa.Buffer) -> pa.Table:
    """A closed segment's rows of `project` (and its clock rows) as parsed rows, column by
    column (the segment is Arrow already).

    `origin` is the segment's path and `pos` the row's number in it, so rows that arrive
    at the same instant are taken in (writer, segment, row) order. A damaged frame (which
    a closed segment should never hold) is skipped, its events lost, and said in a
    rejected row (`pos`: the frame's byte offset); the stream goes on."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from lull.store.log import read_segment

    schema = pa.schema([(c, pa.int64() if c in ("ts", "r", "pos") else pa.string())
                        for c in COLUMNS])  # fmt: skip
    parts: list[pa.Table] = []
    pos = 0
    with warnings.catch_warnings(record=True) as damage:
        warnings.simplefilter("always")
        for _, _, batch in read_segment(path, data=data, on_corrupt="skip"):
            n = batch.num_rows
            at = np.arange(pos + 1, pos + n + 1, dtype=np.int64)
            pos += n
            kind = batch["kind"]
            event = pc.and_(pc.equal(kind, LOG_EVENT), pc.equal(batch["project"], project))
            clock = pc.equal(kind, LOG_CLOCK)
            ev = pa.Table.from_batches([batch]).append_column("pos", pa.array(at)).filter(event)
            r, ts, sent = ev["received_at"], ev["ts"], ev["sent_at"]
            fixed = corrected_times(ts, sent, r)  # R5's clock fix
            k = ev.num_rows
            parts.append(pa.table(
                {"key": ev["profile_id"], "dedupe": ev["message_id"],
                 "message_id": ev["message_id"], "profile_id": ev["profile_id"],
                 "name": ev["name"], "ts": fixed, "source": ev["source"], "r": r,
                 "properties": ev["properties"], "origin": pa.array([path] * k, pa.string()),
                 "pos": ev["pos"], "error": pa.nulls(k, pa.string()),
                 "raw": pa.nulls(k, pa.string())}, schema=schema,
            ))  # fmt: skip
            ticks = batch["received_at"].filter(clock)
            m = len(ticks)
            if m:
                parts.append(pa.table(
                    {"key": [REJECTED_KEY] * m, "dedupe": [CLOCK] * m,
                     "message_id": pa.nulls(m, pa.string()), "profile_id": pa.nulls(m, pa.string()),
                     "name": pa.nulls(m, pa.string()), "ts": pa.nulls(m, pa.int64()),
                     "source": pa.nulls(m, pa.string()), "r": ticks,
                     "properties": pa.nulls(m, pa.string()), "origin": [path] * m,
                     "pos": pa.array(at).filter(clock), "error": pa.nulls(m, pa.string()),
                     "raw": pa.nulls(m, pa.string())}, schema=schema,
                ))  # fmt: skip
    lost: dict[str, list[Any]] = {c: [] for c in COLUMNS}
    for w in damage:
        text = str(w.message)
        where = text.partition(" at byte ")[2].partition(" ")[0]
        row = {"key": REJECTED_KEY, "dedupe": f"\x00{path}:{where}", "origin": path,
               "pos": int(where) if where.isdigit() else -1,
               "error": f"{text}; its events are lost", "raw": ""}  # fmt: skip
        for c, column in lost.items():
            column.append(row.get(c))
    parts.append(pa.Table.from_pydict(lost, schema=schema))
    return pa.concat_tables(parts)


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
