"""`lull import`: canonical NDJSON in, replayed on R5's simulated clock, all or nothing."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lull.engine import exact
from lull.engine.columnar import NONE, Prior, Runs, sessionize
from lull.engine.state import Arrival, ProfileState, Session
from lull.ingest.ndjson import stage
from lull.store.db import literal, transaction
from lull.store.projects import get_settings, take_seq
from lull.store.sessions import conclude_due

Progress = Callable[[str], None]


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
    """Import `path` into project `pid` as if received live (SESSION_RULES.md, R5's clock).

    Events without `received_at` arrive at `now`. After the last event the clock moves
    on to `now` (or, with `keep_open`, stays at the last arrival, so that sessions still
    open can be continued by a later import of the next part of the history).
    """
    started = time.perf_counter()
    step = progress or (lambda _name: None)
    settings = get_settings(con, pid)
    timeout = settings.timeout_ms
    with transaction(con):
        step("parse and check")
        records = stage(con, path, now)
        step("skip duplicates")
        _mark_duplicates(con, pid)
        fresh = con.execute(
            """SELECT rec, r, ts_eff,
                      ? AND source <> 'api' AND NOT list_contains(?, name) AS eligible
               FROM stage WHERE NOT dup ORDER BY rec""",
            [settings.sessions_enabled, list(settings.excluded)],
        ).fetchnumpy()
        duplicates = records - len(fresh["rec"])
        clock_all = np.maximum.accumulate(fresh["r"]) if len(fresh["r"]) else fresh["r"]
        end = now if not keep_open or not len(clock_all) else int(clock_all[-1])
        step("sessionize")
        elig = np.asarray(fresh["eligible"], dtype=bool)
        rec = np.asarray(fresh["rec"], dtype=np.int64)[elig]
        plan = _Plan(
            con,
            pid,
            rec,
            np.asarray(fresh["ts_eff"], np.int64)[elig],
            clock_all[elig],
            timeout,
            end,
        )
        del fresh
        step("write")
        seq0 = take_seq(con, pid, records)
        late = plan.write(seq0)
        concluded = conclude_due(con, pid, end, timeout)
        for name in ("stage", "dups", "imp_assign", "imp_sessions", "imp_dict", "imp_runs"):
            con.execute(f"DROP TABLE IF EXISTS {name}")
            con.execute(f"DROP VIEW IF EXISTS {name}")
    return ImportReport(
        records=records,
        duplicates=duplicates,
        eligible=len(rec),
        late=late,
        sessions=plan.session_count,
        concluded=concluded + plan.closed_count,
        seconds=time.perf_counter() - started,
    )


def _mark_duplicates(con: duckdb.DuckDBPyConnection, pid: int) -> None:
    """R6: a message_id seen before (in the store, or earlier in the file) is ignored."""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE dups AS
           WITH again AS (SELECT message_id FROM stage GROUP BY 1 HAVING count(*) > 1)
           SELECT rec FROM (
               SELECT rec, row_number() OVER (PARTITION BY message_id ORDER BY rec) AS k
               FROM stage SEMI JOIN again USING (message_id)) WHERE k > 1
           UNION
           SELECT s.rec FROM stage s SEMI JOIN (
               SELECT message_id FROM events WHERE project_id = {literal(pid)}) e
               USING (message_id)"""
    )
    con.execute("ALTER TABLE stage ADD COLUMN dup BOOLEAN DEFAULT false")
    con.execute("UPDATE stage SET dup = true WHERE rec IN (SELECT rec FROM dups)")


