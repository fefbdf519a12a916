"""The read API's queries: one function per resource, each a single SQL query."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import duckdb

from lull.board import check_source
from lull.errors import BadInput, NotFound
from lull.model import Settings, format_time, parse_time, parse_timeout
from lull.store.events import latest

MAX_LIMIT = 10_000


def _range(params: dict[str, str]) -> tuple[int, int]:
    lo = parse_time(_time_arg(params.get("from")), "'from'") if "from" in params else 0
    hi = parse_time(_time_arg(params.get("to")), "'to'") if "to" in params else 2**62
    return lo, hi


def whole(raw: str | None) -> int | None:
    """A query parameter of ASCII digits as a number (not '²', not 5000 digits), or None."""
    if raw is None or not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        return None
    return int(raw)


def _time_arg(value: str | None) -> object:
    number = whole(value)
    return value if number is None else number


def board_range(params: Mapping[str, str], settings: Settings) -> tuple[date, int, str | None]:
    """`until`, `days` and `source` of a board (or what-if) request: the last day
    (default today in the project's zone), how many days (default 30), which source."""
    days = whole(params.get("days", "30"))
    if days is None or not 1 <= days <= 3660:
        raise BadInput("'days' must be a whole number from 1 to 3660")
    until = params.get("until")
    try:
        last = (
            date.fromisoformat(until) if until else datetime.now(ZoneInfo(settings.timezone)).date()
        )
    except ValueError:
        raise BadInput(f"'until' {until!r}: expected a date YYYY-MM-DD") from None
    return last, days, check_source(params.get("source"))


def proposed_timeout(params: Mapping[str, str]) -> int:
    """The `timeout` of a what-if request, in ms."""
    raw = params.get("timeout")
    if not raw:
        raise BadInput("'timeout' is required: the proposed timeout, e.g. 30m")
    try:
        return parse_timeout(raw)
    except BadInput as e:
        raise BadInput(f"'timeout': {e.message}") from None


def _limit(params: dict[str, str]) -> int:
    limit = whole(params.get("limit", "100"))
    if limit is None or not 1 <= limit <= MAX_LIMIT:
        raise BadInput(f"'limit' must be a whole number from 1 to {MAX_LIMIT}")
    return limit


def sessions(
    con: duckdb.DuckDBPyConnection, pid: int, params: dict[str, str], offset: int = 0
) -> list[Any]:
    """Sessions, newest first; filter by profile_id and a time range (on first_ts); the
    `offset` newest skipped (a page of them)."""
    lo, hi = _range(params)
    rows = con.execute(
        """SELECT session_id, profile_id, first_ts, last_ts, (last_ts - first_ts) // 1000,
                  events, source, concluded
           FROM sessions WHERE project_id = ? AND first_ts BETWEEN ? AND ?
           AND (? IS NULL OR profile_id = ?)
           ORDER BY first_ts DESC, session_id LIMIT ? OFFSET ?""",
        [pid, lo, hi, params.get("profile_id"), params.get("profile_id"), _limit(params),
         offset],
    ).fetchall()  # fmt: skip
    keys = ("session_id", "profile_id", "first_ts", "last_ts", "length_s", "events",
            "source", "concluded")  # fmt: skip
    out = [dict(zip(keys, row, strict=True)) for row in rows]
    for s in out:
        s["first_ts"], s["last_ts"] = format_time(s["first_ts"]), format_time(s["last_ts"])
    return out


def events(con: duckdb.DuckDBPyConnection, pid: int, params: dict[str, str]) -> list[Any]:
    """Events (Session Concluded included), newest first; filter by profile, session id,
    name and a time range (on the event time)."""
    lo, hi = _range(params)
    return latest(
        con,
        pid,
        name=params.get("name"),
        profile_id=params.get("profile_id"),
        session_id=params.get("session_id"),
        limit=_limit(params),
        lo=lo,
        hi=hi,
    )


def profile(con: duckdb.DuckDBPyConnection, pid: int, profile_id: str) -> dict[str, Any]:
    """A profile with the CT Session ID of its latest session."""
    row = con.execute(
        """SELECT profile_id, latest_session_id, first_seen, last_seen, properties::VARCHAR
           FROM profiles WHERE project_id = ? AND profile_id = ?""",
        [pid, profile_id],
    ).fetchone()
    if row is None:
        raise NotFound(f"no profile {profile_id!r}")

    return {
        "profile_id": row[0],
        "latest_session_id": row[1],
        "first_seen": format_time(row[2]),
        "last_seen": format_time(row[3]),
        "properties": json.loads(row[4] or "{}"),
    }


def stored_events(con: duckdb.DuckDBPyConnection, pid: int) -> int:
    """How many events a project has stored (what a rebuild reads)."""
    row = con.execute("SELECT count(*) FROM events WHERE project_id = ?", [pid]).fetchone()
    return int(row[0]) if row else 0


def profile_summary(con: duckdb.DuckDBPyConnection, pid: int, profile_id: str) -> dict[str, Any]:
    """A profile's sessions in figures: how many (concluded and open), their total and
    median length (nearest rank, as on the board), the first and the latest."""
    row = con.execute(
        """SELECT count(*), count(*) FILTER (WHERE concluded),
                  coalesce(sum((last_ts - first_ts) // 1000), 0),
                  quantile_disc((last_ts - first_ts) // 1000, 0.5), min(first_ts), max(last_ts)
           FROM sessions WHERE project_id = ? AND profile_id = ?""",
        [pid, profile_id],
    ).fetchone()
    assert row is not None
    n, concluded, total, median, first, last = row
    return {
        "sessions": int(n),
        "concluded": int(concluded),
        "total_length_s": int(total),
        "median_length_s": None if median is None else int(median),
        "first_ts": None if first is None else format_time(first),
        "last_ts": None if last is None else format_time(last),
    }


def profiles(
    con: duckdb.DuckDBPyConnection, pid: int, prefix: str, limit: int, offset: int
) -> list[dict[str, Any]]:
    """Profiles whose id starts with `prefix` (ignoring case), latest seen first, a page
    of them, each with how many sessions it has."""
    rows = con.execute(
        """WITH page AS (
               SELECT profile_id, first_seen, last_seen FROM profiles
               WHERE project_id = $pid AND starts_with(lower(profile_id), lower($prefix))
               ORDER BY last_seen DESC, profile_id LIMIT $limit OFFSET $offset)
           SELECT p.profile_id, p.first_seen, p.last_seen, count(s.session_id)
           FROM page p LEFT JOIN sessions s
           ON s.project_id = $pid AND s.profile_id = p.profile_id
           GROUP BY ALL ORDER BY p.last_seen DESC, p.profile_id""",
        {"pid": pid, "prefix": prefix, "limit": limit, "offset": offset},
    ).fetchall()
    return [
        {"profile_id": r[0], "first_seen": format_time(r[1]), "last_seen": format_time(r[2]),
         "sessions": int(r[3])}
        for r in rows
    ]  # fmt: skip
