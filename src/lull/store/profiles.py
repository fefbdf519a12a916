"""The profiles table: a summary of each profile's events and sessions."""

from __future__ import annotations

import duckdb

from lull.store.db import literal


def refresh_from_sessions(con: duckdb.DuckDBPyConnection, pid: int, timeout: int) -> None:
    """Set every profile's latest session and horizon from the sessions table, and add
    the profiles that have events but no row yet.

    Rewritten whole (delete and insert): an UPDATE ... FROM of every profile is far
    slower in DuckDB than writing the rows anew.
    """
    p = literal(pid)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE refreshed_profiles AS
            WITH known AS (
                SELECT profile_id, first_seen, last_seen, properties FROM profiles
                WHERE project_id = {p}
                UNION ALL
                SELECT profile_id, min(ts), max(ts), NULL FROM events e
                WHERE project_id = {p} AND NOT EXISTS (
                    SELECT 1 FROM profiles q
                    WHERE q.project_id = {p} AND q.profile_id = e.profile_id)
                GROUP BY 1)
            SELECT {p} AS project_id, k.profile_id, s.sid, s.f, s.h, k.first_seen,
                   k.last_seen, k.properties
            FROM known k LEFT JOIN (
                SELECT profile_id, arg_max(session_id, first_ts) AS sid, max(first_ts) AS f,
                       max(last_ts) FILTER (WHERE concluded) + {literal(timeout)} AS h
                FROM sessions WHERE project_id = {p} GROUP BY 1) s USING (profile_id)"""
    )
    con.execute(f"DELETE FROM profiles WHERE project_id = {p}")
    con.execute("INSERT INTO profiles SELECT * FROM refreshed_profiles")
    con.execute("DROP TABLE refreshed_profiles")


def refresh_touched(
    con: duckdb.DuckDBPyConnection, pid: int, timeout: int, since_seq: int, since_at: int
) -> int:
    """`refresh_from_sessions` for only the profiles a server may have left behind when it
    stopped without its last profile flush: those with events from `since_seq` on or a
    session concluded at or after `since_at` (what it had applied when it started is in
    their rows). Their seen times are widened by those events; returns how many."""
    p = literal(pid)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE touched_profiles AS
            WITH fresh AS (
                SELECT profile_id, min(ts) AS lo, max(ts) AS hi FROM events
                WHERE project_id = {p} AND seq >= {literal(since_seq)} GROUP BY 1),
            ids AS (
                SELECT profile_id FROM fresh
                UNION
                SELECT profile_id FROM sessions WHERE project_id = {p} AND concluded
                    AND concluded_at >= {literal(since_at)})
            SELECT {p} AS project_id, i.profile_id, s.sid, s.f, s.h,
                   least(k.first_seen, f.lo) AS first_seen,
                   greatest(k.last_seen, f.hi) AS last_seen, k.properties
            FROM ids i
            LEFT JOIN fresh f USING (profile_id)
            LEFT JOIN (SELECT * FROM profiles WHERE project_id = {p}) k USING (profile_id)
            LEFT JOIN (
                SELECT profile_id, arg_max(session_id, first_ts) AS sid, max(first_ts) AS f,
                       max(last_ts) FILTER (WHERE concluded) + {literal(timeout)} AS h
                FROM sessions WHERE project_id = {p}
                    AND profile_id IN (SELECT profile_id FROM ids)
                GROUP BY 1) s USING (profile_id)
            WHERE coalesce(k.first_seen, f.lo) IS NOT NULL"""
    )
    con.execute(
        f"""DELETE FROM profiles WHERE project_id = {p}
            AND profile_id IN (SELECT profile_id FROM touched_profiles)"""
    )
    con.execute("INSERT INTO profiles SELECT * FROM touched_profiles")
    (count,) = con.execute("SELECT count(*) FROM touched_profiles").fetchall()[0]
    con.execute("DROP TABLE touched_profiles")
    return int(count)


def touched_sql(pid: int, since_seq: int, since_skey: int, since_at: int) -> str:
    """A query of the profiles a server changed since it started (what it had applied
    then: event seq, session key, time): events from `since_seq` on, sessions keyed from
    `since_skey` on (new ones, or all of a resessionize), sessions concluded since."""
    p = literal(pid)
    return f"""SELECT profile_id FROM events WHERE project_id = {p} AND seq >= {literal(since_seq)}
        UNION SELECT profile_id FROM sessions WHERE project_id = {p}
            AND (skey >= {literal(since_skey)}
                 OR (concluded AND concluded_at >= {literal(since_at)}))"""
