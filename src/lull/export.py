"""`lull export`: events and sessions as NDJSON, CSV or Parquet, written by DuckDB."""

from __future__ import annotations

import sys

import duckdb

from lull.errors import BadInput
from lull.model import MAX_EPOCH_MS, MAX_ID, MAX_NAME, MIN_EPOCH_MS, SESSION_CONCLUDED

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


# What an event may hold (model.py), field by field, as SQL: a store made by an older lull
# may hold events that the import of its export would refuse.
_OUTSIDE = {
    "message_id": f"length(message_id) NOT BETWEEN 1 AND {MAX_ID}",
    "profile_id": f"length(profile_id) NOT BETWEEN 1 AND {MAX_ID}",
    "name": f"length(name) NOT BETWEEN 1 AND {MAX_NAME}",
    "ts": f"ts NOT BETWEEN {MIN_EPOCH_MS} AND {MAX_EPOCH_MS}",
    "received_at": f"received_at NOT BETWEEN {MIN_EPOCH_MS} AND {MAX_EPOCH_MS}",
}


def outside(con: duckdb.DuckDBPyConnection, pid: int) -> list[str]:
    """What of project `pid`'s stored events lies outside what an event may hold (so that
    `lull import` of the export would refuse it): one line per field, with a count and
    an example message id. Empty for anything lull stores now."""
    columns = ", ".join(
        f"count(*) FILTER (WHERE {test}), min(message_id) FILTER (WHERE {test})"
        for test in _OUTSIDE.values()
    )
    row = con.execute(
        f"SELECT {columns} FROM events WHERE project_id = ? AND name <> ?",
        [int(pid), SESSION_CONCLUDED],
    ).fetchone()
    found = []
    for i, field in enumerate(_OUTSIDE):
        count, example = (row[2 * i], row[2 * i + 1]) if row else (0, None)
        if count:
            found.append(
                f"{count} event(s) with a {field} outside what lull accepts now "
                f"(e.g. message_id {str(example)[:80]!r}): `lull import` will refuse them"
            )
    return found


def export(con: duckdb.DuckDBPyConnection, pid: int, what: str, target: str, fmt: str) -> None:
    """Write `what` (events|sessions) of project `pid` to the file `target`. Events that an
    older lull stored outside what an event may hold are written as they are, and a
    warning on stderr says which (`outside`)."""
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
    if what == "events":
        for line in outside(con, pid):
            print(f"lull: warning: {line}", file=sys.stderr, flush=True)
