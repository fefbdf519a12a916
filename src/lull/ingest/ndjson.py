"""Bulk NDJSON -> events, parsed, checked and inserted set-wise by DuckDB.

When the set-wise check finds a fault (or DuckDB cannot parse the file), the exact
per-line validator (`records.find_first_error`) names the line and the field.
"""

from __future__ import annotations

import duckdb
import msgspec
import numpy as np
import numpy.typing as npt

from lull.errors import BadInput
from lull.ingest.records import (
    MAX_ID,
    MAX_NAME,
    MAX_PROPERTIES_DEPTH,
    check_properties,
    find_first_error,
)
from lull.model import ISO_PATTERN, MAX_EPOCH_MS, MAX_EVENT, SESSION_CONCLUDED, SOURCES

# Two readings of a record. The fast one (every import) reads the string fields with
# typed VARCHAR columns, as the anchor of issue 10 does, and the times, properties as
# their JSON text: a time's type is told by its first character (`"` a string, else a
# number), and a string without a backslash is its text between the quotes. A typed
# VARCHAR column also takes a number, `true` or an object, as its text: a string field
# whose text could be one of those (a number's pattern, `true`, `false`, a leading
# `{` or `[`) marks the row *suspect*, and only then is the file read again with those
# fields as JSON text, to tell a string "5" (valid) from a number 5 (refused). So the
# check costs a few string operations a field, not a JSON parse.


def _text(col: str) -> str:
    return f"""CASE WHEN prefix({col}, '"') THEN CASE WHEN contains({col}, '\\')
        THEN {col}::JSON->>'$' ELSE {col}[2:-2] END END"""


def _given(col: str) -> str:
    return f"({col} IS NOT NULL AND {col} <> 'null')"


def _time(col: str) -> str:
    # an integer: digits (a leading minus), no fraction or exponent, within BIGINT
    return f"""CASE
        WHEN prefix({col}, '"') THEN CASE WHEN regexp_full_match({_text(col)}, '{ISO_PATTERN}')
            THEN epoch_ms(TRY_CAST({_text(col)} AS TIMESTAMPTZ)) END
        WHEN NOT (contains({col}, '.') OR contains({col}, 'e') OR contains({col}, 'E'))
            THEN TRY_CAST({col} AS BIGINT)
    END"""


def _ok_text(col: str, limit: int) -> str:
    return f"({col} IS NOT NULL AND length({col}) BETWEEN 1 AND {limit})"


def _ok_time(col: str, given: str, required: bool) -> str:
    ok = f"({col} IS NOT NULL AND {col} BETWEEN 0 AND {MAX_EPOCH_MS})"
    return ok if required else f"(NOT {given} OR {ok})"


_SOURCES = ", ".join(f"'{s}'" for s in SOURCES)
_BAD = "lull-bad-record "
_FIELDS = ("message_id", "profile_id", "name", "ts", "source", "received_at", "sent_at")

_STRINGS = ("message_id", "profile_id", "name")  # (source: only its few names are valid)


def _could_be_other_json(col: str) -> str:
    """Whether a typed VARCHAR value may be a JSON number (as DuckDB writes it), boolean,
    object or array. (The pattern only where the first character is a digit or `-`.)"""
    return f"""(CASE WHEN ascii({col}) BETWEEN 48 AND 57 OR ascii({col}) = 45
        THEN regexp_full_match({col}, '-?[0-9]+(\\.[0-9]*)?([eE][+-]?[0-9]+)?') END
        OR {col} IN ('true', 'false') OR prefix({col}, '{{') OR prefix({col}, '['))"""


def _checks(rec: str, strings: str, extra: str = "") -> str:
    """The SELECT of one record per row: its number `rec`, its values (`r`, `ts_eff`
    after R5's clock fix), `ok`, and `extra` columns. `strings` reads the string fields
    (`message_id` ... `source`) and the given-ness of `session_id` (`has_session`) from
    `raw`'s columns."""
    return f"""
parsed AS (
    SELECT {rec} AS rec, {strings},
        {_time("ts")} AS ts_ms,
        {_time("received_at")} AS recv_ms, {_given("received_at")} AS has_recv,
        {_time("sent_at")} AS sent_ms, {_given("sent_at")} AS has_sent,
        CASE WHEN {_given("properties")} THEN properties END AS properties,
        (NOT {_given("properties")} OR prefix(properties::VARCHAR, '{{')) AS props_ok
    FROM raw
)
SELECT rec, message_id, profile_id, name, source,
    coalesce(name = '{SESSION_CONCLUDED}' AND has_session, false) AS exported_conclusion,
    coalesce(recv_ms, {{now}}) AS r,
    least(ts_ms + coalesce(coalesce(recv_ms, {{now}}) - sent_ms, 0), coalesce(recv_ms, {{now}}))
        AS ts_eff,
    coalesce(properties, '{{}}'::JSON) AS properties,
    coalesce({_ok_text("message_id", MAX_ID)} AND {_ok_text("profile_id", MAX_ID)}
    AND {_ok_text("name", MAX_NAME)} AND (name <> '{SESSION_CONCLUDED}' OR has_session)
    AND coalesce(source IN ({_SOURCES}), false) AND props_ok
    AND {_ok_time("ts_ms", "", True)} AND {_ok_time("recv_ms", "has_recv", False)}
    AND {_ok_time("sent_ms", "has_sent", False)}
    AND ts_ms + coalesce(coalesce(recv_ms, {{now}}) - sent_ms, 0) >= 0, false) AS ok
    {extra}
FROM parsed
"""