class _Plan:
    """Sessions for one import: the columnar pass, then the exact pass for slow profiles."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        pid: int,
        rec: np.ndarray,
        ts: np.ndarray,
        clock: np.ndarray,
        timeout: int,
        end: int,
    ) -> None:
        self.con, self.pid, self.timeout, self.end = con, pid, timeout, end
        self.rec, self.ts = rec, ts
        con.register("imp_rec", pa.table({"rec": rec}))
        profiles = (
            con.sql("SELECT s.profile_id FROM imp_rec r JOIN stage s USING (rec) ORDER BY r.rec")
            .to_arrow_table()
            .column(0)
        )
        con.unregister("imp_rec")
        encoded = pc.dictionary_encode(profiles).combine_chunks()
        code = np.asarray(encoded.indices, dtype=np.int64)
        names = encoded.dictionary
        con.register(
            "imp_dict_arrow", pa.table({"code": np.arange(len(names)), "profile_id": names})
        )
        con.execute("CREATE OR REPLACE TEMP TABLE imp_dict AS SELECT * FROM imp_dict_arrow")
        con.unregister("imp_dict_arrow")
        self.code = code
        self.prior = self._load_prior(len(names))
        self.runs: Runs = sessionize(code, ts, clock, self.prior, timeout)
        self.clock = clock
        self.closed_count = 0
        self.session_count = 0

    def _load_prior(self, n: int) -> Prior:
        rows = self.con.execute(
            """SELECT d.code, o.session_id, o.first_ts, o.last_ts, o.events, o.source,
                      p.horizon, p.latest_session_id, p.latest_first_ts
               FROM imp_dict d
               LEFT JOIN sessions o ON o.project_id = ? AND NOT o.concluded
                    AND o.profile_id = d.profile_id
               LEFT JOIN profiles p ON p.project_id = ? AND p.profile_id = d.profile_id
               WHERE o.session_id IS NOT NULL OR p.horizon IS NOT NULL""",
            [self.pid, self.pid],
        ).fetchall()
        prior = Prior(np.full(n, NONE), np.full(n, NONE), np.full(n, NONE))
        self.open: dict[int, Session] = {}
        self.latest: dict[int, tuple[int, str]] = {}
        for code, sid, first, last, events, source, horizon, latest, latest_first in rows:
            if sid is not None:
                prior.open_first[code], prior.open_last[code] = first, last
                self.open[code] = Session(sid, "", first, last, events, source)
            if horizon is not None:
                prior.horizon[code] = horizon
            if latest is not None:
                self.latest[code] = (latest_first, latest)
        return prior

    def write(self, seq0: int) -> int:
        """Write events, sessions and profiles; returns the number of late events."""
        r, t, o = self.runs, self.ts, self.runs.order
        # fast runs: new sessions (id from the first event, in SQL) or open ones extended
        n_runs = len(r.start)
        run_code = self.code[o[r.start]]
        sid: list[str | None] = [None] * n_runs
        first_ts = t[o[r.start]].copy()
        events = (r.end - r.start + 1).astype(np.int64)
        source: list[str | None] = [None] * n_runs
        for i in np.flatnonzero(~r.new):
            s = self.open[int(run_code[i])]
            sid[i], source[i] = s.session_id, s.source
            first_ts[i] = s.first_ts
            events[i] += s.events
        sessions = {
            "code": list(run_code),
            "sid": sid,
            "first_rec": list(np.where(r.new, self.rec[o[r.start]], -1)),
            "first_ts": list(first_ts),
            "last_ts": list(t[o[r.end]]),
            "events": list(events),
            "source": source,
            "concluded": list(r.closed),
        }
        for code in r.ended_open:
            s = self.open[int(code)]
            self._add(sessions, int(code), s, True)
        row_seg = r.row_run.copy()
        late_rows = self._slow(sessions, row_seg)
        self.closed_count = int(sum(sessions["concluded"]))
        self.session_count = len(sessions["code"])

        table = pa.table(
            {
                "code": pa.array(sessions["code"], pa.int64()),
                "sid": pa.array(sessions["sid"], pa.string()),
                "first_rec": pa.array(sessions["first_rec"], pa.int64()),
                "first_ts": pa.array(sessions["first_ts"], pa.int64()),
                "last_ts": pa.array(sessions["last_ts"], pa.int64()),
                "events": pa.array(sessions["events"], pa.int64()),
                "source": pa.array(sessions["source"], pa.string()),
                "concluded": pa.array(sessions["concluded"], pa.bool_()),
            }
        ).append_column("seg", pa.array(np.arange(self.session_count, dtype=np.int64)))
        con, pid, timeout = self.con, self.pid, self.timeout
        con.register("imp_runs_arrow", table)
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE imp_sessions AS
               SELECT s.seg,
                      coalesce(s.sid, md5(d.profile_id || chr(31) || st.message_id)) AS session_id,
                      d.profile_id, s.first_ts, s.last_ts, s.events,
                      coalesce(s.source, st.source) AS source, s.concluded,
                      CASE WHEN s.concluded THEN s.last_ts + {literal(timeout)} END
                          AS concluded_at
               FROM imp_runs_arrow s JOIN imp_dict d USING (code)
               LEFT JOIN stage st ON st.rec = s.first_rec"""
        )
        con.unregister("imp_runs_arrow")
        assign = pa.table(
            {
                "rec": self.rec[o],
                "seg": row_seg,
                "late": late_rows,
            }
        )
        con.register("imp_assign_arrow", assign)
        con.execute(
            """DELETE FROM sessions WHERE project_id = ? AND NOT concluded
               AND session_id IN (SELECT session_id FROM imp_sessions)""",
            [pid],
        )
        con.execute(
            """INSERT INTO sessions
               SELECT ?, session_id, profile_id, first_ts, last_ts, events, source,
                      concluded, concluded_at FROM imp_sessions""",
            [pid],
        )
        con.execute(
            """INSERT INTO events
               SELECT ?, ? + st.rec, st.message_id, st.profile_id, st.name, st.ts_eff,
                      st.source, st.r, st.properties, i.session_id, coalesce(a.late, false)
               FROM stage st LEFT JOIN imp_assign_arrow a USING (rec)
               LEFT JOIN imp_sessions i ON i.seg = a.seg
               WHERE NOT st.dup ORDER BY st.rec""",
            [pid, seq0],
        )
        con.unregister("imp_assign_arrow")
        self._write_profiles()
        return int(late_rows.sum())

    def _add(self, sessions: dict[str, list[object]], code: int, s: Session, closed: bool) -> int:
        sessions["code"].append(code)
        sessions["sid"].append(s.session_id)
        sessions["first_rec"].append(-1)
        sessions["first_ts"].append(s.first_ts)
        sessions["last_ts"].append(s.last_ts)
        sessions["events"].append(s.events)
        sessions["source"].append(s.source)
        sessions["concluded"].append(closed)
        return len(sessions["code"]) - 1

    def _slow(self, sessions: dict[str, list[object]], row_seg: np.ndarray) -> np.ndarray:
        """Replay the slow profiles exactly; fills their rows' sessions, returns late flags."""
        r, o = self.runs, self.runs.order
        late = np.zeros(len(o), dtype=bool)
        rows = np.flatnonzero(r.slow)
        if not len(rows):
            return late
        slow_rec = self.rec[o[rows]]
        self.con.register("imp_slow", pa.table({"rec": slow_rec}))
        details = self.con.execute(
            """SELECT st.message_id, st.source, st.profile_id FROM imp_slow x
               JOIN stage st USING (rec) ORDER BY x.rec"""
        ).fetchall()
        self.con.unregister("imp_slow")
        by_rec = dict(zip(sorted(slow_rec.tolist()), details, strict=True))
        codes = self.code[o[rows]]
        cuts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1], True])
        histories = self._histories({int(c) for c in codes[cuts[:-1]]})
        for a, b in itertools.pairwise(cuts):
            code = int(codes[a])
            idx = rows[a:b]
            profile_id = by_rec[int(self.rec[o[idx[0]]])][2]
            state = ProfileState(profile_id, horizon=None)
            if code in self.open:
                s = self.open[code]
                state.open = Session(
                    s.session_id, profile_id, s.first_ts, s.last_ts, s.events, s.source
                )
            if self.prior.horizon[code] != NONE:
                state.horizon = int(self.prior.horizon[code])
            # everything concluded for this profile is known: from the store, or none yet
            state.history = histories.get(profile_id, [])
            arrivals = []
            for i in idx:
                m, src, _ = by_rec[int(self.rec[o[i]])]
                arrivals.append(Arrival(int(self.ts[o[i]]), int(self.rec[o[i]]), m, src))
            out = exact.replay(state, self.clock[o[idx]].tolist(), arrivals, self.timeout, self.end)
            seg_of: dict[str, int] = {}
            for s, _at in out.concluded:
                seg_of[s.session_id] = self._add(sessions, code, s, True)
            if state.open is not None:
                seg_of[state.open.session_id] = self._add(sessions, code, state.open, False)
            for i, sid in zip(idx, out.session_ids, strict=True):
                if sid is None:
                    late[i] = True
                else:
                    row_seg[i] = seg_of[sid]
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
               JOIN sessions s ON s.project_id = ? AND s.concluded AND s.profile_id = d.profile_id
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
               WITH seen AS (SELECT profile_id, min(ts_eff) AS lo, max(ts_eff) AS hi
                             FROM stage WHERE NOT dup GROUP BY 1),
               ses AS (SELECT profile_id, arg_max(session_id, first_ts) AS sid,
                              max(first_ts) AS f,
                              max(last_ts) FILTER (WHERE concluded) + {literal(self.timeout)} AS h
                       FROM imp_sessions GROUP BY 1)
               SELECT n.profile_id,
                      CASE WHEN p.latest_first_ts IS NULL OR s.f >= p.latest_first_ts
                           THEN coalesce(s.sid, p.latest_session_id)
                           ELSE p.latest_session_id END AS latest_session_id,
                      greatest(s.f, p.latest_first_ts) AS latest_first_ts,
                      greatest(s.h, p.horizon) AS horizon,
                      least(n.lo, p.first_seen) AS first_seen,
                      greatest(n.hi, p.last_seen) AS last_seen
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
