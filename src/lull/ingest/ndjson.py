"""Bulk NDJSON -> events, parsed, checked and inserted set-wise by DuckDB.

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
_BAD = "lull-bad-record "

_PARSED = f"""
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
    AND {_ok_time("sent_ms", "has_sent", False)}
    AND ts_ms + coalesce(coalesce(recv_ms, {{now}}) - sent_ms, 0) >= 0, false) AS ok
FROM parsed
"""

# One pass over the file: parse, check, insert. A bad record stops the statement
# (error()), so the transaction stores nothing.
_INSERT = f"""
INSERT INTO events
SELECT {{pid}}, {{seq0}} + p.rec, p.message_id, p.profile_id, p.name, p.ts_eff, p.source, p.r,
       p.properties
FROM ({_PARSED}) p
WHERE CASE WHEN p.ok THEN true ELSE error('{_BAD}' || p.rec) END
"""

# R6: of the rows just inserted (seq >= seq0), drop those whose message_id was stored
# before, or came earlier in the same file.
_DEDUPE = """
DELETE FROM events WHERE project_id = {pid} AND seq >= {seq0} AND seq IN (
    SELECT seq FROM (
        SELECT seq, row_number() OVER (PARTITION BY message_id ORDER BY seq) AS k
        FROM events
        WHERE project_id = {pid} AND seq >= {seq0} AND message_id IN (
            SELECT message_id FROM events WHERE project_id = {pid} AND seq >= {seq0}
            GROUP BY 1 HAVING count(*) > 1))
    WHERE k > 1
    UNION ALL
    SELECT n.seq FROM events n SEMI JOIN (
        SELECT message_id FROM events WHERE project_id = {pid} AND seq < {seq0}) o
        USING (message_id)
    WHERE n.project_id = {pid} AND n.seq >= {seq0})
"""


def load(con: duckdb.DuckDBPyConnection, pid: int, path: str, now: int, seq0: int) -> int:
    """Parse, check and insert `path`'s events as seq0 + record number; returns the
    number of records. Then drops the duplicates (R6): see `dedupe`.

    R5's clock fix is applied here: `received_at` is when the event arrived (else
    `now`) and `ts` its event time corrected for the client's skew and capped at that.

    Raises BadInput naming the first bad line and field; the caller's transaction then
    rolls back, so a bad file changes nothing.
    """
    sql = (
        _INSERT.replace("{now}", str(int(now)))
        .replace("{path}", path.replace("'", "''"))
        .replace("{pid}", str(int(pid)))
        .replace("{seq0}", str(int(seq0)))
    )
    try:
        row = con.execute(sql).fetchone()
    except duckdb.Error as e:
        text = str(e)
        bad = text.split(_BAD, 1)[1].split()[0] if _BAD in text else None
        start = int(bad) if bad is not None and bad.isdigit() else 0
        detail = find_first_error(path, start, now)
        raise BadInput(f"{path}: {detail or _short(e)}") from None
    return int(row[0]) if row else 0


def dedupe(con: duckdb.DuckDBPyConnection, pid: int, seq0: int) -> int:
    """R6 for rows seq >= seq0: returns how many were dropped as duplicates."""
    row = con.execute(
        _DEDUPE.replace("{pid}", str(int(pid))).replace("{seq0}", str(int(seq0)))
    ).fetchone()
    return int(row[0]) if row else 0


def _short(e: Exception) -> str:
    return str(e).splitlines()[0]
