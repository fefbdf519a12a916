"""`lull resessionize`: rebuild every session by R2 over the stored events, set-wise.

R2 over every event that R1 admits with sessions on (late ones included): order each
profile's events by (time, arrival); a gap of at least the timeout starts a session.
The ordering is one sort of packed (profile, arrival) values and a second one of the
few stretches around late arrivals (`engine.order.order_rows`); the gaps are found in
the packed (profile, time) keys with NumPy.

Only what changed is written. A stored session is kept when the rebuild finds a session
of the same profile with the same first and last time, number of events and conclusion,
and no stored assignment points at an event R1 no longer admits: it then holds the very
same events (the rebuilt session holds every admitted event of its profile between its
two times, and the stored one as many of them), so its id, source, assignments and
`session_ends` row stand. The others are deleted and the new ones written with their
events' assignments, their `session_ends` rows and their profiles. When most sessions
change (a new timeout), everything is rewritten, as cheaply as the tables allow.
"""

from __future__ import annotations

import time
from concurrent.futures.thread import ThreadPoolExecutor
from dataclasses import dataclass

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from lull.engine.arrow import bool_array, flags, int_array, ints
from lull.engine.order import Chunks, order_rows
from lull.model import session_id_sql
from lull.store.db import literal, transaction
from lull.store.ends import fill as fill_ends
from lull.store.ends import forget as forget_ends
from lull.store.profiles import refresh_from_sessions
from lull.store.projects import eligible_sql, get_settings, note_rebuild, take_skey

I64 = npt.NDArray[np.int64]
BOOL = npt.NDArray[np.bool_]


@dataclass(slots=True)
class Rebuilt:
    events: int
    sessions: int
    seconds: float
    written: int = 0  # sessions written anew (the others were kept as stored)

    def as_json(self) -> dict[str, object]:
        return {
            "events": self.events,
            "sessions": self.sessions,
            "sessions_written": self.written,
            "seconds": round(self.seconds, 3),
        }


@dataclass(slots=True)
class _Kept:
    """Per rebuilt session, the key of the stored session kept for it (-1: none); the
    keys and profile codes of the stored sessions not kept."""

    skey: I64
    gone: I64
    gone_code: I64


@dataclass(slots=True)
class _Runs:
    """R2's sessions, in (profile, time) order, and each event's session."""

    seq: I64  # the events' seq in (profile, time, arrival) order
    start: I64  # per session: the row (in that order) of its first event
    code: I64  # per session: profile code, bounds, rows of its first and last event
    first_ts: I64
    last_ts: I64
    first_seq: I64
    last_seq: I64
    events: I64
    prev_last_ts: I64  # the profile's previous session's last_ts (see `has_prev`)
    has_prev: BOOL
    concluded: BOOL

    def table(self, rows: I64, skey: I64, names: pa.Array) -> pa.Table:
        """These sessions (indexes `rows`) with their keys and profile ids (`names` by
        code), as the writes read them."""
        return pa.table(
            {
                "skey": int_array(skey),
                "profile_id": names.take(int_array(self.code[rows])),
                "first_seq": int_array(self.first_seq[rows]),
                "last_seq": int_array(self.last_seq[rows]),
                "first_ts": int_array(self.first_ts[rows]),
                "last_ts": int_array(self.last_ts[rows]),
                "prev_last_ts": int_array(self.prev_last_ts[rows], mask=~self.has_prev[rows]),
                "events": int_array(self.events[rows]),
                "concluded": bool_array(self.concluded[rows]),
            }
        )

    @classmethod
    def of(cls, chunks: Chunks, timeout: int, now: int) -> _Runs:
        rows = order_rows(chunks, timeout)
        n = len(rows.seq)
        starts = rows.run_starts(timeout)
        ends = np.empty_like(starts)
        ends[:-1] = starts[1:] - 1
        ends[-1:] = n - 1
        code_of = rows.code(starts)
        last_of_profile = np.ones(len(starts), dtype=bool)
        np.not_equal(code_of[1:], code_of[:-1], out=last_of_profile[:-1])
        has_prev = np.zeros(len(starts), dtype=bool)
        has_prev[1:] = ~last_of_profile[:-1]
        last_ts = rows.ts(ends)
        prev_last = np.zeros(len(starts), dtype=np.int64)
        prev_last[1:] = last_ts[:-1]
        return cls(
            seq=rows.seq,
            start=starts,
            code=code_of,
            first_ts=rows.ts(starts),
            last_ts=last_ts,
            first_seq=rows.seq[starts],
            last_seq=rows.seq[ends],
            events=ends - starts + 1,
            prev_last_ts=prev_last,
            has_prev=has_prev,
            concluded=~last_of_profile | (last_ts + timeout <= now),
        )


