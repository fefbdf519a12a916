"""Bulk NDJSON -> a validated staging table, parsed and checked set-wise by DuckDB.

When the set-wise check finds a fault (or DuckDB cannot parse the file), the exact
per-line validator (`records.find_first_error`) names the line and the field.
"""

from __future__ import annotations

import duckdb

from lull.errors import BadInput
from lull.ingest.records import MAX_ID, MAX_NAME, find_first_error
from lull.model import ISO_PATTERN, MAX_EPOCH_MS, SESSION_CONCLUDED, SOURCES


def _time(col: str) -> str:
    return f"""CASE
        WHEN json_type({col}) IN ('UBIGINT', 'BIGINT') THEN TRY_CAST({col} AS BIGINT)
        WHEN json_type({col}) = 'VARCHAR' AND regexp_full_match({col}->>'$', '{ISO_PATTERN}')
            THEN epoch_ms(TRY_CAST({col}->>'$' AS TIMESTAMPTZ))
    END"""


def _given(col: str) -> str:
    return f"({col} IS NOT NULL AND json_type({col}) <> 'NULL')"


def _text(col: str) -> str:
    return f"CASE WHEN json_type({col}) = 'VARCHAR' THEN {col}->>'$' END"


def _ok_text(col: str, limit: int) -> str:
    return f"({col} IS NOT NULL AND length({col}) BETWEEN 1 AND {limit})"


def _ok_time(col: str, given: str, required: bool) -> str:
    ok = f"({col} IS NOT NULL AND {col} BETWEEN 0 AND {MAX_EPOCH_MS})"
    return ok if required else f"(NOT {given} OR {ok})"


_SOURCES = ", ".join(f"'{s}'" for s in SOURCES)

_STAGE = f"""
CREATE OR REPLACE TEMP TABLE stage AS
WITH raw AS (
    SELECT ordinality - 1 AS rec, *
    FROM read_json('{{path}}', format = 'newline_delimited', columns = {{
        message_id: 'JSON', profile_id: 'JSON', name: 'JSON', ts: 'JSON', source: 'JSON',
        received_at: 'JSON', sent_at: 'JSON', properties: 'JSON'}}) WITH ORDINALITY
), parsed AS (
    SELECT rec,
        {_text("message_id")} AS message_id,
        {_text("profile_id")} AS profile_id,
        {_text("name")} AS name,
        {_text("source")} AS source,
        {_time("ts")} AS ts_ms,
        {_time("received_at")} AS recv_ms, {_given("received_at")} AS has_recv,
        {_time("sent_at")} AS sent_ms, {_given("sent_at")} AS has_sent,
        CASE WHEN {_given("properties")} THEN properties END AS properties,
        (NOT {_given("properties")} OR json_type(properties) = 'OBJECT') AS props_ok
    FROM raw
)
SELECT rec, message_id, profile_id, name, source,
    coalesce(recv_ms, {{now}}) AS r,
    least(ts_ms + coalesce(coalesce(recv_ms, {{now}}) - sent_ms, 0), coalesce(recv_ms, {{now}}))
        AS ts_eff,
    coalesce(properties, '{{}}'::JSON) AS properties,
    coalesce({_ok_text("message_id", MAX_ID)} AND {_ok_text("profile_id", MAX_ID)}
    AND {_ok_text("name", MAX_NAME)} AND name <> '{SESSION_CONCLUDED}'
    AND coalesce(source IN ({_SOURCES}), false) AND props_ok
    AND {_ok_time("ts_ms", "", True)} AND {_ok_time("recv_ms", "has_recv", False)}
    AND {_ok_time("sent_ms", "has_sent", False)}, false) AS ok
FROM parsed
"""


def stage(con: duckdb.DuckDBPyConnection, path: str, now: int) -> int:
    """Load and check `path` into the temp table `stage`; returns its number of records.

    R5's clock fix is applied here: `r` is when the event arrived (`received_at`, else
    `now`) and `ts_eff` its event time corrected for the client's skew and capped at `r`.

    Raises BadInput naming the first bad line and field; the caller's transaction then
    rolls back, so a bad file changes nothing.
    """
    try:
        con.execute(
            _STAGE.replace("{now}", str(int(now))).replace("{path}", path.replace("'", "''"))
        )
    except duckdb.Error as e:
        detail = find_first_error(path)
        raise BadInput(f"{path}: {detail or _short(e)}") from None
    row = con.execute("SELECT count(*), min(rec) FILTER (WHERE NOT ok) FROM stage").fetchone()
    assert row is not None
    total, bad = int(row[0]), row[1]
    if bad is not None:
        detail = find_first_error(path, int(bad))
        raise BadInput(f"{path}: {detail or f'record {int(bad) + 1} is not a valid event'}")
    return total


def _short(e: Exception) -> str:
    return str(e).splitlines()[0]