_TIMES = ", ".join(f"{f}::VARCHAR AS {f}" for f in ("ts", "received_at", "sent_at"))
_TYPED_STRINGS = "message_id, profile_id, name, source, session_id IS NOT NULL AS has_session"
_SUSPECT_COLUMN = ", " + " OR ".join(_could_be_other_json(f) for f in _STRINGS) + " AS suspect"

# The fast reading (see above): `suspect` rows hold a string that may have been another
# JSON value.
_FAST = f"""
WITH raw AS (
    SELECT message_id, profile_id, name, source, session_id, {_TIMES}, properties
    FROM read_json('{{path}}', format = 'newline_delimited', columns = {{
        message_id: 'VARCHAR', profile_id: 'VARCHAR', name: 'VARCHAR', ts: 'JSON',
        source: 'VARCHAR', received_at: 'JSON', sent_at: 'JSON', properties: 'JSON',
        session_id: 'VARCHAR'}})
), {_checks("NULL", _TYPED_STRINGS, _SUSPECT_COLUMN)}
"""

_EXACT_STRINGS = ", ".join(f"{_text(f)} AS {f}" for f in (*_STRINGS, "source")) + ", has_session"

# The exact reading: every field as its JSON text (for a suspect file, and to find the
# first bad record after a failure), the records numbered (`rec`).
_PARSED = f"""
WITH raw AS (
    SELECT ordinality - 1 AS n, {", ".join(f"{f}::VARCHAR AS {f}" for f in _FIELDS)},
        properties, {_given("session_id")} AS has_session
    FROM read_json('{{path}}', format = 'newline_delimited', columns = {{
        message_id: 'JSON', profile_id: 'JSON', name: 'JSON', ts: 'JSON', source: 'JSON',
        received_at: 'JSON', sent_at: 'JSON', properties: 'JSON', session_id: 'JSON'}})
        WITH ORDINALITY
), {_checks("n", _EXACT_STRINGS)}
"""

# One pass over the file: parse, check, insert. A bad record stops the statement
# (error()), so the transaction stores nothing. Numbering the records in the same pass
# (WITH ORDINALITY) costs a third of it, so the rows go in unnumbered (seq -1, or -2 when
# suspect), in file order (DuckDB preserves insertion order), and are numbered after by
# their row ids.
_INSERT = f"""
INSERT INTO events
SELECT {{pid}}, CASE WHEN p.suspect THEN -2 ELSE -1 END, p.message_id, p.profile_id, p.name,
    p.ts_eff, p.source, p.r, p.properties
FROM ({_FAST}) p
WHERE NOT p.exported_conclusion AND CASE WHEN p.ok THEN true ELSE error('{_BAD}') END
"""

_NUMBER = """
UPDATE events SET seq = {seq0} + rowid - (
    SELECT min(rowid) FROM events WHERE project_id = {pid} AND seq < 0)
WHERE project_id = {pid} AND seq < 0
"""

# After a failure, or with suspect rows: the first record that the exact reading finds
# bad (where the exact validator starts).
_FIRST_BAD = f"SELECT min(rec) FROM ({_PARSED}) WHERE NOT ok"

_SUSPECT = "SELECT EXISTS (SELECT 1 FROM events WHERE project_id = {pid} AND seq = -2)"

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


# Whether any message id of rows seq >= seq0 may repeat one stored before (equal 64-bit
# hashes); the old rows are only read when there are any.
_MAYBE_STORED = """
SELECT EXISTS (SELECT 1 FROM events WHERE project_id = {pid} AND seq < {seq0})
    AND EXISTS (SELECT 1 FROM events n
                SEMI JOIN (SELECT hash(message_id) AS h FROM events
                           WHERE project_id = {pid} AND seq < {seq0}) o
                ON hash(n.message_id) = o.h
                WHERE n.project_id = {pid} AND n.seq >= {seq0})
"""

# The 64-bit hash of each message id that `maybe_repeated` compares (DuckDB's `hash`).
HASH = "hash(message_id)"


def _filled(sql: str, pid: int, seq0: int = 0, path: str = "", now: int = 0) -> str:
    return (
        sql.replace("{now}", str(int(now)))
        .replace("{path}", path.replace("'", "''"))
        .replace("{pid}", str(int(pid)))
        .replace("{seq0}", str(int(seq0)))
    )


