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
