"""What the live engine writes per group commit, and how: arrow tables, one statement each."""

from __future__ import annotations

import duckdb
import pyarrow as pa

from lull.server.identity import Target


class Rows:
    """What one group commit writes, as Arrow tables in the store's column order."""

    def __init__(self) -> None:
        self.event_tables: list[pa.Table] = []  # the events table's columns
        self.assign: list[pa.Table] = []  # project_id, seq, skey, late
        self.session_tables: list[pa.Table] = []  # the sessions table's columns
        self.projects: set[int] = set()  # whose counters (next seq, next skey) to save
        self.aliases: list[tuple[int, str, Target]] = []  # project, anonymous id, tie
        self.traits: list[tuple[int, str, str, int]] = []  # project, profile, JSON, time


def write(con: duckdb.DuckDBPyConnection, rows: Rows, counters: dict[int, tuple[int, int]]) -> None:
    """Events, their sessions, changed sessions, identity links, profile properties, and
    each project's (next seq, next session key)."""
    if rows.event_tables:
        con.register("live_events", pa.concat_tables(rows.event_tables))
        con.execute("INSERT INTO events SELECT * FROM live_events")
        con.unregister("live_events")
    if rows.assign:
        con.register("live_assign", pa.concat_tables(rows.assign))
        con.execute("INSERT INTO event_sessions SELECT * FROM live_assign")
        con.unregister("live_assign")
    if rows.session_tables:
        con.register("live_sessions", pa.concat_tables(rows.session_tables))
        con.execute(
            """DELETE FROM sessions USING live_sessions l
               WHERE sessions.project_id = l.project_id AND sessions.skey = l.skey"""
        )
        con.execute("INSERT INTO sessions SELECT * FROM live_sessions")
        con.unregister("live_sessions")
    if rows.aliases:
        con.executemany(
            "INSERT INTO aliases (project_id, anonymous_id, profile_id, since) VALUES (?, ?, ?, ?)",
            [(pid, anonymous, tie.profile, tie.since) for pid, anonymous, tie in rows.aliases],
        )
    for pid, profile, props, at in rows.traits:
        # profile properties (identify traits, CleverTap profile records), merged
        updated = con.execute(
            """UPDATE profiles SET properties =
                   json_merge_patch(coalesce(properties, '{}'::JSON), ?::JSON)
               WHERE project_id = ? AND profile_id = ?""",
            [props, pid, profile],
        ).fetchone()
        if not updated or not updated[0]:
            con.execute(
                "INSERT INTO profiles VALUES (?, ?, NULL, NULL, NULL, ?, ?, ?::JSON)",
                [pid, profile, at, at, props],
            )
    for pid, (next_seq, next_skey) in counters.items():
        con.execute(
            "UPDATE projects SET next_seq = ?, next_skey = ? WHERE id = ?",
            [next_seq, next_skey, pid],
        )


def write_profiles(con: duckdb.DuckDBPyConnection, rows: pa.Table) -> None:
    """Profile rows (project_id, profile_id, lo, hi: event times seen; latest,
    latest_first, horizon) merged into the profiles table: seen times widened, the rest
    replaced. Rows are replaced (delete and insert): DuckDB updates text columns through
    a join far more slowly."""
    con.register("live_profiles", rows)
    con.execute(
        """CREATE OR REPLACE TEMP TABLE live_merged AS
           SELECT l.project_id, l.profile_id, l.latest, l.latest_first, l.horizon,
                  least(p.first_seen, l.lo) AS first_seen,
                  greatest(p.last_seen, l.hi) AS last_seen, p.properties
           FROM live_profiles l LEFT JOIN profiles p
                ON p.project_id = l.project_id AND p.profile_id = l.profile_id
           WHERE coalesce(p.first_seen, l.lo) IS NOT NULL"""
    )
    con.unregister("live_profiles")
    con.execute(
        """DELETE FROM profiles USING live_merged m
           WHERE profiles.project_id = m.project_id AND profiles.profile_id = m.profile_id"""
    )
    con.execute("INSERT INTO profiles SELECT * FROM live_merged")
    con.execute("DROP TABLE live_merged")
