"""The Spark job's output folder (`lull spark resessionize --out`), read through DuckDB.

It is opened as a read-only, in-memory store: views named like the store's tables
(`events`, `event_sessions`, `sessions`, with their columns) over the Parquet files, so
the board's queries (`lull.board`) run on it unchanged. Needs no Spark.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from lull.errors import BadInput
from lull.model import Settings, check_timezone, parse_timeout

PID = 1  # the one project an output folder holds


def _files(folder: Path, part: str) -> str:
    if not (folder / part).is_dir():
        raise BadInput(f"{folder}: no {part}/ folder; is it the --out of lull spark resessionize?")
    # `**`: the stream's outputs are written a folder per micro-batch (batch=N/)
    return "'" + str(folder / part / "**" / "*.parquet").replace("'", "''") + "'"


def _ms(con: duckdb.DuckDBPyConnection, source: str, column: str) -> str:
    """SQL for a time column of `source` as epoch ms, whatever type Spark wrote it in."""
    kinds = dict(
        con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {source})").fetchall()
    )
    kind = str(kinds.get(column, "VARCHAR"))
    if kind in ("BIGINT", "INTEGER"):
        return column
    return f"epoch_ms({column}::TIMESTAMPTZ)"


def settings_of(folder: Path) -> Settings:
    """The settings the job ran with (its `settings.json`)."""
    path = folder / "settings.json"
    if not path.is_file():
        raise BadInput(f"{folder}: no settings.json; is it the --out of lull spark resessionize?")
    saved = json.loads(path.read_text())
    return Settings(
        True,
        parse_timeout(str(saved["timeout"])),
        tuple(saved["excluded"]),
        check_timezone(str(saved["timezone"])),
    )


def open_output(
    folder: Path, con: duckdb.DuckDBPyConnection | None = None, pid: int = PID
) -> tuple[duckdb.DuckDBPyConnection, Settings]:
    """An in-memory DuckDB connection whose `events`, `event_sessions` and `sessions`
    show the output's events (as project `pid`) like the store's tables; and the
    settings the job ran with. Into `con` (a database's, not temporary: every cursor
    sees them) when given (`lull serve --lake`, server/lake.py)."""
    settings = settings_of(folder)
    events, sessions = _files(folder, "events"), _files(folder, "sessions")
    temp = "TEMP" if con is None else ""
    if con is None:
        con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    con.execute(
        f"""CREATE {temp} TABLE sessions AS
            SELECT {pid} AS project_id, row_number() OVER (ORDER BY session_id) AS skey,
                   session_id, profile_id, {_ms(con, sessions, "first_ts")} AS first_ts,
                   {_ms(con, sessions, "last_ts")} AS last_ts, events, source, concluded,
                   CASE WHEN concluded THEN {_ms(con, sessions, "last_ts")} + {settings.timeout_ms}
                   END AS concluded_at
            FROM read_parquet({sessions})"""
    )
    con.execute(
        f"""CREATE {temp} VIEW events AS
            SELECT {pid} AS project_id, seq, message_id, profile_id, name,
                   {_ms(con, events, "ts")} AS ts, source,
                   {_ms(con, events, "received_at")} AS received_at,
                   properties::JSON AS properties, session_id, late
            FROM read_parquet({events})"""
    )
    con.execute(
        f"""CREATE {temp} VIEW event_sessions AS
           SELECT e.project_id, e.seq, s.skey, e.late FROM events e
           LEFT JOIN sessions s USING (session_id)
           WHERE e.session_id IS NOT NULL OR e.late"""
    )
    return con, settings
