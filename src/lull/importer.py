"""`lull import`: canonical NDJSON in, replayed on R5's simulated clock, all or nothing."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pyarrow as pa

from lull.engine import exact
from lull.engine.columnar import NONE, Prior, Runs, sessionize
from lull.engine.state import Arrival, ProfileState, Session
from lull.ingest.ndjson import dedupe, load
from lull.model import session_id_sql
from lull.store.db import in_seq_order, int_column, literal, profile_codes, transaction
from lull.store.projects import eligible_sql, get_settings, take_seq, take_skey
from lull.store.sessions import conclude_due

Progress = Callable[[str], None]
I64 = np.ndarray


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
    timeout = settings.timeout_ms
    p = literal(pid)
    with transaction(con):
        step("parse, check and store")
        seq0 = take_seq(con, pid, 0)
        records = load(con, pid, path, now, seq0)
        take_seq(con, pid, records)
        # the parse is done: leave the memory to the engine's arrays from here on
        limit = con.execute("SELECT current_setting('memory_limit')").fetchone()
        con.execute("SET memory_limit = '256MB'")
        step("skip duplicates")
        duplicates = dedupe(con, pid, seq0)
        fresh = con.sql(
            f"""SELECT seq, received_at AS r, ts, profile_id, {eligible_sql(settings)} AS eligible
                FROM events WHERE project_id = {p} AND seq >= {literal(seq0)}"""
        ).to_arrow_table()
        fresh = in_seq_order(fresh)
        seq_all = int_column(fresh, "seq")
        r_all = int_column(fresh, "r")
        clock_all = np.maximum.accumulate(r_all) if len(r_all) else r_all
        end = int(clock_all[-1]) if keep_open and len(clock_all) else now
        step("sessionize")
        elig = np.asarray(fresh.column("eligible").combine_chunks().to_numpy(False), bool)
        seq = seq_all[elig]
        ts = int_column(fresh, "ts")[elig]
        clock = clock_all[elig]
        profiles = fresh.column("profile_id").filter(pa.array(elig))
        del fresh, seq_all, r_all, clock_all, elig  # keep the peak memory of big imports down
        plan = _Plan(con, pid, seq0, profiles, seq, ts, clock, timeout, end)
        del profiles, clock
        step("write sessions")
        late = plan.write()
        concluded = conclude_due(con, pid, end, timeout)
        for name in ("imp_sessions", "imp_dict"):
            con.execute(f"DROP TABLE IF EXISTS {name}")
        if limit:
            con.execute(f"SET memory_limit = '{limit[0]}'")
    return ImportReport(
        records=records,
        duplicates=duplicates,
        eligible=len(seq),
        late=late,
        sessions=plan.session_count,
        concluded=concluded + plan.closed_count,
        seconds=time.perf_counter() - started,
    )


@dataclass(slots=True)
class _RunTable:
    """The columnar runs as sessions: per run, its key, profile code and figures."""

    skey: I64
    code: I64
    first_ts: I64
    last_ts: I64
    events: I64
    closed: np.ndarray
    sid: list[str | None]
    source: list[str | None]


def _close_into(state: ProfileState, first: int, last: int, timeout: int) -> None:
    """Record a session concluded before the exact replay starts."""
    assert state.history is not None
    state.history.append((first, last))
    state.history.sort()
    state.horizon = max(state.horizon or last + timeout, last + timeout)


@dataclass(slots=True)
class _Extra:
    """Sessions found outside the columnar runs: open ones ended, and the slow profiles'."""

    skey: list[int] = field(default_factory=list)
    code: list[int] = field(default_factory=list)
    sid: list[str] = field(default_factory=list)
    first_ts: list[int] = field(default_factory=list)
    last_ts: list[int] = field(default_factory=list)
    events: list[int] = field(default_factory=list)
    source: list[str] = field(default_factory=list)
    concluded: list[bool] = field(default_factory=list)

    def add(self, skey: int, code: int, s: Session, concluded: bool) -> None:
        self.skey.append(skey)
        self.code.append(code)
        self.sid.append(s.session_id)
        self.first_ts.append(s.first_ts)
        self.last_ts.append(s.last_ts)
        self.events.append(s.events)
        self.source.append(s.source)
        self.concluded.append(concluded)


