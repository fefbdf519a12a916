"""Projects and their settings."""

from __future__ import annotations

import re
import time

import duckdb

from lull.errors import BadInput
from lull.model import DEFAULT_EXCLUDED, DEFAULT_TIMEOUT_MS, Settings
from lull.store.db import literal


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# New projects' names: they go into URLs (/p/NAME/board) and folder names (the ingest
# log, Spark's output), so a safe set. Projects made by an older lull keep their names.
PROJECT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def project_id(con: duckdb.DuckDBPyConnection, name: str, *, create: bool = True) -> int:
    """The id of project `name`, created on first use (with default settings)."""
    if not name or len(name) > 100:
        raise BadInput(f"bad project name {name[:40]!r}")
    row = con.execute("SELECT id FROM projects WHERE name = ?", [name]).fetchone()
    if row:
        return int(row[0])
    if not create:
        raise BadInput(f"no project named {name!r}")
    if not PROJECT_NAME.match(name):
        raise BadInput(
            f"bad project name {name[:40]!r}: use 1 to 100 letters, digits, '.', '_' or '-', "
            "starting with a letter or a digit"
        )
    new_id = con.execute("SELECT coalesce(max(id), 0) + 1 FROM projects").fetchone()
    assert new_id is not None
    con.execute(
        "INSERT INTO projects VALUES (?, ?, false, ?, ?, 'UTC', ?, NULL, 0, 0, NULL, ['*'])",
        [new_id[0], name, DEFAULT_TIMEOUT_MS, list(DEFAULT_EXCLUDED), now_ms()],
    )
    return int(new_id[0])


def get_settings(con: duckdb.DuckDBPyConnection, pid: int) -> Settings:
    row = con.execute(
        """SELECT sessions_enabled, timeout_ms, excluded, timezone, allowed_origins
           FROM projects WHERE id = ?""",
        [pid],
    ).fetchone()
    assert row is not None
    return Settings(bool(row[0]), int(row[1]), tuple(row[2]), str(row[3]), tuple(row[4]))


def save_settings(con: duckdb.DuckDBPyConnection, pid: int, s: Settings) -> None:
    con.execute(
        """UPDATE projects SET sessions_enabled = ?, timeout_ms = ?, excluded = ?, timezone = ?,
           allowed_origins = ?, board_created_at = CASE WHEN ? THEN coalesce(board_created_at, ?)
                                   ELSE board_created_at END
           WHERE id = ?""",
        [
            s.sessions_enabled,
            s.timeout_ms,
            list(s.excluded),
            s.timezone,
            list(s.allowed_origins),
            s.sessions_enabled,
            now_ms(),
            pid,
        ],
    )


def take_seq(con: duckdb.DuckDBPyConnection, pid: int, count: int) -> int:
    """Reserve `count` arrival sequence numbers; returns the first."""
    return _take(con, pid, "next_seq", count)


def take_skey(con: duckdb.DuckDBPyConnection, pid: int, count: int) -> int:
    """Reserve `count` session keys; returns the first."""
    return _take(con, pid, "next_skey", count)


def _take(con: duckdb.DuckDBPyConnection, pid: int, column: str, count: int) -> int:
    row = con.execute(f"SELECT {column} FROM projects WHERE id = ?", [pid]).fetchone()
    assert row is not None
    con.execute(f"UPDATE projects SET {column} = {column} + ? WHERE id = ?", [count, pid])
    return int(row[0])


def eligible_sql(settings: Settings, *, as_if_enabled: bool = False) -> str:
    """R1 as a SQL condition over the events table's `source` and `name` (system events
    are never stored there). `as_if_enabled`: as R1 would admit with sessions on, which
    is what a re-sessionization uses."""
    switch = "" if as_if_enabled else f"{literal(settings.sessions_enabled)} AND "
    return f"({switch}source <> 'api' AND NOT list_contains({literal(settings.excluded)}, name))"
