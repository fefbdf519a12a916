"""`lull resessionize`: rebuild every session by R2 over the stored events, set-wise.

R2 over every event that R1 admits with sessions on (late ones included): order each
profile's events by (time, arrival); a gap of at least the timeout starts a session.
The ordering is a linear-time group-by-profile (events are stored in arrival order,
which is nearly time order), the gaps are found with NumPy, and the results are
written as two narrow tables (sessions, and each event's session).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from lull.engine.arrow import bool_array, int_array, ints
from lull.engine.order import by_code_time_seq
from lull.model import session_id_sql
from lull.store.db import literal, transaction
from lull.store.ends import fill as fill_ends
from lull.store.ends import forget as forget_ends
from lull.store.profiles import refresh_from_sessions
from lull.store.projects import eligible_sql, get_settings, note_rebuild, take_skey

I64 = npt.NDArray[np.int64]


@dataclass(slots=True)
class Rebuilt:
    events: int
    sessions: int
    seconds: float

    def as_json(self) -> dict[str, object]:
        return {
            "events": self.events,
            "sessions": self.sessions,
            "seconds": round(self.seconds, 3),
        }


def resessionize(con: duckdb.DuckDBPyConnection, pid: int, *, now: int) -> Rebuilt:
    """Rebuild all of project `pid`'s sessions (and so its Session Concluded events)."""
    started = time.perf_counter()
    settings = get_settings(con, pid)
    timeout, p = settings.timeout_ms, literal(pid)
    with transaction(con):
        seq, ts, code, names = _read(con, pid, eligible_sql(settings, as_if_enabled=True))
        order = by_code_time_seq(code, ts, seq)
        c, t = code[order], ts[order]
        n = len(order)
        new = np.ones(n, dtype=bool)
        new[1:] = (c[1:] != c[:-1]) | (t[1:] - t[:-1] >= timeout)
        starts = np.flatnonzero(new)
        ends = np.append(starts[1:], n)[: len(starts)] - 1
        last_of_profile = np.ones(len(starts), dtype=bool)
        last_of_profile[:-1] = c[starts[1:]] != c[starts[:-1]]
        concluded = ~last_of_profile | (t[ends] + timeout <= now)
        skey0 = take_skey(con, pid, len(starts))
        skeys = np.arange(skey0, skey0 + len(starts), dtype=np.int64)

        con.register(
            "rs_dict", pa.table({"code": int_array(np.arange(len(names))), "profile_id": names})
        )
        same_profile = np.zeros(len(starts), dtype=bool)
        same_profile[1:] = ~last_of_profile[:-1]
        prev_last = np.zeros(len(starts), dtype=np.int64)
        prev_last[1:] = t[ends[:-1]]
        con.register(
            "rs_sessions",
            pa.table(
                {
                    "skey": int_array(skeys),
                    "code": int_array(c[starts]),
                    "first_seq": int_array(seq[order[starts]]),
                    "last_seq": int_array(seq[order[ends]]),
                    "first_ts": int_array(t[starts]),
                    "last_ts": int_array(t[ends]),
                    "prev_last_ts": int_array(prev_last, mask=~same_profile),
                    "events": int_array(ends - starts + 1),
                    "concluded": bool_array(concluded),
                }
            ),
        )
        row_skey = skeys[np.cumsum(new) - 1] if n else np.zeros(0, np.int64)
        con.register(
            "rs_assign", pa.table({"seq": int_array(seq[order]), "skey": int_array(row_skey)})
        )
        # each session's first event (R2 order), read once: its id and source, and its
        # name and properties for session_ends
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE rs_heads AS
                SELECT s.*, d.profile_id, e.message_id, e.source, e.name, e.properties
                FROM rs_sessions s JOIN rs_dict d USING (code)
                JOIN events e ON e.project_id = {p} AND e.seq = s.first_seq"""
        )
        con.execute(f"DELETE FROM sessions WHERE project_id = {p}")
        con.execute(
            f"""INSERT INTO sessions
                SELECT {p}, skey, {session_id_sql("profile_id", "message_id")}, profile_id,
                       first_ts, last_ts, events, source, concluded,
                       CASE WHEN concluded THEN last_ts + {literal(timeout)} END
                FROM rs_heads"""
        )
        con.execute(f"DELETE FROM event_sessions WHERE project_id = {p}")
        con.execute(f"INSERT INTO event_sessions SELECT {p}, seq, skey, false FROM rs_assign")
        for name in ("rs_dict", "rs_sessions", "rs_assign"):
            con.unregister(name)
        refresh_from_sessions(con, pid, timeout)
        # session_ends (store/ends.py) of the concluded sessions, from what the rebuild
        # knows (first and last event, the previous session's end) instead of a group
        # over every event; fill_ends then finds each row in place
        forget_ends(con, pid)
        con.execute(
            f"""INSERT INTO session_ends
                SELECT {p}, h.skey, h.profile_id, h.source, true, h.first_ts, h.last_ts,
                       h.events, h.prev_last_ts, h.first_seq, h.name, l.name, h.properties
                FROM rs_heads h JOIN events l ON l.project_id = {p} AND l.seq = h.last_seq
                WHERE h.concluded"""
        )
        con.execute("DROP TABLE rs_heads")
        fill_ends(con, pid)
        note_rebuild(con, pid)  # the board's marks of earlier changes go
    return Rebuilt(n, len(starts), time.perf_counter() - started)


def _read(
    con: duckdb.DuckDBPyConnection, pid: int, eligible: str
) -> tuple[I64, I64, I64, pa.Array]:
    """The eligible events' seq, time and profile code (in no set order), and the
    profile id of each code.

    The codes come from a join with the profiles table (its 200,000 ids at 10M events,
    each once) done by DuckDB on both cores, so 10M profile ids are neither copied out
    as text nor dictionary-encoded here (1 s of the 2 s of reading them back at 10M).
    An event of a profile without a row (a server stopped before its profile flush, or
    a store written before it kept one) is read the plain way.
    """
    p = literal(pid)
    names = (
        con.sql(f"SELECT DISTINCT profile_id FROM profiles WHERE project_id = {p}")
        .to_arrow_table()
        .column(0)
        .combine_chunks()
    )
    con.register(
        "rs_known", pa.table({"code": int_array(np.arange(len(names))), "profile_id": names})
    )
    events = con.sql(
        f"""SELECT e.seq, e.ts, d.code FROM events e LEFT JOIN rs_known d USING (profile_id)
            WHERE e.project_id = {p} AND {eligible}"""
    ).to_arrow_table()
    con.unregister("rs_known")
    if events.column("code").null_count:
        events = con.sql(
            f"SELECT seq, ts, profile_id FROM events WHERE project_id = {p} AND {eligible}"
        ).to_arrow_table()
        encoded = pc.dictionary_encode(events.column("profile_id")).combine_chunks()
        return (
            ints(events.column("seq")),
            ints(events.column("ts")),
            ints(encoded.indices),
            encoded.dictionary,
        )
    return ints(events.column("seq")), ints(events.column("ts")), ints(events.column("code")), names
