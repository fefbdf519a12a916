"""Reading events back (the read API, the Events and Profile pages), fast on a large store.

They equal what the `all_events` view gives (Session Concluded included, as the
`all_events` view shows it), but each query narrows the events first (the newest N, or
one profile's) and only then looks up their sessions, instead of joining every event
with its session before sorting: 0.2 s instead of 13 s for the newest 100 of 10M.
"""

from __future__ import annotations

import json
from typing import Any

import duckdb

from lull.model import SESSION_CONCLUDED, format_time

# Session Concluded as an event, from a row of `sessions` (as the all_events view has it).
_CONCLUDED = f"""NULL::BIGINT AS seq, 'sc-' || session_id AS message_id, profile_id,
    '{SESSION_CONCLUDED}' AS name, last_ts AS ts, source, concluded_at AS received_at,
    json_object('Session Length', (last_ts - first_ts) // 1000,
                'Session ID', session_id)::VARCHAR AS props, session_id, false AS late"""
_WITH_SESSION = """SELECT e.seq, e.message_id, e.profile_id, e.name, e.ts, e.source,
        e.received_at, e.properties::VARCHAR AS props, s.session_id,
        coalesce(es.late, false) AS late
    FROM picked e
    LEFT JOIN event_sessions es ON es.project_id = $pid AND es.seq = e.seq
    LEFT JOIN sessions s ON s.project_id = $pid AND s.skey = es.skey"""
_COLUMNS = "message_id, profile_id, name, ts, source, received_at, props, session_id, late"


def latest(
    con: duckdb.DuckDBPyConnection,
    pid: int,
    name: str | None = None,
    profile_id: str | None = None,
    session_id: str | None = None,
    limit: int = 100,
    lo: int | None = None,
    hi: int | None = None,
    *,
    prefix: bool = False,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """The newest `limit` events (by event time, within [lo, hi] ms when given) matching
    every filter given, after skipping the `offset` newest; with `prefix`, `name` and
    `profile_id` match the start of the event's, ignoring case (a search box's)."""
    params = {"pid": pid, "name": name, "profile": profile_id, "sid": session_id,
              "limit": limit, "lo": lo, "hi": hi, "offset": offset}  # fmt: skip

    def equal(col: str, param: str) -> str:
        return f"starts_with(lower({col}), lower({param}))" if prefix else f"{col} = {param}"

    match = f"""($name IS NULL OR {equal("name", "$name")})
        AND ($profile IS NULL OR {equal("profile_id", "$profile")})
        AND ($lo IS NULL OR ts >= $lo) AND ($hi IS NULL OR ts <= $hi)"""
    in_session = (
        ""
        if session_id is None
        else """AND seq IN (SELECT es.seq FROM event_sessions es JOIN sessions s
                ON s.project_id = $pid AND s.skey = es.skey
                WHERE es.project_id = $pid AND s.session_id = $sid)"""
    )
    rows = con.execute(
        f"""WITH picked AS (
                SELECT * FROM events WHERE project_id = $pid AND {match} {in_session}
                ORDER BY ts DESC, seq DESC LIMIT $limit + $offset)
            SELECT {_COLUMNS} FROM (
                {_WITH_SESSION}
                UNION ALL
                (SELECT {_CONCLUDED} FROM sessions
                 WHERE project_id = $pid AND concluded
                 AND ($name IS NULL OR {equal(f"'{SESSION_CONCLUDED}'", "$name")})
                 AND ($profile IS NULL OR {equal("profile_id", "$profile")})
                 AND ($sid IS NULL OR session_id = $sid)
                 AND ($lo IS NULL OR last_ts >= $lo) AND ($hi IS NULL OR last_ts <= $hi)
                 ORDER BY last_ts DESC LIMIT $limit + $offset))
            ORDER BY ts DESC, seq DESC NULLS FIRST, message_id LIMIT $limit OFFSET $offset""",
        params,
    ).fetchall()
    return [_event(row) for row in rows]


def of_sessions(
    con: duckdb.DuckDBPyConnection, pid: int, profile_id: str, session_ids: list[str]
) -> dict[str, list[dict[str, Any]]]:
    """Every event of these sessions of one profile (Session Concluded included), by
    session id, in time order."""
    if not session_ids:
        return {}
    rows = con.execute(
        f"""WITH picked AS (SELECT * FROM events WHERE project_id = $pid
                            AND profile_id = $profile)
            SELECT {_COLUMNS} FROM (
                SELECT * FROM ({_WITH_SESSION}) WHERE session_id IN $sids
                UNION ALL
                SELECT {_CONCLUDED} FROM sessions
                WHERE project_id = $pid AND concluded AND session_id IN $sids)
            ORDER BY ts, seq NULLS LAST, message_id""",
        {"pid": pid, "profile": profile_id, "sids": session_ids},
    ).fetchall()
    out: dict[str, list[dict[str, Any]]] = {sid: [] for sid in session_ids}
    for row in rows:
        out[row[7]].append(_event(row))
    return out


def _event(row: tuple[Any, ...]) -> dict[str, Any]:
    message, profile, name, ts, source, received, props, sid, late = row
    return {
        "message_id": message,
        "profile_id": profile,
        "name": name,
        "ts": format_time(ts),
        "source": source,
        "received_at": format_time(received),
        "properties": json.loads(props or "{}"),
        "session_id": sid,
        "late": bool(late),
    }


def names(con: duckdb.DuckDBPyConnection, pid: int, limit: int = 500) -> list[str]:
    """The event names a project has stored (Session Concluded among them once it has a
    concluded session), in order: the Events page's name picker."""
    rows = con.execute(
        f"""SELECT name FROM (
                SELECT DISTINCT name FROM events WHERE project_id = $pid
                UNION
                (SELECT '{SESSION_CONCLUDED}' FROM sessions
                 WHERE project_id = $pid AND concluded LIMIT 1))
            ORDER BY lower(name), name LIMIT $limit""",
        {"pid": pid, "limit": limit},
    ).fetchall()
    return [str(r[0]) for r in rows]
