"""Projects and their settings."""

from __future__ import annotations

import re
import time as clock
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import duckdb

from lull.errors import BadInput
from lull.model import (
    DEFAULT_EXCLUDED,
    DEFAULT_TIMEOUT_MS,
    Settings,
    format_duration,
    format_time,
)
from lull.store.db import literal


def now_ms() -> int:
    return clock.time_ns() // 1_000_000


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


def save_settings(
    con: duckdb.DuckDBPyConnection, pid: int, s: Settings, *, history: bool = True
) -> None:
    """Save project `pid`'s settings. A change of the session's definition (timeout,
    excluded events) is noted in settings_history (unless `history` is false: a change
    being taken back), so the board can mark the day from which it holds."""
    if history and _has_events(con, pid):
        old = get_settings(con, pid)
        if old.timeout_ms != s.timeout_ms or set(old.excluded) != set(s.excluded):
            con.execute(
                "INSERT INTO settings_history VALUES (?, ?, ?, ?, ?, false)",
                [pid, now_ms(), old.timeout_ms, s.timeout_ms, set(old.excluded) != set(s.excluded)],
            )
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


def _has_events(con: duckdb.DuckDBPyConnection, pid: int) -> bool:
    """Whether project `pid` stores events (a change before any splits no history)."""
    row = con.execute("SELECT 1 FROM events WHERE project_id = ? LIMIT 1", [pid]).fetchone()
    return row is not None


def note_rebuild(con: duckdb.DuckDBPyConnection, pid: int) -> None:
    """Note that project `pid`'s history was rebuilt under its settings: the changes
    noted before no longer split its sessions into two definitions."""
    timeout = get_settings(con, pid).timeout_ms
    con.execute(
        "INSERT INTO settings_history VALUES (?, ?, ?, ?, false, true)",
        [pid, now_ms(), timeout, timeout],
    )


def forget_change(con: duckdb.DuckDBPyConnection, pid: int) -> None:
    """Take back the latest noted change (its settings were put back: a failed rebuild)."""
    con.execute(
        """DELETE FROM settings_history WHERE project_id = $pid AND NOT rebuilt
           AND changed_at = (SELECT max(changed_at) FROM settings_history
                             WHERE project_id = $pid)""",
        {"pid": pid},
    )


def unrebuilt_changes(
    con: duckdb.DuckDBPyConnection, pid: int, tz: str, first: date, last: date
) -> list[dict[str, object]]:
    """The changes of the session's definition made on the days `first` to `last` (in
    zone `tz`) with no rebuild after them, oldest first: the sessions before each were
    made under other settings than those after it. Each with its time (UTC), its day
    and hour in the zone, and a label for the board's charts."""
    known = con.execute(
        "SELECT 1 FROM duckdb_tables() WHERE table_name = 'settings_history' LIMIT 1"
    ).fetchone()
    if known is None:  # a store of an older lull opened read-only, or Spark's output
        return []
    zone = ZoneInfo(tz)
    lo = datetime.combine(first, time(), zone).timestamp() * 1000
    hi = datetime.combine(last + timedelta(days=1), time(), zone).timestamp() * 1000 - 1
    rows = con.execute(
        """SELECT changed_at, old_timeout_ms, timeout_ms, excluded_changed
           FROM settings_history
           WHERE project_id = $pid AND NOT rebuilt AND changed_at BETWEEN $lo AND $hi
             AND changed_at > coalesce((SELECT max(changed_at) FROM settings_history
                                        WHERE project_id = $pid AND rebuilt), -1)
           ORDER BY changed_at""",
        {"pid": pid, "lo": int(lo), "hi": int(hi)},
    ).fetchall()
    out: list[dict[str, object]] = []
    for at, old, new, excluded in rows:
        local = datetime.fromtimestamp(at / 1000, zone)
        what = [f"timeout {format_duration(old)} → {format_duration(new)}"] if old != new else []
        what += ["excluded events changed"] if excluded else []
        out.append(
            {
                "at": format_time(at),
                "day": local.date().isoformat(),
                "hour": local.strftime("%Y-%m-%dT%H:00"),
                "local_time": local.strftime("%Y-%m-%d %H:%M"),
                "old_timeout": format_duration(old),
                "timeout": format_duration(new),
                "excluded_changed": bool(excluded),
                "label": ", ".join(what) + ", history not rebuilt",
            }
        )
    return out


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
