"""The live engine: applies acknowledged requests to the session rules and the store.

Requests are acknowledged by the front door (server/door.py) once they are in the ingest
log; this engine follows the log. One thread owns the store's write connection. It takes
every request waiting (in log order), applies each at its arrival instant with
`engine.exact`, and writes the whole group in one transaction together with how far in
the log it has applied. The same thread concludes sessions as they fall due (R4). State
lives in memory and is rebuilt from the store at start, then the log past what the store
holds is applied again, so a restart (or a crash) carries on exactly.
"""

from __future__ import annotations

import heapq
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import duckdb
import msgspec

from lull.engine import exact
from lull.engine.state import Arrival, ProfileState, Session
from lull.ingest.records import corrected_time
from lull.model import Settings
from lull.server import control
from lull.server.door import Batch, from_arrow
from lull.server.sink import EventsSink
from lull.server.writes import EVENT_COLUMNS, Rows, write, write_profiles
from lull.store.db import transaction
from lull.store.log import START, IngestLog, Position
from lull.store.profiles import refresh_from_sessions
from lull.store.projects import get_settings, now_ms

Clock = Callable[[], int]
# A group commit takes the requests waiting up to about this many events: large enough
# that DuckDB's per-commit cost is spread thin, small enough to stay well under a second.
GROUP_EVENTS = 50_000
_encode = msgspec.json.Encoder().encode


@dataclass(slots=True)
class Event:
    """One validated event of a request."""

    message_id: str
    profile_id: str
    name: str
    ts: int
    source: str
    sent_at: int | None
    properties: dict[str, Any]


@dataclass(slots=True)
class _Project:
    settings: Settings
    next_seq: int
    next_skey: int
    states: dict[str, ProfileState] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)


