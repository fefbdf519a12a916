"""`lull export`: events and sessions as NDJSON, CSV or Parquet, written by DuckDB."""

from __future__ import annotations

import duckdb

from lull.errors import BadInput

FORMATS = ("ndjson", "csv", "parquet")

_ISO = "strftime(epoch_ms({col}), '%Y-%m-%dT%H:%M:%S.%gZ')"

EVENTS = f"""
SELECT message_id, profile_id, name, {_ISO.format(col="ts")} AS ts, source,
       {_ISO.format(col="received_at")} AS received_at, properties, session_id, late
FROM all_events WHERE project_id = {{pid}}
ORDER BY seq NULLS LAST, received_at, message_id
"""

SESSIONS = f"""
SELECT session_id, profile_id, {_ISO.format(col="first_ts")} AS first_ts,
       {_ISO.format(col="last_ts")} AS last_ts, (last_ts - first_ts) // 1000 AS length_s,
       events, source, concluded
FROM sessions WHERE project_id = {{pid}}
ORDER BY first_ts, profile_id
"""


def export(con: duckdb.DuckDBPyConnection, pid: int, what: str, target: str, fmt: str) -> None:
    """Write `what` (events|sessions) of project `pid` to the file `target`."""
    if fmt not in FORMATS:
        raise BadInput(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    query = {"events": EVENTS, "sessions": SESSIONS}[what].format(pid=int(pid))
    if fmt == "parquet" and what == "events":
        # JSON as text; and `seq`, the arrival order, which breaks ties in event time
        # (R2) when the file feeds another engine (`lull spark resessionize`).
        query = query.replace("properties,", "properties::VARCHAR AS properties,")
        query = query.replace(", late\nFROM", ", late, seq\nFROM")
    options = {"ndjson": "FORMAT json", "csv": "FORMAT csv, HEADER", "parquet": "FORMAT parquet"}[
        fmt
    ]
    escaped = target.replace("'", "''")
    con.execute(f"COPY ({query}) TO '{escaped}' ({options})")