def resessionize(con: duckdb.DuckDBPyConnection, pid: int, *, now: int) -> Rebuilt:
    """Rebuild all of project `pid`'s sessions (and so its Session Concluded events)."""
    started = time.perf_counter()
    settings = get_settings(con, pid)
    timeout, p = settings.timeout_ms, literal(pid)
    eligible = eligible_sql(settings, as_if_enabled=True)
    with transaction(con):
        chunks, names, known = _read(con, pid, eligible)
        # the stored sessions are read on a cursor of their own while NumPy sorts
        with con.cursor() as side, ThreadPoolExecutor(1) as pool:
            reading = pool.submit(_stored, side, p, names, eligible, timeout) if known else None
            runs = _Runs.of(chunks, timeout, now)  # (empties `chunks`)
            stored = None if reading is None else reading.result()
        found = None if stored is None else _kept(con, p, stored, runs, timeout)
        kept = found.skey if found else np.full(len(runs.code), -1, dtype=np.int64)
        fresh = np.flatnonzero(kept < 0)
        skey0 = take_skey(con, pid, len(fresh))
        skeys = kept.copy()
        skeys[fresh] = np.arange(skey0, skey0 + len(fresh), dtype=np.int64)
        con.register("rs_sessions", runs.table(fresh, skeys[fresh], names))
        written = runs.seq if found is None else runs.seq[np.repeat(kept < 0, runs.events)]
        assigned = np.repeat(skeys[fresh], runs.events[fresh])
        con.register(
            "rs_assign", pa.table({"seq": int_array(written), "skey": int_array(assigned)})
        )
        if found is None:
            con.execute(f"DELETE FROM sessions WHERE project_id = {p}")
            con.execute(f"DELETE FROM event_sessions WHERE project_id = {p}")
            forget_ends(con, pid)
        else:
            con.register("rs_gone", pa.table({"skey": int_array(found.gone)}))
            for table in ("sessions", "session_ends"):
                con.execute(
                    f"""DELETE FROM {table} WHERE project_id = {p}
                        AND skey IN (SELECT skey FROM rs_gone)"""
                )
            con.execute(
                f"""DELETE FROM event_sessions WHERE project_id = {p}
                    AND (skey IS NULL OR skey IN (SELECT skey FROM rs_gone))"""
            )
            con.unregister("rs_gone")
        _write(con, pid, timeout)
        if found is None:
            refresh_from_sessions(con, pid, timeout)
        else:
            touched = _distinct(np.concatenate([runs.code[fresh], found.gone_code]))
            _refresh(con, pid, timeout, runs, skeys, kept, touched, names)
        for name in ("rs_sessions", "rs_assign"):
            con.unregister(name)
        fill_ends(con, pid)
        note_rebuild(con, pid)  # the board's marks of earlier changes go
    return Rebuilt(len(runs.seq), len(runs.code), time.perf_counter() - started, len(fresh))


