"""The live engine: applies acknowledged requests to the session rules and the store.

Requests are acknowledged by the front door (server/door.py) once they are in the ingest
log; this engine follows the log (in `lull serve`, in the store process: the front
process writes the log, server/store_process.py hands this engine each durable frame).
One thread owns the store's write connection. It takes every request waiting (in log
order, up to about GROUP_EVENTS events), applies each
project's share set-wise with the vectorized engine (`engine.vector`: NumPy over the
whole group, the exact engine only for the rare out-of-order profiles), and writes the
group in one transaction together with how far in the log it has applied. The same
thread concludes sessions as they fall due (R4), a NumPy scan of the open sessions.

Each project's state is one `vector.Profiles` table (an entry per profile that has had a
session) plus the store key of each open session. At start it is loaded from the file a
clean stop saved (server/checkpoint.py) when the store is as that stop left it; after a
kill, from the file the killed server saved as it started, with the profiles touched
since rebuilt from the store; else it is rebuilt from the store (set-wise, from the
sessions table). Then the log past what the store holds is applied again, so a restart
(or a crash) carries on exactly.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

import duckdb
import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lull.engine import vector
from lull.engine.columnar import NONE
from lull.model import SYSTEM_EVENTS, Settings
from lull.server import checkpoint, control
from lull.server.door import Batch, from_arrow
from lull.server.identity import Link, Target, follow
from lull.server.writes import Rows, write, write_profiles
from lull.store.db import transaction
from lull.store.ends import fill_all
from lull.store.log import START, Position, Record
from lull.store.profiles import refresh_from_sessions, refresh_touched, touched_sql
from lull.store.projects import get_settings, now_ms

Clock = Callable[[], int]


class Followed(Protocol):
    """The log the engine follows: its writer id, and its durable frames past a position
    (an `IngestLog`, or the front process's log read by the store process)."""

    @property
    def writer(self) -> str: ...

    def read(self, after: Position = START) -> Iterator[Record]: ...


# A group commit takes the requests waiting up to about this many events: large enough
# that DuckDB's per-commit cost is spread thin, small enough to stay well under a second.
GROUP_EVENTS = 50_000
GROUP_SECONDS = 0.2  # and waits at most this long for more (reads wait for the store)
ENDS_SECONDS = 30  # how often the ends of newly concluded sessions are kept (store/ends.py)
GATHER_NAP = 0.04  # while gathering, look at the queue this often
_GATHERED = object()  # `_next`: nothing more before the group's time is up
_encode = msgspec.json.Encoder().encode


_NO_LO = np.iinfo(np.int64).max  # "no event seen" for a running minimum
# lull_meta key: a server is running (or was killed): what it had applied when it started
_UNCLEAN = "live_unclean"
_CLOCK_MARGIN_MS = 60_000  # conclusions stamped up to this much before the start mark


def _filled(n: int, value: int) -> np.ndarray:
    return np.full(n, value, dtype=np.int64)


@dataclass(slots=True)
class _Project:
    """A project's live state. Profiles are coded by their row in `table` (and in
    `known`, their ids as Arrow, which codes a group's ids set-wise); per code: the store
    key of its open session (-1: none), and the first and last event time seen since its
    profile row was last written (`dirty`)."""

    settings: Settings
    next_seq: int
    next_skey: int
    table: vector.Profiles = field(default_factory=lambda: vector.Profiles.new([]))
    known: pa.Array = field(default_factory=lambda: pa.array([], pa.string()))
    keys: np.ndarray = field(default_factory=lambda: _filled(0, -1))
    lo: np.ndarray = field(default_factory=lambda: _filled(0, _NO_LO))
    hi: np.ndarray = field(default_factory=lambda: _filled(0, NONE))
    dirty: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    aliases: dict[str, Target] = field(default_factory=dict)  # anonymous id -> its tie
    clock: int = 0  # the latest arrival instant applied (instants never run backwards)

    def code(self, ids: pa.ChunkedArray | pa.Array) -> np.ndarray:
        """Codes of these profile ids, new ones added to the table."""
        found = pc.index_in(ids, value_set=self.known)
        if found.null_count:
            self.grow(pc.unique(pc.filter(ids, found.is_null())))
            found = pc.index_in(ids, value_set=self.known)
        return np.asarray(found.to_numpy(zero_copy_only=False), dtype=np.int64)

    def grow(self, fresh: pa.Array) -> None:
        n = len(fresh)
        self.table = self.table.concat(vector.Profiles.new(fresh.to_pylist()))
        self.known = pa.concat_arrays([self.known, fresh.cast(pa.string())])
        self.keys = np.concatenate([self.keys, _filled(n, -1)])
        self.lo = np.concatenate([self.lo, _filled(n, _NO_LO)])
        self.hi = np.concatenate([self.hi, _filled(n, NONE)])
        self.dirty = np.concatenate([self.dirty, np.zeros(n, dtype=bool)])

    def profile_rows(self, pid: int) -> tuple[np.ndarray, pa.Table]:
        """The dirty profiles' rows: seen times, latest session (open or concluded, the
        one that began last) and horizon."""
        at = np.flatnonzero(self.dirty)
        t = self.table
        open_ = t.open_last[at] != NONE
        latest_first = t.latest_first[at]
        newer = open_ & ((latest_first == NONE) | (t.open_first[at] >= latest_first))
        first = np.where(newer, t.open_first[at], latest_first)
        latest = np.where(newer, t.open_id[at], t.latest_id[at])
        lo, hi, horizon = self.lo[at], self.hi[at], t.horizon[at]
        rows = pa.table(
            {
                "project_id": pa.array(np.full(len(at), pid, dtype=np.int32)),
                "profile_id": self.known.take(pa.array(at)),
                "lo": pa.array(lo, mask=lo == _NO_LO),
                "hi": pa.array(hi, mask=hi == NONE),
                "latest": pa.array(latest, pa.string()),
                "latest_first": pa.array(first, mask=first == NONE),
                "horizon": pa.array(horizon, mask=horizon == NONE),
            }
        )
        return at, rows

    def written(self, at: np.ndarray) -> None:
        self.dirty[at] = False
        self.lo[at] = _NO_LO
        self.hi[at] = NONE


class LiveEngine:
    """The single writer. `enqueue` is thread-safe; everything else runs on its thread."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        log: Followed,
        clock: Clock = now_ms,
        checkpoint_file: str | None = None,
    ) -> None:
        # Its own connection to the store: the thread that made `con` goes on using it
        # (keys, accounts, readers' cursors) while this one writes.
        self.con = con.cursor()
        self.clock = clock
        self.log = log
        self.applied = START  # where in the log the store has applied up to
        self.queue: queue.Queue[list[Batch] | control.SettingsChange | None] = queue.Queue()
        self.projects: dict[int, _Project] = {}
        self.ready = threading.Event()
        self.last_flush = time.monotonic()
        self.last_ends = time.monotonic()
        self.failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="lull-writer", daemon=True)
        self.checkpoint_file = checkpoint_file  # the state saved at a clean stop
        self._base: str | None = None  # the token of the file this start was loaded from
        self.started_from = "store"  # or "checkpoint" (+ "store"): where the state came from
        # called with each committed group's event tables (segments/live.py's Watcher)
        self.on_stored: Callable[[list[pa.Table]], None] | None = None
        self.on_applied: Callable[[Position], None] | None = None  # after each commit
        self.on_settings: Callable[[int, Settings], None] | None = None  # after a change

    # -- outside the thread --------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        self.ready.wait()
        if self.failed is not None:
            raise self.failed

    def stop(self) -> None:
        self.queue.put(None)
        self._thread.join()
        try:
            self._save_checkpoint()
        finally:
            self.con.close()

    def _save_checkpoint(self) -> None:
        """At a clean stop (the thread took the stop and wrote every profile row): save
        the state for the next start (server/checkpoint.py) and mark the stop clean."""
        if not self.queue.empty() or self.failed is not None:
            return  # the thread ended on an error: the next start rebuilds from the store
        if any(project.dirty.any() for project in self.projects.values()):
            return  # profile rows not written: the next start brings them up to date
        applied = applied_position(self.con, self.log.writer)
        token = None
        if self.checkpoint_file is not None:
            try:
                token = checkpoint.save(self.checkpoint_file, self.con, applied, self.projects)
            except OSError as error:
                print(f"lull: live state not saved: {error}", file=sys.stderr, flush=True)
        with transaction(self.con):
            self.con.execute("DELETE FROM lull_meta WHERE key = ?", [_UNCLEAN])
            if token is not None:
                self.con.execute(
                    "INSERT OR REPLACE INTO lull_meta VALUES (?, ?)", [checkpoint.TOKEN_KEY, token]
                )

    def enqueue(self, frame: list[Batch]) -> None:
        """Apply the requests of a frame of the log (called in log order)."""
        self.queue.put(frame)

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

    def link(self, project_id: int, links: list[Link]) -> None:
        """Identity links acknowledged (not yet applied): anonymous id -> its tie."""
        project = self.projects.get(project_id)
        if project is not None:
            project.aliases.update(links)

    def resolve(self, project_id: int, anonymous_id: str, at: int | None = None) -> str:
        """The profile of an anonymous id's event at time `at` (server/identity.py): the
        one an identify call tied it to if the tie holds by then, or itself."""
        project = self.projects.get(project_id)
        return anonymous_id if project is None else follow(project.aliases, anonymous_id, at)

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
        self._save_base()
        while True:
            if time.monotonic() - self.last_flush > 2:
                self.flush_profiles()
            if time.monotonic() - self.last_ends > ENDS_SECONDS:
                self.fill_ends()
            try:
                first = self.queue.get(timeout=0.25)
            except queue.Empty:
                self._conclude_due()
                continue
            if first is None:
                self.flush_profiles()
                return
            group: list[Batch] = []
            change: control.SettingsChange | None = None
            item = first
            size = 0
            # Under load, gather for a moment: a DuckDB commit costs milliseconds whatever
            # its size, and acknowledgements do not wait for it (the log is durable).
            until = time.monotonic() + GROUP_SECONDS
            while True:
                if isinstance(item, control.SettingsChange):
                    change = item  # applied once the requests before it are committed
                    break
                group += item  # a frame of the log: its requests, committed together
                size += sum(batch.size for batch in item)
                if size >= GROUP_EVENTS:
                    break
                more = self._next(until)
                if more is _GATHERED:
                    break
                if more is None:
                    self.queue.put(None)
                    break
                assert isinstance(more, list | control.SettingsChange)
                item = more
            if group:
                self._commit(group)
            if change is not None:
                control.apply(self, change)
            self._conclude_due()

    def _next(self, until: float) -> list[Batch] | control.SettingsChange | object | None:
        """The next item queued before `until`, else _GATHERED. It sleeps, then takes what
        came meanwhile: woken by every request instead, this thread would take the GIL
        from the HTTP thread hundreds of times a second for nothing but a queue.get."""
        while True:
            try:
                return self.queue.get_nowait()
            except queue.Empty:
                wait = until - time.monotonic()
                if wait <= 0:
                    return _GATHERED
                time.sleep(min(wait, GATHER_NAP))

    def reload(self, pid: int) -> None:
        """Rebuild one project's state from the store, as a restart would."""
        self._load(pid)
        if self.on_settings is not None:
            self.on_settings(pid, self.projects[pid].settings)

    def _load(self, only: int | None = None) -> None:
        """The state of every project (or of project `only`) from the store."""
        con = self.con
        ids = "true" if only is None else f"id = {int(only)}"
        saved, since = self._saved() if only is None else (None, None)
        self.started_from = (
            "store" if saved is None else "checkpoint" if since is None else "checkpoint + store"
        )
        for pid, next_seq, next_skey in con.execute(
            f"SELECT id, next_seq, next_skey FROM projects WHERE {ids}"
        ).fetchall():
            kept = None if saved is None else saved.get(pid)
            if kept is not None and since is not None:  # then brought up to date
                kept.next_seq, kept.next_skey = int(next_seq), int(next_skey)
                self.projects[pid] = self._caught_up(pid, self._restored(pid, kept), since)
            elif kept is not None and (kept.next_seq, kept.next_skey) == (next_seq, next_skey):
                self.projects[pid] = self._restored(pid, kept)
            else:
                self.projects[pid] = self._state(pid, int(next_seq), int(next_skey))
        self._reconcile_profiles(only)
        mine = "true" if only is None else f"project_id = {int(only)}"
        for pid, anonymous, profile, since in con.execute(
            f"SELECT project_id, anonymous_id, profile_id, since FROM aliases WHERE {mine}"
        ).fetchall():
            self.projects[pid].aliases[anonymous] = Target(profile, since)

    def _state(self, pid: int, next_seq: int, next_skey: int) -> _Project:
        """A project's profiles table, set-wise from its sessions: the open session (one
        per profile at most), the horizon and the latest concluded session."""
        settings = get_settings(self.con, pid)
        project = _Project(settings, next_seq, next_skey)
        t = self._states(pid, settings.timeout_ms)
        if t.num_rows == 0:
            return project
        table, keys = _profiles_of(t)
        n = t.num_rows
        project.table, project.keys = table, keys
        project.known = t.column("profile_id").combine_chunks()
        project.lo, project.hi = _filled(n, _NO_LO), _filled(n, NONE)
        project.dirty = np.zeros(n, dtype=bool)
        return project

    def _states(self, pid: int, timeout: int, which: str = "true") -> pa.Table:
        """Per profile (of those `which` selects), its state from the sessions table."""
        with warnings.catch_warnings():  # DuckDB's hint: an extra copy, of one row a profile
            warnings.simplefilter("ignore", UserWarning)
            t = self._state_query(pid, timeout, which)
        assert t is not None
        return t

    def _state_query(self, pid: int, timeout: int, which: str) -> pa.Table | None:
        # on the writer's own connection (a cursor would not see its open transaction)
        return self.con.execute(
            f"""SELECT profile_id,
                      any_value(session_id) FILTER (WHERE NOT concluded) AS open_id,
                      any_value(first_ts) FILTER (WHERE NOT concluded) AS open_first,
                      any_value(last_ts) FILTER (WHERE NOT concluded) AS open_last,
                      any_value(events) FILTER (WHERE NOT concluded) AS open_events,
                      any_value(source) FILTER (WHERE NOT concluded) AS open_source,
                      any_value(skey) FILTER (WHERE NOT concluded) AS open_key,
                      max(last_ts) FILTER (WHERE concluded) + ? AS horizon,
                      max(first_ts) FILTER (WHERE concluded) AS latest_first,
                      arg_max(session_id, first_ts) FILTER (WHERE concluded) AS latest_id
               FROM sessions WHERE project_id = ? AND ({which}) GROUP BY profile_id""",
            [timeout, pid],
        ).to_arrow_table()

    def _caught_up(self, pid: int, project: _Project, since: dict[str, Any]) -> _Project:
        """A state saved while a server ran that was then killed, brought up to date: the
        profiles touched since that server started (events, new sessions, conclusions:
        as `refresh_touched` finds them) rebuilt from the store; the others are as saved."""
        touched = touched_sql(
            pid, int(since["seq"].get(str(pid), 0)), int(since["skey"].get(str(pid), 0)),
            int(since["at"]),
        )  # fmt: skip
        t = self._states(pid, project.settings.timeout_ms, f"profile_id IN ({touched})")
        if t.num_rows:
            codes = project.code(t.column("profile_id"))
            table, keys = _profiles_of(t)
            project.table.put(codes, table)
            project.keys[codes] = keys
        return project

    def _saved(self) -> tuple[dict[int, checkpoint.Saved] | None, dict[str, Any] | None]:
        """The state saved at the last stop, if it was clean and the store is as it left
        it (server/checkpoint.py); or, after a kill, the state saved while that server ran,
        with what it had applied when it started (the profiles touched since are then
        rebuilt from the store)."""
        if self.checkpoint_file is None:
            return None, None
        rows = self.con.execute(
            "SELECT key, value FROM lull_meta WHERE key IN (?, ?)", [checkpoint.TOKEN_KEY, _UNCLEAN]
        ).fetchall()
        meta = {str(k): str(v) for k, v in rows}
        applied = applied_position(self.con, self.log.writer)
        path = self.checkpoint_file
        if checkpoint.TOKEN_KEY in meta:
            token = meta[checkpoint.TOKEN_KEY]
            saved = checkpoint.load(path, self.con, applied, token)
            self._base = None if saved is None else token  # the file holds this start
            return saved, None
        mark = json.loads(meta.get(_UNCLEAN, "{}"))
        if "base" not in mark or "skey" not in mark:
            return None, None
        saved = checkpoint.load(path, self.con, applied, mark["base"], exact=False)
        return saved, (mark if saved is not None else None)

    def _save_base(self) -> None:
        """Once started: save the state for a start after a kill (which rebuilds only
        the profiles touched since this start), unless the file already holds it."""
        if self.checkpoint_file is None:
            return
        try:
            rows = self.con.execute(
                "SELECT value FROM lull_meta WHERE key = ?", [_UNCLEAN]
            ).fetchall()
            mark = json.loads(str(rows[0][0]))
            if self._base is None:
                applied = applied_position(self.con, self.log.writer)
                self._base = checkpoint.save(self.checkpoint_file, self.con, applied, self.projects)
            mark["base"] = self._base
            with transaction(self.con):
                save = "INSERT OR REPLACE INTO lull_meta VALUES (?, ?)"
                self.con.execute(save, [_UNCLEAN, json.dumps(mark)])
        except (OSError, IndexError, duckdb.Error) as error:
            print(f"lull: live state not saved: {error}", file=sys.stderr, flush=True)

    def _restored(self, pid: int, saved: checkpoint.Saved) -> _Project:
        project = _Project(get_settings(self.con, pid), saved.next_seq, saved.next_skey)
        n = len(saved.table)
        project.table, project.keys, project.known = saved.table, saved.keys, saved.known
        project.lo, project.hi = _filled(n, _NO_LO), _filled(n, NONE)
        project.dirty = np.zeros(n, dtype=bool)
        project.clock = saved.clock
        return project

    def _reconcile_profiles(self, only: int | None) -> None:
        """Bring the profiles table up to date with the events and sessions.

        A clean stop writes every profile row. A server that stopped without its last
        profile flush (killed) left a mark (`live_unclean` in lull_meta: each project's
        next event seq and the time when it started): only the profiles touched since are
        rebuilt. A rebuild of one project (`reload`, after its sessions were rebuilt)
        rewrites all of its rows. Starting marks the store until the next clean stop, and
        consumes the checkpoint's token."""
        con = self.con
        with transaction(con):
            if only is not None:
                project = self.projects[only]
                refresh_from_sessions(con, only, project.settings.timeout_ms)
                return
            rows = con.execute("SELECT value FROM lull_meta WHERE key = ?", [_UNCLEAN]).fetchall()
            if rows:
                mark = json.loads(str(rows[0][0]))
                for pid, project in self.projects.items():
                    since = int(mark["seq"].get(str(pid), 0))
                    timeout = project.settings.timeout_ms
                    refresh_touched(con, pid, timeout, since, int(mark["at"]))
            mark = {
                "seq": {str(pid): p.next_seq for pid, p in self.projects.items()},
                "skey": {str(pid): p.next_skey for pid, p in self.projects.items()},
                "at": self.clock() - _CLOCK_MARGIN_MS,
            }
            save = "INSERT OR REPLACE INTO lull_meta VALUES (?, ?)"
            con.execute(save, [_UNCLEAN, json.dumps(mark)])
            con.execute("DELETE FROM lull_meta WHERE key = ?", [checkpoint.TOKEN_KEY])

    def _project(self, pid: int) -> _Project:
        project = self.projects.get(pid)
        if project is None:  # made after start (lull project create via the API)
            row = self.con.execute(
                "SELECT next_seq, next_skey FROM projects WHERE id = ?", [pid]
            ).fetchone()
            assert row is not None
            project = self._state(pid, int(row[0]), int(row[1]))
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
        size = 0
        self.applied = applied_position(self.con, self.log.writer)
        for record in self.log.read(self.applied):
            frame = from_arrow(record.batch, names)
            for batch in frame:
                batch.position = record.position
            group += frame
            size += sum(batch.size for batch in frame)
            if size >= GROUP_EVENTS:
                self._commit(group, replaying=True)
                group, size = [], 0
        if group:
            self._commit(group, replaying=True)

    def _commit(self, group: list[Batch], replaying: bool = False) -> None:
        # (frames queued before a replay that applied them are applied already)
        group = [b for b in group if b.position is None or b.position > self.applied]
        if not group:
            return
        rows = Rows()
        states: list[tuple[_Project, vector.Step | None, np.ndarray]] = []
        try:
            with transaction(self.con):
                by_project: dict[int, list[Batch]] = {}
                for request in group:
                    by_project.setdefault(request.project_id, []).append(request)
                for pid, requests in by_project.items():
                    states.append(self._apply(pid, requests, rows))
                self._write(rows)
                last = group[-1].position
                if last is not None:
                    save_applied_position(self.con, self.log.writer, last)
        except BaseException:
            # The sessions' state is put only after the commit, but the counters, the new
            # profiles and their seen times have moved: rebuild from the store, then apply
            # the log again from there (the group is in the log).
            if replaying:
                raise
            self.projects.clear()
            self._load()
            self._replay()
            return
        for project, out, keys in states:
            if out is not None:
                project.table.put(out.codes, out.after)
                project.keys[out.codes] = keys
        if last is not None:
            self.applied = last
            if self.on_applied is not None:
                self.on_applied(last)
        if self.on_stored is not None and rows.event_tables:
            self.on_stored(rows.event_tables)

    def _apply(
        self, pid: int, requests: list[Batch], rows: Rows
    ) -> tuple[_Project, vector.Step | None, np.ndarray]:
        """One project's requests of a group: events, their sessions, links, traits."""
        project = self._project(pid)
        settings, timeout = project.settings, project.settings.timeout_ms
        for request in requests:
            for profile, props, at in request.traits:
                rows.traits.append((pid, profile, _encode(props).decode(), at))
            for anonymous, tie in request.links:
                rows.aliases.append((pid, anonymous, tie))
                project.aliases[anonymous] = tie
        parts = [r.rows for r in requests if r.rows is not None and r.rows.num_rows]
        rows.projects.add(pid)
        if not parts:
            return project, None, np.empty(0, dtype=np.int64)
        events = pa.Table.from_batches(parts).combine_chunks()
        n = events.num_rows
        clock = events.column("received_at").to_numpy()
        clock = np.maximum.accumulate(np.maximum(clock, project.clock))  # never backwards
        project.clock = int(clock[-1])
        seq = np.arange(project.next_seq, project.next_seq + n, dtype=np.int64)
        project.next_seq += n
        sent = events.column("sent_at")
        raw = events.column("ts").to_numpy()
        fixed = raw + (clock - sent.fill_null(0).to_numpy())
        ts = np.minimum(np.where(sent.is_null().to_numpy(zero_copy_only=False), raw, fixed), clock)
        eligible = self._eligible(settings, events)
        rows.event_tables.append(
            pa.table(
                {
                    "project_id": pa.array(np.full(n, pid, dtype=np.int32)),
                    "seq": pa.array(seq),
                    "message_id": events.column("message_id"),
                    "profile_id": events.column("profile_id"),
                    "name": events.column("name"),
                    "ts": pa.array(ts),
                    "source": events.column("source"),
                    "received_at": pa.array(clock),
                    "properties": events.column("properties"),
                }
            )
        )
        codes = project.code(events.column("profile_id"))
        np.minimum.at(project.lo, codes, ts)  # first and last seen, for the profile rows
        np.maximum.at(project.hi, codes, ts)
        project.dirty[codes] = True
        if not eligible.any():
            return project, None, np.empty(0, dtype=np.int64)
        idx = np.flatnonzero(eligible)
        batch = vector.Batch(
            code=codes[idx],
            ts=ts[idx],
            clock=clock[idx],
            seq=seq[idx],
            message_id=_Texts(events.column("message_id").take(pa.array(idx))),
            source=_Texts(events.column("source").take(pa.array(idx))),
        )
        out = vector.step(
            project.table, batch, timeout, history=lambda code: self._history(pid, project, code)
        )
        keys = self._sessions(pid, project, out.sessions, rows, int(clock[-1]))
        session = out.session
        skey = np.where(session >= 0, keys[np.maximum(session, 0)] if len(keys) else -1, -1)
        rows.assign.append(
            pa.table(
                {
                    "project_id": pa.array(np.full(len(idx), pid, dtype=np.int32)),
                    "seq": pa.array(batch.seq),
                    "skey": pa.array(skey, mask=skey < 0),
                    "late": pa.array(out.late),
                }
            )
        )
        # the store key of each touched profile's open session after the group: the one
        # it had (a profile may be touched only by late events), a new one, or none
        open_keys = project.keys[out.codes].copy()
        open_keys[out.after.open_last == NONE] = -1
        still_open = ~out.sessions.concluded
        if still_open.any():
            where = np.searchsorted(out.codes, out.sessions.code[still_open])
            open_keys[where] = keys[still_open]
        return project, out, open_keys

    @staticmethod
    def _eligible(settings: Settings, events: pa.Table) -> np.ndarray:
        """R1 for every row at once."""
        n = events.num_rows
        if not settings.sessions_enabled:
            return np.zeros(n, dtype=bool)
        barred = pa.array([*settings.excluded, *SYSTEM_EVENTS], pa.string())
        ok = pc.and_(
            pc.not_equal(events.column("source"), "api"),
            pc.invert(pc.is_in(events.column("name"), value_set=barred)),
        )
        return np.asarray(ok.to_numpy(zero_copy_only=False), dtype=bool)

    def _sessions(
        self, pid: int, project: _Project, s: vector.Sessions, rows: Rows, at: int
    ) -> np.ndarray:
        """Store keys for a step's sessions (an open session keeps its key; a new one
        takes the next), and their rows; concluded ones are raised at `at`."""
        keys = np.empty(len(s), dtype=np.int64)
        existing = s.head < 0
        keys[existing] = project.keys[s.code[existing]]
        new = np.flatnonzero(~existing | (keys < 0))
        keys[new] = np.arange(project.next_skey, project.next_skey + len(new))
        project.next_skey += len(new)
        m = len(s)
        rows.session_tables.append(
            pa.table(
                {
                    "project_id": pa.array(np.full(m, pid, dtype=np.int32)),
                    "skey": pa.array(keys),
                    "session_id": pa.array(s.session_id, pa.string()),
                    "profile_id": project.known.take(pa.array(s.code)),
                    "first_ts": pa.array(s.first_ts),
                    "last_ts": pa.array(s.last_ts),
                    "events": pa.array(s.events),
                    "source": pa.array(s.source, pa.string()),
                    "concluded": pa.array(s.concluded),
                    "concluded_at": pa.array(np.full(m, at, dtype=np.int64), mask=~s.concluded),
                }
            )
        )
        return keys

    def _history(self, pid: int, project: _Project, code: int) -> list[tuple[int, int]]:
        """The concluded sessions of a profile in the store (only asked for an event older
        than its horizon; a group's own conclusions the step knows itself)."""
        stored = self.con.execute(
            """SELECT first_ts, last_ts FROM sessions WHERE project_id = ?
               AND profile_id = ? AND concluded ORDER BY 1, 2""",
            [pid, project.table.profile_id[code]],
        ).fetchall()
        return [(int(f), int(la)) for f, la in stored]

    def _conclude_due(self) -> None:
        """R4: conclude every open session whose last event + timeout has passed."""
        now = self.clock()
        rows = Rows()
        outs: list[tuple[_Project, vector.Concluded]] = []
        for pid, project in self.projects.items():
            if not len(project.table):
                continue
            due = vector.conclude_due(project.table, now + 1, project.settings.timeout_ms)
            if not len(due.codes):
                continue
            self._sessions(pid, project, due.sessions, rows, now)
            rows.projects.add(pid)
            outs.append((project, due))
        if not outs:
            return
        try:
            with transaction(self.con):
                self._write(rows)
        except BaseException:
            self.projects.clear()
            self._load()
            return
        for project, due in outs:
            project.table.put(due.codes, due.after)
            project.keys[due.codes] = -1
            project.dirty[due.codes] = True

    def flush_profiles(self) -> None:
        """Profiles are a summary of events and sessions; they are written every couple
        of seconds rather than with every commit (and rebuilt from those at start)."""
        self.last_flush = time.monotonic()
        done = []
        tables = []
        for pid, project in self.projects.items():
            if project.dirty.any():
                at, rows = project.profile_rows(pid)
                done.append((project, at))
                tables.append(rows)
        if not tables:
            return
        try:
            with transaction(self.con):
                write_profiles(self.con, pa.concat_tables(tables))
        except BaseException:
            return  # still dirty: written with the next flush
        for project, at in done:
            project.written(at)

    def fill_ends(self) -> None:
        """Keep the first and last events of the sessions concluded since (store/ends.py):
        the board's figures read them, and find them from the events (slower) until then."""
        self.last_ends = time.monotonic()
        try:
            with transaction(self.con):
                fill_all(self.con)
        except duckdb.Error:
            return  # tried again next time: no figure depends on it for its answer

    def _write(self, rows: Rows) -> None:
        counters = {
            pid: (self.projects[pid].next_seq, self.projects[pid].next_skey)
            for pid in rows.projects
        }
        write(self.con, rows, counters)


class _Texts(Sequence[str]):
    """A string column the engine reads a value at a time: it needs the message id and
    source of each new session's first event only, not the group's 50,000 as Python
    strings (making those held the GIL for milliseconds at each group)."""

    def __init__(self, column: pa.Array | pa.ChunkedArray) -> None:
        self.column = column

    def __len__(self) -> int:
        return len(self.column)

    def __getitem__(self, i: Any) -> Any:
        return self.column[i].as_py()


def _profiles_of(t: pa.Table) -> tuple[vector.Profiles, np.ndarray]:
    """`LiveEngine._states` rows as a profiles table and the open sessions' store keys."""

    def ints(name: str, empty: int = NONE) -> np.ndarray:
        values: np.ndarray = t.column(name).fill_null(empty).to_numpy().astype(np.int64)
        return values

    def objects(name: str) -> np.ndarray:
        return np.asarray(t.column(name).to_pylist(), dtype=object)

    table = vector.Profiles(
        profile_id=objects("profile_id"),
        open_id=objects("open_id"),
        open_first=ints("open_first"),
        open_last=ints("open_last"),
        open_events=ints("open_events", 0),
        open_source=objects("open_source"),
        horizon=ints("horizon"),
        latest_first=ints("latest_first"),
        latest_id=objects("latest_id"),
    )
    return table, ints("open_key", -1)


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
