"""`lull import`: canonical NDJSON in, replayed on R5's simulated clock, all or nothing.

The file is parsed, checked and stored by DuckDB in one statement (`ingest.ndjson`), the
duplicates (R6) dropped against every stored event, and the arrivals replayed by the live
engine (`engine.replay` over `engine.vector`), batch by batch on the clock the file's
`received_at` gives. The sessions' ids (R3) are made in the statement that writes them,
from each session's first event.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from lull.engine import vector
from lull.engine.arrow import bool_array, flags, int_array, ints, str_array
from lull.engine.replay import Replayed, replay
from lull.engine.state import NONE
from lull.ingest.ndjson import (
    HASH,
    UNNUMBERED,
    drop_repeats,
    finish,
    insert,
    maybe_repeated,
    unnumbered_seq,
)
from lull.model import Settings, session_id_sql
from lull.store.db import literal, transaction
from lull.store.ends import fill as fill_ends
from lull.store.projects import eligible_sql, get_settings, take_seq, take_skey
from lull.store.sessions import conclude_due

Progress = Callable[[str], None]
I64 = npt.NDArray[np.int64]
BOOL = npt.NDArray[np.bool_]


@dataclass(slots=True)
class ImportReport:
    records: int
    duplicates: int
    eligible: int
    late: int
    sessions: int
    concluded: int
    seconds: float

    def as_json(self) -> dict[str, object]:
        return {
            "records": self.records,
            "imported": self.records - self.duplicates,
            "duplicates": self.duplicates,
            "eligible": self.eligible,
            "late": self.late,
            "sessions_touched": self.sessions,
            "concluded": self.concluded,
            "seconds": round(self.seconds, 3),
        }


def import_ndjson(
    con: duckdb.DuckDBPyConnection,
    pid: int,
    path: str,
    *,
    now: int,
    keep_open: bool = False,
    progress: Progress | None = None,
) -> ImportReport:
    """Import `path` into project `pid` as if received live (docs/sessions.md, R5's clock).

    Events without `received_at` arrive at `now`. After the last event the clock moves
    on to `now` (or, with `keep_open`, stays at the last arrival, so that sessions still
    open can be continued by a later import of the next part of the history).
    """
    started = time.perf_counter()
    step = progress or (lambda _name: None)
    settings = get_settings(con, pid)
    limit = con.execute("SELECT current_setting('memory_limit')").fetchone()
    try:
        report = _import(con, pid, path, now, settings, keep_open, step)
    finally:  # (after the commit: at the full limit, writing out is the peak otherwise)
        if limit:
            con.execute(f"SET memory_limit = {literal(str(limit[0]))}")
    report.seconds = time.perf_counter() - started
    return report


def _import(
    con: duckdb.DuckDBPyConnection,
    pid: int,
    path: str,
    now: int,
    settings: Settings,
    keep_open: bool,
    step: Progress,
) -> ImportReport:
    """`import_ndjson` in one transaction (its time is filled in by the caller)."""
    timeout = settings.timeout_ms
    with transaction(con):
        step("parse, check and store")
        seq0 = take_seq(con, pid, 0)
        records = insert(con, pid, path, now)
        take_seq(con, pid, records)
        # the parse is done: leave the memory to the engine's arrays from here on
        con.execute("SET memory_limit = '300MB'")
        step("skip duplicates")

        def read(numbered: bool) -> tuple[_Arrivals, int, _Prior]:
            a = _Arrivals.read(con, pid, seq0, eligible_sql(settings), numbered=numbered)
            end = a.last_clock if keep_open and a.last_clock is not None else now
            return a, end, _Prior.load(con, pid, a.names)

        def engine(a: _Arrivals, end: int, prior: _Prior) -> Replayed:
            return replay(prior.table, a.code, a.ts, a.clock, timeout, end=end, stored=prior.stored)

        # The engine (one core of Python and NumPy) runs while DuckDB checks the large
        # properties, numbers the rows and looks for duplicates; a file with duplicates
        # (rare) is replayed again without them.
        arrivals, end, prior = read(numbered=False)
        with con.cursor() as history, ThreadPoolExecutor(1) as pool:
            prior.con = history  # (the store's concluded sessions: committed rows only)
            running = pool.submit(engine, arrivals, end, prior)
            finish(con, pid, path, now, seq0)
            repeated = maybe_repeated(con, pid, seq0, arrivals.hashes)
            arrivals.hashes = _NO_HASHES
            step("sessionize")
            out = running.result()
        duplicates = drop_repeats(con, pid, seq0) if repeated else 0
        if duplicates:
            con.unregister("imp_dict")
            arrivals, end, prior = read(numbered=True)
            out = engine(arrivals, end, prior)
        ts = arrivals.ts
        arrivals.engine_done()  # (their memory is the peak's: see docs/benchmarks.md)
        ends = _first_and_last(out, ts)
        del ts
        step("write sessions")
        eligible, late = len(arrivals.seq), int(np.count_nonzero(out.late))
        skey = _keys(con, pid, prior, out)
        rows = _Rows.of(arrivals, prior, out, skey, ends)
        del ends
        _write_assignments(con, pid, arrivals, out, skey)  # (then the per-event arrays go)
        profile, source = _write_sessions(con, pid, timeout, arrivals, prior, out, skey, rows)
        _write_ends(con, pid, out, skey, rows, profile, source)
        del profile, source, rows
        _write_profiles(con, pid, timeout, arrivals, out, skey)
        concluded = conclude_due(con, pid, end, timeout)  # the store's other profiles
        con.unregister("imp_dict")
        fill_ends(con, pid)  # the board's entry/exit and breakdowns read them (figures.py)
    return ImportReport(
        records=records,
        duplicates=duplicates,
        eligible=eligible,
        late=late,
        sessions=len(out.code),
        concluded=concluded + int(np.count_nonzero(out.concluded)),
        seconds=0.0,
    )


@dataclass(slots=True)
class _Arrivals:
    """The stored events of this import: the eligible ones in arrival order (`seq`, profile
    `code`, `ts`, R5's `clock`), and per profile code its first and last event time."""

    names: pa.Array
    seq: I64
    code: I64
    ts: I64
    clock: I64
    first_seen: I64
    last_seen: I64
    last_clock: int | None
    hashes: I64  # every row's message id hashed (`ndjson.HASH`), for R6

    def engine_done(self) -> None:
        """Drop what only the engine needed."""
        self.code = self.ts = self.clock = np.zeros(0, dtype=np.int64)

    @classmethod
    def read(
        cls, con: duckdb.DuckDBPyConnection, pid: int, seq0: int, eligible: str, *, numbered: bool
    ) -> _Arrivals:
        """The rows of this import: numbered (seq >= seq0), or not yet (`ndjson.finish`
        not run: their seq is then made from their row ids as it will number them)."""
        p = literal(pid)
        which = (
            f"project_id = {p} AND seq >= {literal(seq0)}"
            if numbered
            else UNNUMBERED.replace("{pid}", p)
        )
        fresh = con.sql(
            f"""SELECT {"seq" if numbered else "rowid AS seq"}, received_at AS r, ts,
                       profile_id, {eligible} AS eligible, {HASH} AS h
                FROM events WHERE {which}"""
        ).to_arrow_table()
        seq = ints(fresh.column("seq"))
        if len(seq) > 1 and not bool(np.all(seq[1:] > seq[:-1])):
            fresh = fresh.take(int_array(np.argsort(seq, kind="stable")))
            seq = ints(fresh.column("seq"))
        if not numbered:
            seq = unnumbered_seq(seq, seq0)
        encoded = pc.dictionary_encode(fresh.column("profile_id")).combine_chunks()
        code, names = ints(encoded.indices), encoded.dictionary
        ts = ints(fresh.column("ts"))
        clock = np.maximum.accumulate(ints(fresh.column("r")))  # it never goes back
        elig = flags(fresh.column("eligible"))
        hashes = ints(fresh.column("h"))  # (unsigned: the same 64 bits as int64)
        del fresh, encoded
        first_seen = np.full(len(names), np.iinfo(np.int64).max, dtype=np.int64)
        last_seen = np.full(len(names), np.iinfo(np.int64).min, dtype=np.int64)
        np.minimum.at(first_seen, code, ts)
        np.maximum.at(last_seen, code, ts)
        last_clock = int(clock[-1]) if len(clock) else None
        return cls(
            names, seq[elig], code[elig], ts[elig], clock[elig], first_seen, last_seen,
            last_clock, hashes,
        )  # fmt: skip


_NO_HASHES = np.zeros(0, dtype=np.int64)


@dataclass(slots=True)
class _Prior:
    """What the store knows of the import's profiles: their open session (key, id,
    source) and horizon, as the engine's table; their concluded sessions on demand."""

    con: duckdb.DuckDBPyConnection
    pid: int
    table: vector.Profiles
    skey: I64  # per code: the store key of its open session, -1 if none
    open_id: npt.NDArray[np.object_]  # per code: its id and source (None: none)
    open_source: npt.NDArray[np.object_]
    stored_horizon: I64

    @classmethod
    def load(cls, con: duckdb.DuckDBPyConnection, pid: int, names: pa.Array) -> _Prior:
        n = len(names)
        con.register(
            "imp_dict",
            pa.table({"code": int_array(np.arange(n, dtype=np.int64)), "profile_id": names}),
        )
        rows = con.execute(
            """SELECT d.code, o.skey, o.session_id, o.first_ts, o.last_ts, o.events, o.source,
                      p.horizon
               FROM imp_dict d
               LEFT JOIN sessions o ON o.project_id = ? AND NOT o.concluded
                    AND o.profile_id = d.profile_id
               LEFT JOIN profiles p ON p.project_id = ? AND p.profile_id = d.profile_id
               WHERE o.session_id IS NOT NULL OR p.horizon IS NOT NULL""",
            [pid, pid],
        ).fetchall()
        table = vector.Profiles.new(names.to_pylist())
        skey = np.full(n, -1, dtype=np.int64)
        for code, key, sid, first, last, events, source, horizon in rows:
            if sid is not None:
                skey[code] = key
                table.open_id[code], table.open_source[code] = sid, source
                table.open_first[code], table.open_last[code] = first, last
                table.open_events[code] = events
            if horizon is not None:
                table.horizon[code] = horizon
        return cls(
            con, pid, table, skey, table.open_id.copy(), table.open_source.copy(),
            table.horizon.copy(),
        )  # fmt: skip

    def stored(self, code: int) -> list[tuple[int, int]]:
        """The profile's concluded sessions in the store (the exact engine's history)."""
        if self.stored_horizon[code] == NONE:
            return []
        rows = self.con.execute(
            """SELECT first_ts, last_ts FROM sessions
               WHERE project_id = ? AND concluded AND profile_id = ? ORDER BY 1, 2""",
            [self.pid, str(self.table.profile_id[code])],
        ).fetchall()
        return [(int(a), int(b)) for a, b in rows]


def _keys(con: duckdb.DuckDBPyConnection, pid: int, prior: _Prior, out: Replayed) -> I64:
    """Each session's store key: a carried open session keeps its own, a new one takes
    the project's next."""
    new = out.head >= 0
    skey = np.empty(len(out.code), dtype=np.int64)
    skey[~new] = prior.skey[out.code[~new]]
    fresh = int(np.count_nonzero(new))
    skey0 = take_skey(con, pid, fresh)
    skey[new] = np.arange(skey0, skey0 + fresh, dtype=np.int64)
    return skey


@dataclass(slots=True)
class _Rows:
    """The events the writes need, by seq (taken before the per-event arrays go): each
    new session's head (its first to arrive: its id and source), and for the sessions
    with `session_ends` rows (`ends`, see `_Rows.of`) their first and last in R2 order
    and the end of the profile's previous session among them."""

    heads: I64
    ends: I64  # indexes of the sessions with ends rows, by (profile, first time)
    first_seq: I64
    last_seq: I64
    prev_last_ts: I64
    no_prev: BOOL

    @classmethod
    def of(
        cls,
        arrivals: _Arrivals,
        prior: _Prior,
        out: Replayed,
        skey: I64,
        ends: tuple[I64, I64] | None,
    ) -> _Rows:
        """`session_ends` rows are made here for the concluded sessions of the profiles
        this import made all the sessions of (none stored before, none carried); the
        others (sessions carried from or following the store's) are left to
        `ends.fill`, which finds them missing and computes them from the events, as it
        does all of them when `ends` is None (times and rows too wide to pack)."""
        heads = arrivals.seq[out.head[out.head >= 0]]
        none = np.zeros(0, dtype=np.int64)
        if ends is None:
            return cls(heads, none, none, none, none, np.zeros(0, dtype=bool))
        first, last = ends
        fresh = (prior.stored_horizon == NONE) & (prior.skey < 0)
        pick = np.flatnonzero(out.concluded & (out.head >= 0) & fresh[out.code] & (first >= 0))
        code = out.code[pick]
        order = np.lexsort((skey[pick], out.first_ts[pick], code))
        pick, code = pick[order], code[order]
        prev = np.zeros(len(pick), dtype=np.int64)
        prev[1:] = out.last_ts[pick[:-1]]
        no_prev = np.ones(len(pick), dtype=bool)
        no_prev[1:] = code[1:] != code[:-1]
        return cls(heads, pick, arrivals.seq[first[pick]], arrivals.seq[last[pick]], prev, no_prev)


def _write_assignments(
    con: duckdb.DuckDBPyConnection, pid: int, arrivals: _Arrivals, out: Replayed, skey: I64
) -> None:
    """Each eligible event's session (`event_sessions`); then drops the per-event arrays
    (`arrivals.seq`, `out.session`, `out.late`): the writes after need none of them."""
    hit = out.session >= 0
    row_skey = out.session  # (in place: one array of a row fewer at the peak)
    row_skey[hit] = skey[out.session[hit]]
    con.register(
        "imp_assign",
        pa.table(
            {
                "seq": int_array(arrivals.seq),
                "skey": int_array(row_skey, mask=~hit),
                "late": bool_array(out.late),
            }
        ),
    )
    del hit, row_skey
    con.execute(
        f"INSERT INTO event_sessions SELECT {literal(pid)}, seq, skey, late FROM imp_assign"
    )
    con.unregister("imp_assign")
    arrivals.seq = out.session = np.zeros(0, dtype=np.int64)
    out.late = np.zeros(0, dtype=bool)


def _write_sessions(
    con: duckdb.DuckDBPyConnection,
    pid: int,
    timeout: int,
    arrivals: _Arrivals,
    prior: _Prior,
    out: Replayed,
    skey: I64,
    rows: _Rows,
) -> tuple[pa.Array, pa.Array]:
    """The sessions, their ids made from their head events (R3); returns each session's
    profile id and source. The rows are put together in Arrow and appended: a join of
    the sessions with the events table was planned with the events as its build side
    (seconds at 10M; docs/benchmarks.md)."""
    p, t = literal(pid), literal(timeout)
    new = out.head >= 0
    heads = _events_at(con, pid, rows.heads, "message_id, source")
    message = _placed(heads.column("message_id"), new)
    source = _placed(heads.column("source"), new)
    del heads
    carried = np.flatnonzero(~new)
    sid: pa.Array = pa.nulls(len(out.code), pa.string())
    if len(carried):  # an open session from before keeps its id and source
        was_open = out.code[carried]
        sid = _placed(str_array(prior.open_id[was_open].tolist()), ~new)
        kept = _placed(str_array(prior.open_source[was_open].tolist()), ~new)
        source = pc.if_else(bool_array(new), source, kept)
        con.register("imp_carried", pa.table({"skey": int_array(skey[carried])}))
        con.execute(
            f"""DELETE FROM sessions WHERE project_id = {p} AND NOT concluded
                AND skey IN (SELECT skey FROM imp_carried)"""
        )
        con.unregister("imp_carried")
    profile = arrivals.names.take(int_array(out.code))
    con.register(
        "imp_sessions",
        pa.table(
            {
                "skey": int_array(skey),
                "sid": sid,
                "profile_id": profile,
                "message_id": message,
                "source": source,
                "first_ts": int_array(out.first_ts),
                "last_ts": int_array(out.last_ts),
                "events": int_array(out.events),
                "concluded": bool_array(out.concluded),
            }
        ),
    )
    del sid, message
    con.execute(
        f"""INSERT INTO sessions
            SELECT {p}, skey, coalesce(sid, {session_id_sql("profile_id", "message_id")}),
                   profile_id, first_ts, last_ts, events, source, concluded,
                   CASE WHEN concluded THEN last_ts + {t} END
            FROM imp_sessions"""
    )
    con.unregister("imp_sessions")
    return profile, source


def _events_at(con: duckdb.DuckDBPyConnection, pid: int, seqs: I64, columns: str) -> pa.Table:
    """`columns` of the project's events whose seq is one of `seqs` (distinct), in the
    order of `seqs`: one scan of the events filtered by the seqs (a semi join)."""
    con.register("imp_at", pa.table({"seq": int_array(seqs)}))
    found = con.sql(
        f"""SELECT e.seq, {columns} FROM events e SEMI JOIN imp_at a ON e.seq = a.seq
            WHERE e.project_id = {literal(pid)}"""
    ).to_arrow_table()
    con.unregister("imp_at")
    at = ints(found.column("seq"))
    wanted = np.argsort(seqs)  # the same seqs both: match them in sorted order
    got = np.argsort(at)
    if len(at) != len(seqs) or not np.array_equal(at[got], seqs[wanted]):
        raise AssertionError("an event of this import is missing from the store")
    where = np.empty(len(seqs), dtype=np.int64)
    where[wanted] = got
    return found.drop_columns(["seq"]).take(int_array(where))


def _placed(values: pa.ChunkedArray | pa.Array, mask: BOOL) -> pa.Array:
    """`values` (one for each True of `mask`) at the True places of a column as long as
    `mask`, null elsewhere."""
    index = np.full(len(mask), -1, dtype=np.int64)
    index[mask] = np.arange(int(np.count_nonzero(mask)), dtype=np.int64)
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return values.take(int_array(index, mask=index < 0))


def _first_and_last(out: Replayed, ts: I64) -> tuple[I64, I64] | None:
    """Per session, the rows (arrival indexes) of its first and last event in R2 order
    (time, then arrival), -1 for none; None when times and rows do not pack in 62 bits."""
    rows = np.flatnonzero(out.session >= 0)
    first = np.full(len(out.code), -1, dtype=np.int64)
    last = np.full(len(out.code), -1, dtype=np.int64)
    if not len(rows):
        return first, last
    at = out.session[rows]
    key = ts[rows]
    low = int(key.min())
    shift = max(len(out.session) - 1, 1).bit_length()
    if (int(key.max()) - low).bit_length() + shift > 62:
        return None
    key -= low  # (time, row) as one number, built in place: the arrays are the peak's
    key <<= shift
    key |= rows
    del rows
    lo = np.full(len(out.code), np.iinfo(np.int64).max, dtype=np.int64)
    hi = np.full(len(out.code), -1, dtype=np.int64)
    np.minimum.at(lo, at, key)
    np.maximum.at(hi, at, key)
    mask = (1 << shift) - 1
    seen = hi >= 0
    first[seen], last[seen] = lo[seen] & mask, hi[seen] & mask
    return first, last


def _write_ends(
    con: duckdb.DuckDBPyConnection,
    pid: int,
    out: Replayed,
    skey: I64,
    rows: _Rows,
    profile: pa.Array,
    source: pa.Array,
) -> None:
    """The `session_ends` rows (store/ends.py) the import knows (`_Rows.of`): each
    session's first and last event's names and the first's properties, read from the
    store by seq, put together in Arrow and appended."""
    pick = rows.ends
    if not len(pick):
        return
    firsts = _events_at(con, pid, rows.first_seq, "name, properties")
    lasts = _events_at(con, pid, rows.last_seq, "name")
    taken = int_array(pick)
    con.register(
        "imp_ends",
        pa.table(
            {
                "skey": int_array(skey[pick]),
                "profile_id": profile.take(taken),
                "source": source.take(taken),
                "first_ts": int_array(out.first_ts[pick]),
                "last_ts": int_array(out.last_ts[pick]),
                "events": int_array(out.events[pick]),
                "prev_last_ts": int_array(rows.prev_last_ts, mask=rows.no_prev),
                "first_seq": int_array(rows.first_seq),
                "first_name": firsts.column("name"),
                "last_name": lasts.column("name"),
                "first_properties": firsts.column("properties"),
            }
        ),
    )
    del firsts, lasts
    con.execute(
        f"""INSERT INTO session_ends
            SELECT {literal(pid)}, skey, profile_id, source, true, first_ts, last_ts, events,
                   prev_last_ts, first_seq, first_name, last_name, first_properties
            FROM imp_ends"""
    )
    con.unregister("imp_ends")


def _write_profiles(
    con: duckdb.DuckDBPyConnection,
    pid: int,
    timeout: int,
    arrivals: _Arrivals,
    out: Replayed,
    skey: I64,
) -> None:
    """Each profile of the import: its latest session, horizon and first and last seen."""
    n = len(arrivals.names)
    latest = np.full(n, -1, dtype=np.int64)
    latest_first = np.full(n, NONE, dtype=np.int64)
    if len(out.code):
        order = np.lexsort((out.first_ts, out.code))
        last = np.ones(len(order), dtype=bool)
        last[:-1] = out.code[order[1:]] != out.code[order[:-1]]
        at = order[last]
        latest[out.code[at]] = skey[at]
        latest_first[out.code[at]] = out.first_ts[at]
    horizon = np.full(n, NONE, dtype=np.int64)
    done = np.flatnonzero(out.concluded)
    np.maximum.at(horizon, out.code[done], out.last_ts[done] + timeout)
    con.register(
        "imp_seen",
        pa.table(
            {
                "code": int_array(np.arange(n, dtype=np.int64)),
                "latest_skey": int_array(latest, mask=latest < 0),
                "f": int_array(latest_first, mask=latest_first == NONE),
                "h": int_array(horizon, mask=horizon == NONE),
                "lo": int_array(arrivals.first_seen),
                "hi": int_array(arrivals.last_seen),
            }
        ),
    )
    p = literal(pid)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE imp_prof AS
            SELECT d.profile_id,
                   CASE WHEN o.latest_first_ts IS NULL OR n.f >= o.latest_first_ts
                        THEN coalesce(s.session_id, o.latest_session_id)
                        ELSE o.latest_session_id END AS latest_session_id,
                   greatest(n.f, o.latest_first_ts) AS latest_first_ts,
                   greatest(n.h, o.horizon) AS horizon,
                   least(n.lo, o.first_seen) AS first_seen,
                   greatest(n.hi, o.last_seen) AS last_seen, o.properties
            FROM imp_seen n JOIN imp_dict d USING (code)
            LEFT JOIN sessions s ON s.project_id = {p} AND s.skey = n.latest_skey
            LEFT JOIN profiles o ON o.project_id = {p} AND o.profile_id = d.profile_id"""
    )
    con.unregister("imp_seen")
    con.execute(
        f"""DELETE FROM profiles WHERE project_id = {p}
            AND profile_id IN (SELECT profile_id FROM imp_prof)"""
    )
    con.execute(f"INSERT INTO profiles SELECT {p}, * FROM imp_prof")
    con.execute("DROP TABLE imp_prof")