def _write(con: duckdb.DuckDBPyConnection, pid: int, timeout: int) -> None:
    """The sessions of `rs_sessions` with their ids, their events' assignments
    (`rs_assign`) and the `session_ends` rows of the concluded ones. Each session's first
    and last event are read in one pass over the events."""
    p = literal(pid)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE rs_ev AS
            SELECT seq, message_id, source, name, properties FROM events
            WHERE project_id = {p} AND seq IN (
                SELECT first_seq FROM rs_sessions UNION ALL SELECT last_seq FROM rs_sessions)"""
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE rs_heads AS
            SELECT s.*, f.message_id, f.source, f.name, f.properties, l.name AS last_name
            FROM rs_sessions s JOIN rs_ev f ON f.seq = s.first_seq
            JOIN rs_ev l ON l.seq = s.last_seq"""
    )
    con.execute("DROP TABLE rs_ev")
    con.execute(
        f"""INSERT INTO sessions
            SELECT {p}, skey, {session_id_sql("profile_id", "message_id")}, profile_id,
                   first_ts, last_ts, events, source, concluded,
                   CASE WHEN concluded THEN last_ts + {literal(timeout)} END
            FROM rs_heads"""
    )
    con.execute(f"INSERT INTO event_sessions SELECT {p}, seq, skey, false FROM rs_assign")
    # session_ends (store/ends.py) from what the rebuild knows (first and last event, the
    # previous session's end) instead of a group over every event
    con.execute(
        f"""INSERT INTO session_ends
            SELECT {p}, skey, profile_id, source, true, first_ts, last_ts, events,
                   prev_last_ts, first_seq, name, last_name, properties
            FROM rs_heads WHERE concluded"""
    )
    con.execute("DROP TABLE rs_heads")


def _stored(
    side: duckdb.DuckDBPyConnection, p: str, names: pa.Array, eligible: str, timeout: int
) -> pa.Table | None:
    """The project's stored sessions (their profiles as codes of `names`), on a cursor of
    their own; None when not enough can be kept: there are none, most were concluded
    under another timeout, one is of a profile without a code, or an assignment points
    at an event R1 now leaves out (`_assigned`)."""
    row = side.execute(
        f"""SELECT count(*), count(*) FILTER (WHERE NOT concluded
                                              OR concluded_at = last_ts + {literal(timeout)})
            FROM sessions WHERE project_id = {p}"""
    ).fetchall()
    if not row or 2 * int(row[0][1]) < int(row[0][0]):
        return None  # (a new timeout: then every concluded session changes)
    side.register("rs_dict", _coded(names))
    stored = side.sql(
        f"""SELECT s.skey, d.code, s.first_ts, s.last_ts, s.events, s.concluded,
                   coalesce(s.concluded_at, -1) AS at
            FROM sessions s LEFT JOIN rs_dict d USING (profile_id)
            WHERE s.project_id = {p}"""
    ).to_arrow_table()
    side.unregister("rs_dict")
    if not stored.num_rows or stored.column("code").null_count:
        return None
    left_out = side.sql(f"SELECT seq FROM events WHERE project_id = {p} AND NOT {eligible}")
    return None if _assigned(side, p, ints(left_out.to_arrow_table().column(0))) else stored


def _coded(names: pa.Array) -> pa.Table:
    return pa.table({"code": int_array(np.arange(len(names))), "profile_id": names})