def insert(con: duckdb.DuckDBPyConnection, pid: int, path: str, now: int) -> int:
    """Parse, check and insert `path`'s events, unnumbered (seq -1, in file order);
    returns the number of records. `finish` checks what is left and numbers them.

    R5's clock fix is applied here: `received_at` is when the event arrived (else
    `now`) and `ts` its event time corrected for the client's skew and capped at that.

    Raises BadInput naming the first bad line and field; the caller's transaction then
    rolls back, so a bad file changes nothing.
    """
    try:
        row = con.execute(_filled(_INSERT, pid, path=path, now=now)).fetchone()
    except duckdb.Error as e:
        try:  # on a connection of its own: the failed statement aborted the transaction
            with duckdb.connect() as scratch:
                first = _first_bad(scratch, path, now)
        except duckdb.Error:
            first = None  # DuckDB cannot read the file: the exact validator reads it all
        detail = find_first_error(path, first or 0, now)
        raise BadInput(f"{path}: {detail or _short(e)}") from None
    suspect = con.execute(_filled(_SUSPECT, pid)).fetchone()
    if suspect and suspect[0]:
        first = _first_bad(con, path, now)
        if first is not None:
            detail = find_first_error(path, first, now)
            raise BadInput(f"{path}: {detail or f'record {first + 1} is not valid'}")
    return int(row[0]) if row else 0


def _first_bad(con: duckdb.DuckDBPyConnection, path: str, now: int) -> int | None:
    """The number (from 0) of the first record the exact reading finds bad, if any."""
    first = con.execute(_filled(_FIRST_BAD, 0, path=path, now=now)).fetchone()
    return int(first[0]) if first and first[0] is not None else None


def finish(con: duckdb.DuckDBPyConnection, pid: int, path: str, now: int, seq0: int) -> None:
    """After `insert`: the exact check of the few properties that could be over the
    limits (BadInput naming the line), then the rows numbered seq0 + record number, as
    `unnumbered_seq` gives them (their row ids, in file order)."""
    _check_large(con, pid, path, now)
    con.execute(_filled(_NUMBER, pid, seq0)).fetchall()


# The rows `insert` left unnumbered, with the seq `finish` gives each (as _NUMBER does).
UNNUMBERED = "project_id = {pid} AND seq < 0"


def unnumbered_seq(rowid: npt.NDArray[np.int64], seq0: int) -> npt.NDArray[np.int64]:
    """The seq `finish` gives the unnumbered rows whose row ids these are."""
    return rowid - (int(rowid.min()) if len(rowid) else 0) + seq0


# Rows just inserted whose properties could be over the limits of `check_properties`
# (size as lull encodes them, depth): a text a quarter of the size, or with that many
# brackets at all (counted only in texts long enough to hold them: most are shorter).
# Few rows are; they are decoded and checked exactly.
_LARGE = f"""
SELECT properties::VARCHAR FROM events WHERE project_id = {{pid}} AND seq < 0
    AND (strlen(properties::VARCHAR) > {MAX_EVENT // 4}
         OR (strlen(properties::VARCHAR) > {2 * MAX_PROPERTIES_DEPTH + 2}
             AND length(properties::VARCHAR)
                 - length(replace(replace(properties::VARCHAR, '{{', ''), '[', ''))
                 > {MAX_PROPERTIES_DEPTH}))
"""


def _check_large(con: duckdb.DuckDBPyConnection, pid: int, path: str, now: int) -> None:
    """The one definition of an event (records.check_properties) for what the set-wise
    check lets through: BadInput naming the line when one is over a limit."""
    for (text,) in con.execute(_filled(_LARGE, pid)).fetchall():
        try:
            check_properties(msgspec.json.decode(text), "properties")
        except BadInput:
            detail = find_first_error(path, 0, now)
            raise BadInput(f"{path}: {detail or 'an event is over the limits'}") from None


def maybe_repeated(
    con: duckdb.DuckDBPyConnection, pid: int, seq0: int, hashes: npt.NDArray[np.int64]
) -> bool:
    """Whether a message id of the rows seq >= seq0 may repeat one stored before or one
    of those rows: their 64-bit hashes (`HASH`, read with the rows) compared with each
    other after a sort, and with the stored rows' in DuckDB. False: there is no duplicate
    (R6). True: `drop_repeats` compares the ids."""
    ordered = np.sort(hashes)
    if bool(np.any(ordered[1:] == ordered[:-1])):
        return True
    del ordered
    seen = con.execute(_filled(_MAYBE_STORED, pid, seq0)).fetchall()
    return bool(seen and seen[0][0])


def drop_repeats(con: duckdb.DuckDBPyConnection, pid: int, seq0: int) -> int:
    """R6 for rows seq >= seq0: drops the repeats; returns how many."""
    rows = con.execute(_filled(_DEDUPE, pid, seq0)).fetchall()
    return int(rows[0][0]) if rows else 0


def _short(e: Exception) -> str:
    return str(e).splitlines()[0]