class LiveEngine:
    """The single writer. `submit` is thread-safe; everything else runs on its thread."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        log: IngestLog,
        clock: Clock = now_ms,
        sink: EventsSink | None = None,
    ) -> None:
        # Its own connection to the store: the thread that made `con` goes on using it
        # (keys, accounts, readers' cursors) while this one writes.
        self.con = con.cursor()
        self.clock = clock
        self.sink = sink  # --events-sink: stored events also go to a landing directory
        self.log = log
        self.applied = 0  # requests applied since start (the door counts those it hands over)
        self.queue: queue.Queue[Batch | control.SettingsChange | None] = queue.Queue()
        self.projects: dict[int, _Project] = {}
        self.due: list[tuple[int, int, str]] = []  # (due time, project, profile)
        self.ready = threading.Event()
        self.dirty: dict[tuple[int, str], tuple[int | None, int | None]] = {}
        self.last_flush = time.monotonic()
        self.failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="lull-writer", daemon=True)

    # -- outside the thread --------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        self.ready.wait()
        if self.failed is not None:
            raise self.failed

    def stop(self) -> None:
        self.queue.put(None)
        self._thread.join()
        self.con.close()

    def enqueue(self, batch: Batch) -> None:
        """Apply a request that is in the log (called in log order)."""
        self.queue.put(batch)

    def change_settings(
        self, project_id: int, settings: control.NewSettings, *, rebuild: bool
    ) -> Future[dict[str, object]]:
        """Save a project's settings (and rebuild its sessions if `rebuild`) between two
        group commits; the future resolves to the settings and what was rebuilt.
        `settings` may be a function of the settings in force then (a partial change)."""
        future: Future[dict[str, object]] = Future()
        self.queue.put(control.SettingsChange(project_id, settings, rebuild, future))
        return future

    def settings(self, project_id: int) -> Settings:
        return self.projects[project_id].settings

    def link(self, project_id: int, links: list[tuple[str, str]]) -> None:
        """Identity links acknowledged (not yet applied): anonymous id -> profile."""
        project = self.projects.get(project_id)
        if project is not None:
            project.aliases.update(links)

    def resolve(self, project_id: int, anonymous_id: str) -> str:
        """The profile an anonymous id was tied to by an identify call, or itself."""
        project = self.projects.get(project_id)
        return anonymous_id if project is None else project.aliases.get(anonymous_id, anonymous_id)

    # -- on the thread -------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._load()
            self._replay()
            self._conclude_due()
        except BaseException as e:  # reported by start()
            self.failed = e
            self.ready.set()
            return
        self.ready.set()
        while True:
            if time.monotonic() - self.last_flush > 2:
                self.flush_profiles()
            try:
                first = self.queue.get(timeout=0.25)
            except queue.Empty:
                self._conclude_due()
                if self.sink is not None:
                    self.sink.tick(self.clock())
                continue
            if first is None:
                self.flush_profiles()
                if self.sink is not None:
                    self.sink.close()
                return
            group: list[Batch] = []
            change: control.SettingsChange | None = None
            item = first
            size = 0
            while True:
                if isinstance(item, control.SettingsChange):
                    change = item  # applied once the requests before it are committed
                    break
                group.append(item)
                size += len(item.events)
                if size >= GROUP_EVENTS:
                    break
                try:
                    more = self.queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self.queue.put(None)
                    break
                item = more
            if group:
                self._commit(group)
            if change is not None:
                control.apply(self, change)
            self._conclude_due()

    def reload(self, pid: int) -> None:
        """Rebuild one project's state from the store, as a restart would."""
        self.due = [d for d in self.due if d[1] != pid]
        self._load(pid)

    def _load(self, only: int | None = None) -> None:
        """The state of every project (or of project `only`) from the store."""
        con = self.con
        mine = "true" if only is None else f"project_id = {int(only)}"
        ids = "true" if only is None else f"id = {int(only)}"
        for pid, next_seq, next_skey in con.execute(
            f"SELECT id, next_seq, next_skey FROM projects WHERE {ids}"
        ).fetchall():
            self.projects[pid] = _Project(get_settings(con, pid), next_seq, next_skey)
        self._reconcile_profiles(only)
        for pid, profile, last_concluded, latest_first, latest in con.execute(
            f"""SELECT project_id, profile_id, max(last_ts) FILTER (WHERE concluded),
                      max(first_ts), arg_max(session_id, first_ts)
               FROM sessions WHERE {mine} GROUP BY 1, 2"""
        ).fetchall():
            project = self.projects[pid]
            horizon = (
                None if last_concluded is None else last_concluded + (project.settings.timeout_ms)
            )
            state = ProfileState(profile, horizon=horizon)
            if latest is not None:
                state.latest = (latest_first, latest)
            project.states[profile] = state
        for pid, skey, sid, profile, first, last, events, source in con.execute(
            f"""SELECT project_id, skey, session_id, profile_id, first_ts, last_ts, events,
                      source FROM sessions WHERE NOT concluded AND {mine}"""
        ).fetchall():
            project = self.projects[pid]
            state = project.states.setdefault(profile, ProfileState(profile))
            state.open = Session(sid, profile, first, last, events, source)
            state.open.key = skey
            self.due.append((last + project.settings.timeout_ms, pid, profile))
        heapq.heapify(self.due)
        for pid, anonymous, profile in con.execute(
            f"SELECT * FROM aliases WHERE {mine}"
        ).fetchall():
            self.projects[pid].aliases[anonymous] = profile

    def _reconcile_profiles(self, only: int | None) -> None:
        """Bring the profiles table up to date with the events and sessions (after a stop
        that came before the last flush)."""
        with transaction(self.con):
            for pid, project in self.projects.items():
                if only is None or pid == only:
                    refresh_from_sessions(self.con, pid, project.settings.timeout_ms)

    def _project(self, pid: int) -> _Project:
        project = self.projects.get(pid)
        if project is None:  # made after start (lull project create via the API)
            row = self.con.execute(
                "SELECT next_seq, next_skey FROM projects WHERE id = ?", [pid]
            ).fetchone()
            assert row is not None
            project = _Project(get_settings(self.con, pid), int(row[0]), int(row[1]))
            self.projects[pid] = project
        return project

    def _replay(self) -> None:
        """Apply what the log holds past what the store has applied (after a stop or a
        crash between an acknowledgement and its commit)."""
        names = {
            str(name): int(pid)
            for pid, name in self.con.execute("SELECT id, name FROM projects").fetchall()
        }
        group: list[Batch] = []
        for record in self.log.read(applied_position(self.con, self.log.writer)):
            for batch in from_arrow(record.batch, names, Event):
                batch.position = record.position
                group.append(batch)
            if sum(len(b.events) for b in group) >= GROUP_EVENTS:
                self._commit(group, replaying=True)
                group = []
        if group:
            self._commit(group, replaying=True)

    def _commit(self, group: list[Batch], replaying: bool = False) -> None:
        rows = Rows()
        try:
            with transaction(self.con):
                for request in group:
                    self._apply(request, rows)
                self._write(rows)
                last = group[-1].position
                if last is not None:
                    save_applied_position(self.con, self.log.writer, last)
        except BaseException:
            # Memory may be ahead of the store now: rebuild it from what was committed,
            # then apply the log again from there (the group is in the log).
            if replaying:
                raise
            self.projects.clear()
            self.due.clear()
            self._load()
            self._replay()
            self.applied += len(group)
            return
        self._remember(rows)
        if self.sink is not None and rows.events["seq"]:
            self.sink.write(rows.events)  # committed: stored events only
        if not replaying:
            self.applied += len(group)

    def _apply(self, request: Batch, rows: Rows) -> None:
        pid, r = request.project_id, request.received_at
        project = self._project(pid)
        settings, timeout = project.settings, project.settings.timeout_ms
        for profile, props, at in request.traits:
            rows.traits.append((pid, profile, _encode(props).decode(), at))
        for anonymous, profile in request.links:
            if project.aliases.get(anonymous) != profile:
                project.aliases[anonymous] = profile
                rows.aliases.append((pid, anonymous, profile))
        by_profile: dict[str, list[tuple[Arrival, int]]] = {}
        ev = rows.events
        (e_pid, e_seq, e_mid, e_profile, e_name, e_ts, e_source, e_r, e_props) = (
            ev[k] for k in EVENT_COLUMNS
        )
        seen = rows.profiles
        for e in request.events:
            seq = project.next_seq
            project.next_seq += 1
            ts = corrected_time(e.ts, e.sent_at, r)  # >= 0: checked where it arrived
            e_pid.append(pid)
            e_seq.append(seq)
            e_mid.append(e.message_id)
            e_profile.append(e.profile_id)
            e_name.append(e.name)
            e_ts.append(ts)
            e_source.append(e.source)
            e_r.append(r)
            e_props.append(_encode(e.properties).decode())
            key = (pid, e.profile_id)
            lo, hi = seen.get(key, (None, None))
            seen[key] = (ts if lo is None or ts < lo else lo, ts if hi is None or ts > hi else hi)
            if settings.is_eligible(e.name, e.source):
                by_profile.setdefault(e.profile_id, []).append(
                    (Arrival(ts, seq, e.message_id, e.source), seq)
                )
        for profile, items in by_profile.items():
            self._sessionize(rows, pid, project, profile, items, r, timeout)

    def _sessionize(
        self,
        rows: Rows,
        pid: int,
        project: _Project,
        profile: str,
        items: list[tuple[Arrival, int]],
        r: int,
        timeout: int,
    ) -> None:
        state = project.states.get(profile)
        if state is None:
            state = project.states[profile] = ProfileState(profile)
        due = exact.conclude_due(state, r, timeout)
        if due is not None:
            self._concluded(rows, pid, project, due, r)
        was_open = None if state.open is None else state.open.session_id
        arrivals = [a for a, _ in items]
        if exact.needs_history(state, arrivals):
            # History is loaded only for the rare event older than the horizon: what the
            # store has, and what this group concluded and has not written yet.
            stored = self.con.execute(
                """SELECT first_ts, last_ts FROM sessions WHERE project_id = ?
                   AND profile_id = ? AND concluded""",
                [pid, profile],
            ).fetchall()
            pending = [
                (row[4], row[5])
                for (p, _), row in rows.sessions.items()
                if p == pid and row[3] == profile and row[8]
            ]
            state.history = sorted({(int(f), int(la)) for f, la in [*stored, *pending]})
        out = exact.apply(state, arrivals, timeout)
        # Keys first: concluding a session forgets its key, and its events still need it.
        touched = [*out.concluded, state.open] if state.open is not None else out.concluded
        skeys = {s.session_id: self._skey(project, s) for s in touched}
        for s in out.concluded:
            self._concluded(rows, pid, project, s, r)
        if state.open is not None:
            rows.session(pid, skeys[state.open.session_id], state.open, None)
            if state.open.session_id != was_open:
                # one timer entry per session; the timer re-arms it if the session grew
                heapq.heappush(self.due, (state.open.last_ts + timeout, pid, profile))
        a = rows.assign
        for (_arrival, seq), sid in zip(items, out.session_ids, strict=True):
            a["project_id"].append(pid)
            a["seq"].append(seq)
            a["skey"].append(None if sid is None else skeys[sid])
            a["late"].append(sid is None)

    def _skey(self, project: _Project, session: Session) -> int:
        if session.key < 0:
            session.key = project.next_skey
            project.next_skey += 1
        return session.key

    def _concluded(self, rows: Rows, pid: int, project: _Project, s: Session, at: int) -> None:
        skey = self._skey(project, s)
        rows.session(pid, skey, s, at)

    def _conclude_due(self) -> None:
        """R4: conclude every open session whose last event + timeout has passed."""
        now = self.clock()
        if not self.due or self.due[0][0] > now:
            return
        rows = Rows()
        while self.due and self.due[0][0] <= now:
            _, pid, profile = heapq.heappop(self.due)
            project = self.projects.get(pid)
            if project is None:
                continue
            state = project.states.get(profile)
            if state is None:
                continue
            timeout = project.settings.timeout_ms
            s = exact.conclude_due(state, now + 1, timeout)
            if s is not None:
                self._concluded(rows, pid, project, s, now)
                rows.profiles[(pid, profile)] = (None, None)
            elif state.open is not None:
                heapq.heappush(self.due, (state.open.last_ts + timeout, pid, profile))
        if rows.sessions:
            try:
                with transaction(self.con):
                    self._write(rows)
            except BaseException:
                self.projects.clear()
                self.due.clear()
                self._load()
                return
            self._remember(rows)

    def _remember(self, rows: Rows) -> None:
        for key, (lo, hi) in rows.profiles.items():
            old_lo, old_hi = self.dirty.get(key, (None, None))
            self.dirty[key] = (
                lo if old_lo is None else old_lo if lo is None else min(lo, old_lo),
                hi if old_hi is None else old_hi if hi is None else max(hi, old_hi),
            )

    def flush_profiles(self) -> None:
        """Profiles are a summary of events and sessions; they are written every couple
        of seconds rather than with every commit (and rebuilt from those at start)."""
        self.last_flush = time.monotonic()
        if not self.dirty:
            return
        rows = Rows()
        rows.profiles, self.dirty = self.dirty, {}
        try:
            with transaction(self.con):
                self._write_profiles(rows)
        except BaseException:
            self._remember(rows)

    def _write(self, rows: Rows) -> None:
        counters = {
            pid: (self.projects[pid].next_seq, self.projects[pid].next_skey)
            for pid in {p for p, _ in rows.profiles} | {p for p, _ in rows.sessions}
        }
        write(self.con, rows, counters)

    def _write_profiles(self, rows: Rows) -> None:
        def summary(pid: int, profile: str) -> tuple[str | None, int | None, int | None]:
            state = self.projects[pid].states.get(profile)
            newest = state.latest_session() if state else None
            return (
                newest[1] if newest else None,
                newest[0] if newest else None,
                state.horizon if state else None,
            )

        write_profiles(self.con, rows, summary)


def applied_position(con: duckdb.DuckDBPyConnection, writer: str) -> Position:
    """How far in writer `writer`'s ingest log the store has applied."""
    row = con.execute("SELECT value FROM lull_meta WHERE key = ?", [f"log_applied:{writer}"])
    found = row.fetchone()
    if found is None:
        return START
    segment, offset = str(found[0]).split(",")
    return Position(int(segment), int(offset))


def save_applied_position(con: duckdb.DuckDBPyConnection, writer: str, at: Position) -> None:
    con.execute(
        "INSERT OR REPLACE INTO lull_meta VALUES (?, ?)",
        [f"log_applied:{writer}", f"{at.segment},{at.offset}"],
    )