def _kept(
    con: duckdb.DuckDBPyConnection, p: str, stored: pa.Table, runs: _Runs, timeout: int
) -> _Kept | None:
    """The stored sessions that hold the same events as a rebuilt one; None when all is
    to be rewritten (most sessions changed)."""
    n = len(runs.code)
    if not n:
        return None
    s_code, s_first = ints(stored.column("code")), ints(stored.column("first_ts"))
    low = min(int(s_first.min()), int(runs.first_ts.min()))
    high = max(int(s_first.max()), int(runs.first_ts.max()))
    bits = (high - low).bit_length()
    if max(int(runs.code.max()), int(s_code.max())).bit_length() + bits > 62:
        return None
    key = (runs.code << bits) | (runs.first_ts - low)  # strictly increasing
    s_key = (s_code << bits) | (s_first - low)
    # the stored sessions in key order (equal keys in stored order), so that the search
    # runs along `key` (at 10M events: 0.05 s, against 0.6 s for 1.6M keys in no order)
    by_key = np.argsort(s_key)
    s_key = s_key[by_key]
    tie = np.flatnonzero(s_key[1:] == s_key[:-1])
    if len(tie):  # (rare: two stored sessions of one profile that begin together)
        rows = _distinct(np.concatenate([tie, tie + 1]))
        sub = by_key[rows]
        by_key[rows] = sub[np.lexsort((sub, s_key[rows]))]
    at = np.minimum(np.searchsorted(key, s_key), n - 1)
    same = key[at] == s_key
    for column, mine in (
        ("last_ts", runs.last_ts[at]),
        ("events", runs.events[at]),
        ("at", np.where(runs.concluded[at], runs.last_ts[at] + timeout, -1)),
    ):
        same &= mine == ints(stored.column(column))[by_key]
    same &= runs.concluded[at] == flags(stored.column("concluded"))[by_key]
    hits = np.flatnonzero(same)
    first = np.ones(len(hits), dtype=bool)  # (one stored row per session: the first)
    first[1:] = at[hits[1:]] != at[hits[:-1]]
    hits = hits[first]
    if 2 * len(hits) < n:
        return None
    at = at[hits]
    hits = by_key[hits]  # (rows of `stored`)
    s_skey = ints(stored.column("skey"))
    # R3's id is made from the first event when the session opens: live, the first to
    # arrive (the least seq), which need not be the first in time; a rebuild names it
    # after the first in time. Where the two are one event, so is the stored id (the
    # session opened by it); the others are checked against their stored ids.
    first_arrival = np.minimum.reduceat(runs.seq, runs.start)[at]
    doubt = np.flatnonzero(first_arrival != runs.first_seq[at])
    keep = np.ones(len(hits), dtype=bool)
    keep[doubt[_renamed(con, p, s_skey[hits[doubt]], runs.first_seq[at[doubt]])]] = False
    hits, at = hits[keep], at[keep]
    kept = np.full(n, -1, dtype=np.int64)
    kept[at] = s_skey[hits]
    gone = np.ones(len(s_skey), dtype=bool)
    gone[hits] = False
    return _Kept(kept, s_skey[gone], s_code[gone])


def _distinct(values: I64) -> I64:
    """The distinct values, in order (np.unique, but without its first call's 20 ms
    import of numpy.ma inside the timed rebuild)."""
    ordered = np.sort(values)
    first = np.ones(len(ordered), dtype=bool)
    first[1:] = ordered[1:] != ordered[:-1]
    return ordered[first]


def _renamed(con: duckdb.DuckDBPyConnection, p: str, skey: I64, head: I64) -> I64:
    """Of the stored sessions `skey`, the indexes of those whose id is not the one R3
    makes from the rebuilt session's first event `head` (R2 order): a session made live
    is named after the event that opened it, which may have come after an earlier one
    in time."""
    con.register(
        "rs_named",
        pa.table(
            {
                "i": int_array(np.arange(len(skey), dtype=np.int64)),
                "skey": int_array(skey),
                "head": int_array(head),
            }
        ),
    )
    renamed = con.sql(
        f"""SELECT n.i FROM rs_named n
            JOIN sessions s ON s.project_id = {p} AND s.skey = n.skey
            JOIN events e ON e.project_id = {p} AND e.seq = n.head
            WHERE s.session_id <> {session_id_sql("s.profile_id", "e.message_id")}"""
    ).to_arrow_table()
    con.unregister("rs_named")
    return ints(renamed.column(0))


def _assigned(con: duckdb.DuckDBPyConnection, p: str, left_out: I64) -> bool:
    """Whether a stored assignment to a session points at one of the events `left_out`
    (R1 leaves them out now: the excluded names changed since): then no stored session
    is trusted to hold the events it would be kept for."""
    con.register("rs_left_out", pa.table({"seq": int_array(left_out)}))
    row = con.execute(
        f"""SELECT EXISTS (SELECT 1 FROM event_sessions WHERE project_id = {p}
                           AND skey IS NOT NULL AND seq IN (SELECT seq FROM rs_left_out))"""
    ).fetchall()
    con.unregister("rs_left_out")
    return bool(row and row[0][0])