class _Plan:
    """Sessions for one import: the columnar pass, then the exact pass for slow profiles."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        pid: int,
        seq0: int,
        profiles: pa.ChunkedArray,
        seq: I64,
        ts: I64,
        clock: I64,
        timeout: int,
        end: int,
    ) -> None:
        self.con, self.pid, self.timeout, self.end = con, pid, timeout, end
        self.seq0 = seq0
        self.seq, self.ts, self.clock = seq, ts, clock
        self.code, names = profile_codes(profiles)
        self.names: list[str] = names.to_pylist()
        con.register(
            "imp_dict_arrow", pa.table({"code": np.arange(len(names)), "profile_id": names})
        )
        con.execute("CREATE OR REPLACE TEMP TABLE imp_dict AS SELECT * FROM imp_dict_arrow")
        con.unregister("imp_dict_arrow")
        self.open: dict[int, tuple[int, Session]] = {}
        self.prior = self._load_prior(len(names))
        self.runs: Runs = sessionize(self.code, ts, clock, self.prior, timeout)
        self.closed_count = 0
        self.session_count = 0

    def _load_prior(self, n: int) -> Prior:
        rows = self.con.execute(
            """SELECT d.code, o.skey, o.session_id, o.first_ts, o.last_ts, o.events, o.source,
                      p.horizon
               FROM imp_dict d
               LEFT JOIN sessions o ON o.project_id = ? AND NOT o.concluded
                    AND o.profile_id = d.profile_id
               LEFT JOIN profiles p ON p.project_id = ? AND p.profile_id = d.profile_id
               WHERE o.session_id IS NOT NULL OR p.horizon IS NOT NULL""",
            [self.pid, self.pid],
        ).fetchall()
        prior = Prior(np.full(n, NONE), np.full(n, NONE), np.full(n, NONE))
        for code, skey, sid, first, last, events, source, horizon in rows:
            if sid is not None:
                prior.open_first[code], prior.open_last[code] = first, last
                self.open[code] = (skey, Session(sid, "", first, last, events, source))
            if horizon is not None:
                prior.horizon[code] = horizon
        return prior

    def write(self) -> int:
        """Write sessions, the events' sessions and profiles; returns the count of late events."""
        r, o = self.runs, self.runs.order
        n_runs = len(r.code)
        skey0 = take_skey(self.con, self.pid, n_runs + int(r.slow.sum()))
        runs = _RunTable(
            skey=np.arange(skey0, skey0 + n_runs, dtype=np.int64),
            code=r.code,
            first_ts=r.first_ts,
            last_ts=r.last_ts.copy(),
            events=r.events.copy(),
            closed=r.closed.copy(),
            sid=[None] * n_runs,
            source=[None] * n_runs,
        )
        for i in np.flatnonzero(~r.new):  # runs that continue the profile's open session
            skey, s = self.open[int(runs.code[i])]
            runs.skey[i], runs.sid[i], runs.source[i] = skey, s.session_id, s.source
            runs.events[i] += s.events
        extra = _Extra()
        row_skey = np.full(len(o), -1, dtype=np.int64)
        fast = r.row_run >= 0
        row_skey[fast] = runs.skey[r.row_run[fast]]
        late = self._slow(runs, extra, row_skey, itertools.count(skey0 + n_runs))

        con, pid = self.con, self.pid
        table = pa.table(
            {
                "skey": np.concatenate([runs.skey, np.array(extra.skey, np.int64)]),
                "code": np.concatenate([runs.code, np.array(extra.code, np.int64)]),
                "sid": pa.array(runs.sid + list(extra.sid), pa.string()),
                "first_seq": np.concatenate(
                    [
                        np.where(r.new, self.seq[np.maximum(r.first_row, 0)], -1),
                        np.full(len(extra.skey), -1),
                    ]
                ),
                "first_ts": np.concatenate([runs.first_ts, np.array(extra.first_ts, np.int64)]),
                "last_ts": np.concatenate([runs.last_ts, np.array(extra.last_ts, np.int64)]),
                "events": np.concatenate([runs.events, np.array(extra.events, np.int64)]),
                "source": pa.array(runs.source + list(extra.source), pa.string()),
                "concluded": np.concatenate([runs.closed, np.array(extra.concluded, bool)]),
            }
        )
        self.closed_count = int(np.count_nonzero(table.column("concluded").to_numpy()))
        self.session_count = table.num_rows
        con.register("imp_runs_arrow", table)
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE imp_sessions AS
               SELECT s.skey,
                      coalesce(s.sid, {session_id_sql("d.profile_id", "st.message_id")})
                          AS session_id,
                      d.profile_id, s.first_ts, s.last_ts, s.events,
                      coalesce(s.source, st.source) AS source, s.concluded,
                      CASE WHEN s.concluded THEN s.last_ts + {literal(self.timeout)} END
                          AS concluded_at
               FROM imp_runs_arrow s JOIN imp_dict d USING (code)
               LEFT JOIN events st ON st.project_id = {literal(self.pid)}
                    AND st.seq >= {literal(self.seq0)} AND st.seq = s.first_seq"""
        )
        con.unregister("imp_runs_arrow")
        con.execute(
            """DELETE FROM sessions WHERE project_id = ? AND NOT concluded
               AND skey IN (SELECT skey FROM imp_sessions)""",
            [pid],
        )
        con.execute(
            """INSERT INTO sessions
               SELECT ?, skey, session_id, profile_id, first_ts, last_ts, events, source,
                      concluded, concluded_at FROM imp_sessions""",
            [pid],
        )
        assign = pa.table(
            {
                "seq": self.seq[o],
                "skey": pa.array(row_skey, mask=row_skey < 0),
                "late": late,
            }
        )
        con.register("imp_assign_arrow", assign)
        con.execute(
            "INSERT INTO event_sessions SELECT ?, seq, skey, late FROM imp_assign_arrow", [pid]
        )
        con.unregister("imp_assign_arrow")
        self._write_profiles()
        return int(late.sum())

    def _slow(
        self, runs: _RunTable, extra: _Extra, row_skey: I64, next_key: itertools.count[int]
    ) -> I64:
        """Replay the slow rows exactly, each profile from where its regular prefix left
        off; fills their rows' sessions and returns the late flags."""
        r, o = self.runs, self.runs.order
        late = np.zeros(len(o), dtype=bool)
        rows = np.flatnonzero(r.slow)
        if not len(rows):
            return late
        slow_seq = self.seq[o[rows]]
        self.con.register("imp_slow", pa.table({"pos": np.arange(len(rows)), "seq": slow_seq}))
        details = self.con.sql(
            f"""SELECT st.message_id, st.source FROM imp_slow x
               JOIN events st ON st.project_id = {literal(self.pid)}
                    AND st.seq >= {literal(self.seq0)} AND st.seq = x.seq
               ORDER BY x.pos"""
        ).to_arrow_table()
        self.con.unregister("imp_slow")
        mids = details.column(0).to_pylist()
        srcs = details.column(1).to_pylist()
        ts_l = self.ts[o[rows]].tolist()
        clock_l = self.clock[o[rows]].tolist()
        seq_l = slow_seq.tolist()
        codes = self.code[o[rows]]
        cuts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1], True]).tolist()
        histories = self._histories({int(c) for c in codes[cuts[:-1]]})
        handed = {int(runs.code[i]): int(i) for i in np.flatnonzero(r.handed)}
        slow_skey: list[int] = []
        for a, b in itertools.pairwise(cuts):
            code = int(codes[a])
            profile_id = self.names[code]
            state = ProfileState(profile_id, history=list(histories.get(profile_id, [])))
            if self.prior.horizon[code] != NONE:
                state.horizon = int(self.prior.horizon[code])
            keys: dict[str, int] = {}
            run = handed.get(code)  # the open session from before is always a run
            placeholder = None
            if run is not None:
                # the regular prefix: its runs before the last are concluded
                lo = int(np.searchsorted(runs.code, code))
                for j in range(lo, run):
                    _close_into(state, int(runs.first_ts[j]), int(runs.last_ts[j]), self.timeout)
                placeholder = runs.sid[run] or f"run:{run}"
                keys[placeholder] = int(runs.skey[run])
                state.open = Session(
                    placeholder, profile_id, int(runs.first_ts[run]), int(runs.last_ts[run]),
                    int(runs.events[run]), runs.source[run] or "",
                )  # fmt: skip
            arrivals = [Arrival(ts_l[j], seq_l[j], mids[j], srcs[j]) for j in range(a, b)]
            out = exact.replay(state, clock_l[a:b], arrivals, self.timeout, self.end)
            finished = [(s, True) for s, _at in out.concluded]
            if state.open is not None:
                finished.append((state.open, False))
            for s, concluded in finished:
                if run is not None and s.session_id == placeholder:
                    runs.first_ts[run], runs.last_ts[run] = s.first_ts, s.last_ts
                    runs.events[run], runs.closed[run] = s.events, concluded
                    continue
                if s.session_id not in keys:
                    keys[s.session_id] = next(next_key)
                extra.add(keys[s.session_id], code, s, concluded)
            slow_skey.extend(-1 if sid is None else keys[sid] for sid in out.session_ids)
        skey_arr = np.array(slow_skey, dtype=np.int64)
        row_skey[rows] = skey_arr
        late[rows] = skey_arr < 0
        return late

    def _histories(self, codes: set[int]) -> dict[str, list[tuple[int, int]]]:
        """Concluded sessions of the slow profiles that have a horizon (R5's late check)."""
        wanted = [c for c in codes if self.prior.horizon[c] != NONE]
        if not wanted:
            return {}
        self.con.register("imp_want", pa.table({"code": np.array(wanted, dtype=np.int64)}))
        rows = self.con.execute(
            """SELECT s.profile_id, s.first_ts, s.last_ts FROM imp_want w
               JOIN imp_dict d USING (code)
               JOIN sessions s ON s.project_id = ? AND s.concluded
                    AND s.profile_id = d.profile_id
               ORDER BY 1, 2""",
            [self.pid],
        ).fetchall()
        self.con.unregister("imp_want")
        out: dict[str, list[tuple[int, int]]] = {}
        for profile_id, first, last in rows:
            out.setdefault(profile_id, []).append((first, last))
        return out

    def _write_profiles(self) -> None:
        con, pid = self.con, self.pid
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE imp_prof AS
               WITH seen AS (SELECT profile_id, min(ts) AS lo, max(ts) AS hi FROM events
                             WHERE project_id = {literal(pid)} AND seq >= {literal(self.seq0)}
                             GROUP BY 1),
               ses AS (SELECT profile_id, arg_max(session_id, first_ts) AS sid,
                              max(first_ts) AS f,
                              max(last_ts) FILTER (WHERE concluded) + {literal(self.timeout)}
                                  AS h
                       FROM imp_sessions GROUP BY 1)
               SELECT n.profile_id,
                      CASE WHEN p.latest_first_ts IS NULL OR s.f >= p.latest_first_ts
                           THEN coalesce(s.sid, p.latest_session_id)
                           ELSE p.latest_session_id END AS latest_session_id,
                      greatest(s.f, p.latest_first_ts) AS latest_first_ts,
                      greatest(s.h, p.horizon) AS horizon,
                      least(n.lo, p.first_seen) AS first_seen,
                      greatest(n.hi, p.last_seen) AS last_seen, p.properties
               FROM seen n LEFT JOIN ses s USING (profile_id)
               LEFT JOIN profiles p ON p.project_id = {literal(pid)}
                    AND p.profile_id = n.profile_id"""
        )
        con.execute(
            """DELETE FROM profiles WHERE project_id = ?
               AND profile_id IN (SELECT profile_id FROM imp_prof)""",
            [pid],
        )
        con.execute("INSERT INTO profiles SELECT ?, * FROM imp_prof", [pid])
        con.execute("DROP TABLE imp_prof")
