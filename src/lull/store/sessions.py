"""Writing sessions: concluding the ones that fall due (R4)."""

from __future__ import annotations

import duckdb

from lull.store.db import literal


def conclude_due(con: duckdb.DuckDBPyConnection, pid: int, until: int, timeout: int) -> int:
    """Conclude every open session due by `until` (last event + timeout <= until).

    Each is concluded at its due time (when the clock reached it) and moves its
    profile's horizon. Returns how many were concluded.
    """
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE just_due AS
           SELECT skey, profile_id, last_ts FROM sessions
           WHERE project_id = {literal(pid)} AND NOT concluded
           AND last_ts + {literal(timeout)} <= {literal(until)}"""
    )
    row = con.execute("SELECT count(*) FROM just_due").fetchone()
    count = int(row[0]) if row else 0
    if count:
        con.execute(
            """UPDATE sessions SET concluded = true, concluded_at = sessions.last_ts + ?
               FROM just_due j
               WHERE sessions.project_id = ? AND sessions.skey = j.skey""",
            [timeout, pid],
        )
        con.execute(
            """UPDATE profiles SET horizon = greatest(coalesce(profiles.horizon, h), h)
               FROM (SELECT profile_id, max(last_ts) + ? AS h FROM just_due GROUP BY 1) j
               WHERE profiles.project_id = ? AND profiles.profile_id = j.profile_id""",
            [timeout, pid],
        )
    con.execute("DROP TABLE just_due")
    return count
