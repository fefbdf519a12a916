"""What the live engine writes per group commit, and how: arrow tables, one statement each."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import duckdb
import pyarrow as pa

from lull.engine.state import Session

EVENT_COLUMNS = (
    "project_id", "seq", "message_id", "profile_id", "name", "ts", "source",
    "received_at", "properties",
)  # fmt: skip
_SESSION_COLUMNS = (
    "project_id", "skey", "session_id", "profile_id", "first_ts", "last_ts", "events",
    "source", "concluded", "concluded_at",
)  # fmt: skip
_SESSION_TYPES = (
    pa.int32(), pa.int64(), pa.string(), pa.string(), pa.int64(), pa.int64(), pa.int64(),
    pa.string(), pa.bool_(), pa.int64(),
)  # fmt: skip


class Rows:
    """What one group commit writes."""

    def __init__(self) -> None:
        self.event_tables: list[pa.Table] = []  # EVENT_COLUMNS
        self.assign: list[pa.Table] = []  # project_id, seq, skey, late
        self.projects: set[int] = set()  # whose counters (next seq, next skey) to save
        self.sessions: dict[tuple[int, int], tuple[Any, ...]] = {}
        self.profiles: dict[tuple[int, str], tuple[int | None, int | None]] = {}
        self.aliases: list[tuple[int, str, str]] = []
        self.traits: list[tuple[int, str, str, int]] = []  # project, profile, JSON, time

    def session(self, pid: int, skey: int, s: Session, concluded_at: int | None) -> None:
        self.sessions[(pid, skey)] = (
            pid, skey, s.session_id, s.profile_id, s.first_ts, s.last_ts, s.events,
            s.source, concluded_at is not None, concluded_at,
        )  # fmt: skip


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
    if rows.sessions:
        values = list(zip(*rows.sessions.values(), strict=True))
        columns = zip(_SESSION_COLUMNS, values, _SESSION_TYPES, strict=True)
        con.register("live_sessions", pa.table({n: pa.array(v, t) for n, v, t in columns}))
        con.execute(
            """DELETE FROM sessions USING live_sessions l
               WHERE sessions.project_id = l.project_id AND sessions.skey = l.skey"""
        )
        con.execute("INSERT INTO sessions SELECT * FROM live_sessions")
        con.unregister("live_sessions")
    if rows.aliases:
        con.executemany("INSERT INTO aliases VALUES (?, ?, ?)", rows.aliases)
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


Summary = Callable[[int, str], tuple[str | None, int | None, int | None]]


def write_profiles(con: duckdb.DuckDBPyConnection, rows: Rows, summary: Summary) -> None:
    """The profiles `rows` touched: seen times merged, latest session and horizon from
    `summary(project, profile)`. Rows are replaced (delete and insert): DuckDB updates
    text columns through a join far more slowly."""
    pids, names, lo, hi, latest, latest_first, horizon = [], [], [], [], [], [], []
    for (pid, profile), (first_seen, last_seen) in rows.profiles.items():
        newest, newest_first, reach = summary(pid, profile)
        pids.append(pid)
        names.append(profile)
        lo.append(first_seen)
        hi.append(last_seen)
        latest.append(newest)
        latest_first.append(newest_first)
        horizon.append(reach)
    con.register(
        "live_profiles",
        pa.table(
            {
                "project_id": pa.array(pids, pa.int32()),
                "profile_id": pa.array(names, pa.string()),
                "lo": pa.array(lo, pa.int64()),
                "hi": pa.array(hi, pa.int64()),
                "latest": pa.array(latest, pa.string()),
                "latest_first": pa.array(latest_first, pa.int64()),
                "horizon": pa.array(horizon, pa.int64()),
            }
        ),
    )
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