def _refresh(
    con: duckdb.DuckDBPyConnection,
    pid: int,
    timeout: int,
    runs: _Runs,
    skeys: I64,
    kept: I64,
    touched: I64,
    names: pa.Array,
) -> None:
    """The profiles whose sessions changed (codes `touched`, ids in `names` by code):
    their latest session and horizon (as `refresh_from_sessions` sets every profile's,
    here from the rebuilt sessions: a profile's last one, and its last concluded one,
    which is that or the one before), and the previous session's end in the
    `session_ends` rows of their kept sessions."""
    p = literal(pid)
    last = np.searchsorted(runs.code, touched, side="right") - 1
    has = last >= 0
    has[has] = runs.code[last[has]] == touched[has]
    last = np.where(has, last, 0)
    ended = np.where(runs.concluded[last], last, last - 1)  # (not last: concluded)
    has_ended = has & (ended >= 0)
    has_ended[has_ended] = runs.code[ended[has_ended]] == touched[has_ended]
    ended = np.maximum(ended, 0)
    latest = pa.table(
        {
            "profile_id": names.take(int_array(touched)),
            "skey": int_array(skeys[last], mask=~has),
            "f": int_array(runs.first_ts[last], mask=~has),
            "h": int_array(runs.last_ts[ended] + timeout, mask=~has_ended),
        }
    )
    con.register("rs_latest", latest)
    con.execute(
        f"""UPDATE profiles SET latest_session_id = x.sid, latest_first_ts = x.f, horizon = x.h
            FROM (SELECT l.profile_id, s.session_id AS sid, l.f, l.h FROM rs_latest l
                  LEFT JOIN sessions s ON s.project_id = {p} AND s.skey = l.skey) x
            WHERE profiles.project_id = {p} AND profiles.profile_id = x.profile_id"""
    )
    con.unregister("rs_latest")
    is_touched = np.zeros(len(runs.code) and int(runs.code.max()) + 1, dtype=bool)
    is_touched[touched[touched < len(is_touched)]] = True
    pick = np.flatnonzero((kept >= 0) & runs.concluded & is_touched[runs.code])
    if not len(pick):
        return
    con.register(
        "rs_prev",
        pa.table(
            {
                "skey": int_array(kept[pick]),
                "prev": int_array(runs.prev_last_ts[pick], mask=~runs.has_prev[pick]),
            }
        ),
    )
    # rewritten (delete and insert), not updated: an UPDATE of a few thousand rows
    # spread over the table makes DuckDB checkpoint at the commit (0.6 s at 10M events)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE rs_moved AS
            SELECT m.* REPLACE (x.prev AS prev_last_ts) FROM session_ends m JOIN rs_prev x
            ON m.project_id = {p} AND m.skey = x.skey
            WHERE m.prev_last_ts IS DISTINCT FROM x.prev"""
    )
    con.unregister("rs_prev")
    con.execute(
        f"""DELETE FROM session_ends WHERE project_id = {p}
            AND skey IN (SELECT skey FROM rs_moved)"""
    )
    con.execute("INSERT INTO session_ends SELECT * FROM rs_moved")
    con.execute("DROP TABLE rs_moved")


def _read(con: duckdb.DuckDBPyConnection, pid: int, eligible: str) -> tuple[Chunks, pa.Array, bool]:
    """The eligible events' profile code, time and seq (in no set order, in the pieces
    DuckDB hands them over: not copied into one array), the profile id of each code,
    and whether every profile of the events has a row in `profiles`.

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
    con.register("rs_known", _coded(names))
    events = con.sql(
        f"""SELECT d.code, e.ts, e.seq FROM events e LEFT JOIN rs_known d USING (profile_id)
            WHERE e.project_id = {p} AND {eligible}"""
    ).to_arrow_table()
    con.unregister("rs_known")
    if events.column("code").null_count:
        events = con.sql(
            f"SELECT seq, ts, profile_id FROM events WHERE project_id = {p} AND {eligible}"
        ).to_arrow_table()
        encoded = pc.dictionary_encode(events.column("profile_id")).combine_chunks()
        seq, ts = ints(events.column("seq")), ints(events.column("ts"))
        return [(ints(encoded.indices), ts, seq)], encoded.dictionary, False
    chunks = [
        (ints(b.column(0)), ints(b.column(1)), ints(b.column(2))) for b in events.to_batches()
    ]
    return chunks, names, True
