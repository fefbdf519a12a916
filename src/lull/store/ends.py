"""Each concluded session's first and last event and its user's previous session, kept
beside `sessions` in `session_ends`.

The entry and exit events, the session interval and the breakdown by a property of the
first event (figures.py) need, per session, its first and last event (a join of
`event_sessions` with `events` and a group per session) and the end of the same user's
previous session (a window over the user's sessions): seconds over 10M events, too
slow for a board figure. A concluded session is final (R4), so these are found once, at
write time: after an import, after a re-sessionization and when the server starts (for
a store written before the table existed, and for sessions the server concluded since).

A row copies its session's columns (so a figure reads this table alone) and adds
`prev_last_ts`, `first_seq`, `first_name`, `last_name` and `first_properties`. Reads
never depend on the table being complete: figures.py checks that its rows are the
counted sessions (the same number, keys and ends) and otherwise reads the same rows
computed from the events.
"""

from __future__ import annotations

import duckdb

# The columns a row of session_ends copies from its session, in the table's order.
SESSION_COLUMNS = ("project_id", "skey", "profile_id", "source", "concluded", "first_ts",
                   "last_ts", "events")  # fmt: skip
# (ts, seq) as one number: R2's order of a session's events.
_ORDER = "(e.ts::HUGEINT * 18446744073709551616 + e.seq)"


def computed(pid: str, where: str = "true", only: str = "true") -> str:
    """SQL: the rows of session_ends for project `pid`'s concluded sessions that
    satisfy `where` (on `sessions`: whole profiles, for their previous sessions) and
    `only` (on the rows), found from the events."""
    return f"""WITH w AS MATERIALIZED (
                   SELECT {", ".join(SESSION_COLUMNS)},
                          lag(last_ts) OVER (PARTITION BY profile_id ORDER BY first_ts, skey)
                          AS prev_last_ts
                   FROM sessions WHERE project_id = {pid} AND concluded AND {where}),
               s AS MATERIALIZED (SELECT * FROM w WHERE {only}),
               x AS (
                   SELECT es.skey, arg_min(e.seq, {_ORDER}) AS first_seq,
                          arg_min(e.name, {_ORDER}) AS first_name,
                          arg_max(e.name, {_ORDER}) AS last_name,
                          arg_min(e.properties, {_ORDER}) AS first_properties
                   FROM event_sessions es
                   JOIN events e ON e.project_id = {pid} AND e.seq = es.seq
                   WHERE es.project_id = {pid} AND es.skey IN (SELECT skey FROM s)
                   GROUP BY es.skey)
               SELECT s.*, x.first_seq, x.first_name, x.last_name, x.first_properties
               FROM s JOIN x USING (skey)"""


def stored(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the store has the table (one opened read-only before a write of this lull
    made it has not)."""
    row = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'session_ends'"
    ).fetchone()
    return bool(row and row[0])


def forget(con: duckdb.DuckDBPyConnection, pid: int) -> None:
    """Drop project `pid`'s rows (its sessions are being rebuilt)."""
    con.execute("DELETE FROM session_ends WHERE project_id = ?", [pid])


def fill(con: duckdb.DuckDBPyConnection, pid: int) -> int:
    """Bring project `pid`'s rows up to date: rows for the concluded sessions that have
    none, no rows that no longer match a concluded session (same key, bounds and number
    of events), and the previous session's end of every row of a profile whose
    sessions changed. Returns how many rows were written."""
    p = str(int(pid))
    row = con.execute(
        f"""SELECT (SELECT count(*) FROM sessions WHERE project_id = {p} AND concluded),
                   (SELECT count(*) FROM session_ends WHERE project_id = {p})"""
    ).fetchone()
    assert row is not None
    if row[0] == row[1]:
        return 0  # the usual case, found cheaply (a rebuild drops the project's rows)
    if row[1] == 0:  # none yet (a first import, a rebuild): all of them
        con.execute(f"INSERT INTO session_ends {computed(p)}")
        return int(row[0])
    # sessions without a matching row, and rows without a matching session
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE ends_diff AS
            SELECT s.skey AS new_skey, m.skey AS old_skey,
                   coalesce(s.profile_id, m.profile_id) AS profile_id
            FROM (SELECT * FROM sessions WHERE project_id = {p} AND concluded) s
            FULL JOIN (SELECT * FROM session_ends WHERE project_id = {p}) m USING (skey)
            WHERE m.skey IS NULL OR s.skey IS NULL OR m.first_ts <> s.first_ts
            OR m.last_ts <> s.last_ts OR m.events <> s.events"""
    )
    con.execute(
        f"""DELETE FROM session_ends WHERE project_id = {p}
            AND skey IN (SELECT old_skey FROM ends_diff)"""
    )
    touched = "profile_id IN (SELECT profile_id FROM ends_diff)"
    con.execute(
        f"""INSERT INTO session_ends
            {computed(p, touched, "skey IN (SELECT new_skey FROM ends_diff)")}"""
    )
    con.execute(  # their profiles' other sessions may have a new predecessor
        f"""UPDATE session_ends m SET prev_last_ts = w.prev
            FROM (SELECT skey, lag(last_ts) OVER (PARTITION BY profile_id
                                                  ORDER BY first_ts, skey) AS prev
                  FROM sessions WHERE project_id = {p} AND concluded AND {touched}) w
            WHERE m.project_id = {p} AND m.skey = w.skey
            AND m.prev_last_ts IS DISTINCT FROM w.prev"""
    )
    written = con.execute("SELECT count(new_skey) FROM ends_diff").fetchone()
    con.execute("DROP TABLE ends_diff")
    return int(written[0]) if written else 0


def fill_all(con: duckdb.DuckDBPyConnection) -> int:
    """`fill` for every project of the store."""
    ids = [int(r[0]) for r in con.execute("SELECT id FROM projects").fetchall()]
    return sum(fill(con, pid) for pid in ids)
