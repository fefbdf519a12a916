"""Live segments: a webhook POSTed when a profile does an event (docs/segments.md).

The live engine calls `Watcher.stored` once per group of events it has committed (on its
writer thread). With no live segment that is one dictionary test; otherwise the group's
event names are matched set-wise (Arrow) against the live segments' events and each
candidate (segment, event seq) is put on a bounded queue without waiting: ingestion never
waits for a webhook. When the queue is full the candidate is dropped and counted; the
delivery log then says how many were dropped.

A worker thread takes the candidates, keeps those whose stored event passes the
segment's property filters (and, with "first time", has no earlier event of that name
passing them: the same SQL as a past-behaviour segment's filters), and POSTs the profile
and the event as JSON, signed:

    X-Lull-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>

A delivery that fails (no answer within TIMEOUT_S, or a status other than 2xx) is tried
again after BACKOFF_S, then twice that, and so on, ATTEMPTS times in all. Every attempt
is written to the delivery log (`segment_deliveries`). Pending deliveries live in memory:
those not yet made when the server stops are not made.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import json
import queue
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from lull.model import format_time
from lull.segments.definition import Live, parse_live
from lull.segments.query import filter_sql
from lull.store import segments as store
from lull.store.projects import now_ms

MAX_PENDING = 10_000  # candidates waiting for the worker; past it they are dropped
MAX_RETRYING = 10_000  # deliveries waiting to be tried again; past it they are dropped
ATTEMPTS = 5
BACKOFF_S = 0.5  # before the second attempt; doubled before each later one
TIMEOUT_S = 5.0  # for the receiver to answer
BATCH = 500  # candidates matched in one query
SIGNATURE_HEADER = "X-Lull-Signature"
PRUNE_EVERY = 1000  # attempts logged between two prunings of the log (store/segments.py)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value for `body` sent at `timestamp` (unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, tolerance_s: int = 300) -> bool:
    """Does `header` sign `body` with `secret`, at most `tolerance_s` ago? (What a
    receiver runs; docs/segments.md shows it.)"""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), header)


@dataclass(frozen=True, slots=True)
class Rule:
    """A live segment as the watcher applies it."""

    project_id: int
    name: str
    live: Live
    secret: str


@dataclass(slots=True)
class Delivery:
    rule: Rule
    message_id: str
    profile_id: str
    body: bytes
    attempt: int = 0


@dataclass
class _Live:
    """Per project: its rules, and the event names they fire on (as Arrow, for is_in)."""

    rules: list[Rule] = field(default_factory=list)
    names: pa.Array = field(default_factory=lambda: pa.array([], pa.string()))


class Watcher:
    """Fires the store's live segments. `stored` is the live engine's hook; `reload`
    reads the live segments again (after one is made or deleted)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, max_pending: int = MAX_PENDING) -> None:
        self._con = con.cursor()
        self._lock = threading.Lock()  # the cursor: reload (HTTP threads) and the worker
        self.by_project: dict[int, _Live] = {}
        # candidates (a segment and event seqs), a batch a group; at most max_pending
        # candidates wait (`waiting`): the hook drops the rest and counts them (`dropped`)
        self.pending: queue.Queue[tuple[Rule, list[int]]] = queue.Queue()
        self.max_pending = max_pending
        self.waiting = 0
        self.dropped: Counter[Rule] = Counter()
        self._counting = threading.Lock()
        self._retrying: list[tuple[float, int, Delivery]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()
        self._logged = 0  # attempts logged since the log was last pruned
        self.reload()

    def close(self) -> None:
        """Stop the worker (deliveries not yet made are not made)."""
        self._closed.set()
        if self._thread is not None:
            self._thread.join(TIMEOUT_S + 1)

    def reload(self) -> None:
        try:
            with self._lock:
                saved = store.live(self._con)
        except duckdb.Error:  # a store opened read-only, from before segments
            saved = []
        found: dict[int, _Live] = {}
        for s in saved:
            assert s.secret is not None
            rule = Rule(s.project_id, s.name, parse_live(s.definition, ()), s.secret)
            found.setdefault(s.project_id, _Live()).rules.append(rule)
        for live in found.values():
            live.names = pa.array(sorted({r.live.event for r in live.rules}), pa.string())
        self.by_project = found
        if found and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="lull-webhooks", daemon=True)
            self._thread.start()

    # -- on the live engine's thread -------------------------------------------------

    def stored(self, tables: list[pa.Table]) -> None:
        """The hook: a group of events was committed (tables of the events table's
        columns, one project each). Never blocks, never raises."""
        live = self.by_project
        if not live:
            return
        try:
            for t in tables:
                pids = t.column("project_id")
                for pid in pc.unique(pids).to_pylist():  # one project a table, as written now
                    project = live.get(int(pid))
                    if project is None:
                        continue
                    hit = pc.is_in(t.column("name"), value_set=project.names)
                    if pc.count_distinct(pids).as_py() > 1:
                        hit = pc.and_(hit, pc.equal(pids, pid))
                    if pc.any(hit).as_py():
                        self._offer_all(project, t.filter(hit))
        except Exception as e:  # a webhook must never stop ingestion
            print(f"lull: live segments: {e!r}", file=sys.stderr, flush=True)

    def _offer_all(self, project: _Live, picked: pa.Table) -> None:
        """Queue each segment's candidates as one batch (set-wise: no per-event Python)."""
        names, seqs = picked.column("name"), picked.column("seq")
        for rule in project.rules:
            mine = (
                seqs if len(project.names) == 1 else seqs.filter(pc.equal(names, rule.live.event))
            )
            n = len(mine)
            with self._counting:
                take = max(0, min(n, self.max_pending - self.waiting))
                self.waiting += take
                if take < n:
                    self.dropped[rule] += n - take
            if take:
                self.pending.put((rule, mine.slice(0, take).to_pylist()))

    # -- on the worker's thread ------------------------------------------------------

    def _run(self) -> None:
        while not self._closed.is_set():
            try:
                self._round()
            except Exception as e:  # the store closed at a stop, or a bug: keep going
                print(f"lull: live segments: {e!r}", file=sys.stderr, flush=True)
                time.sleep(1)

    def _round(self) -> None:
        wait = 0.5
        if self._retrying:
            wait = max(0.0, min(wait, self._retrying[0][0] - time.monotonic()))
        taken: list[tuple[Rule, list[int]]] = []
        try:
            taken.append(self.pending.get(timeout=wait))
            while sum(len(seqs) for _, seqs in taken) < BATCH:
                taken.append(self.pending.get_nowait())
        except queue.Empty:
            pass
        with self._counting:
            self.waiting -= sum(len(seqs) for _, seqs in taken)
        log: list[store.Attempt] = []
        for delivery in self._matched(taken):
            self._attempt(delivery, log)
        now = time.monotonic()
        while self._retrying and self._retrying[0][0] <= now:
            self._attempt(heapq.heappop(self._retrying)[2], log)
        with self._counting:
            dropped, self.dropped = self.dropped, Counter()
        for rule, n in dropped.items():
            log.append(_note(rule, None, None, 0, None, "dropped",
                             f"{n} deliveries dropped: the queue was full"))  # fmt: skip
        if log:
            with self._lock:
                store.log_attempts(self._con, log)
                self._logged += len(log)
                if self._logged >= PRUNE_EVERY:
                    store.prune_deliveries(self._con)
                    self._logged = 0

    def _matched(self, taken: list[tuple[Rule, list[int]]]) -> list[Delivery]:
        """The candidates whose events pass their segment's filters, as deliveries."""
        by_rule: dict[Rule, list[int]] = {}
        for rule, seqs in taken:
            by_rule.setdefault(rule, []).extend(seqs)
        out = []
        for rule, seqs, at in (
            (r, all_, i) for r, all_ in by_rule.items() for i in range(0, len(all_), BATCH)
        ):
            with self._lock:
                rows = _passing(self._con, rule, seqs[at : at + BATCH])
                profiles = _profiles(self._con, rule.project_id, {r["profile_id"] for r in rows})
            for event in rows:
                body = {
                    "segment": rule.name,
                    "delivery_id": f"{rule.name}:{event['message_id']}",
                    "profile": profiles.get(event["profile_id"])
                    or {"profile_id": event["profile_id"], "properties": {}},
                    "event": event,
                }
                data = json.dumps(body, separators=(",", ":")).encode()
                out.append(Delivery(rule, event["message_id"], event["profile_id"], data))
        return out

    def _attempt(self, d: Delivery, log: list[store.Attempt]) -> None:
        d.attempt += 1
        status, error = post(d.rule.live.webhook, d.rule.secret, d.body, d.message_id)
        if status is not None and 200 <= status < 300:
            log.append(_note(d.rule, d.message_id, d.profile_id, d.attempt, status, "delivered"))
            return
        if d.attempt >= ATTEMPTS:
            log.append(
                _note(d.rule, d.message_id, d.profile_id, d.attempt, status, "failed", error)
            )
            return
        if len(self._retrying) >= MAX_RETRYING:
            log.append(_note(d.rule, d.message_id, d.profile_id, d.attempt, status, "dropped",
                             f"{error}; too many deliveries waiting to be retried"))  # fmt: skip
            return
        log.append(_note(d.rule, d.message_id, d.profile_id, d.attempt, status, "retrying", error))
        due = time.monotonic() + BACKOFF_S * 2 ** (d.attempt - 1)
        heapq.heappush(self._retrying, (due, next(self._order), d))


def _note(
    rule: Rule, message_id: str | None, profile_id: str | None, attempt: int,
    status: int | None, outcome: str, error: str | None = None,
) -> store.Attempt:  # fmt: skip
    return (rule.project_id, rule.name, message_id, profile_id, attempt, now_ms(), status,
            outcome, error)  # fmt: skip


def post(url: str, secret: str, body: bytes, message_id: str) -> tuple[int | None, str | None]:
    """One attempt: the receiver's status (None if it did not answer) and what went wrong."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "lull-webhook",
        SIGNATURE_HEADER: sign(secret, int(time.time()), body),
        "X-Lull-Delivery": message_id,
    }
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:
            status = int(answer.status)
            return status, None if 200 <= status < 300 else f"HTTP {status}"
    except urllib.error.HTTPError as e:
        return int(e.code), f"HTTP {e.code}"
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        return None, f"no answer: {reason}"[:300]


def _passing(con: duckdb.DuckDBPyConnection, rule: Rule, seqs: list[int]) -> list[dict[str, Any]]:
    """The events (by seq) that pass the rule's filters (and are the first such, if
    asked), as canonical records."""
    params: dict[str, object] = {"pid": rule.project_id, "seqs": seqs, "name": rule.live.event}

    def param(value: object) -> str:
        key = f"v{len(params)}"
        params[key] = value
        return f"${key}"

    tests = "".join(f" AND {filter_sql(f, 'e.properties', param)}" for f in rule.live.where)
    first = ""
    if rule.live.first_time:
        earlier = "".join(f" AND {filter_sql(f, 'p.properties', param)}" for f in rule.live.where)
        first = f"""AND NOT EXISTS (SELECT 1 FROM events p WHERE p.project_id = $pid
                    AND p.profile_id = e.profile_id AND p.name = $name AND p.seq < e.seq
                    {earlier})"""
    rows = con.execute(
        f"""SELECT e.message_id, e.profile_id, e.name, e.ts, e.source, e.received_at,
                   e.properties::VARCHAR
            FROM events e WHERE e.project_id = $pid AND e.seq IN (SELECT unnest($seqs))
              AND e.name = $name {tests} {first}
            ORDER BY e.seq""",
        params,
    ).fetchall()
    keys = ("message_id", "profile_id", "name", "ts", "source", "received_at", "properties")
    out = [dict(zip(keys, r, strict=True)) for r in rows]
    for e in out:
        e["ts"], e["received_at"] = format_time(e["ts"]), format_time(e["received_at"])
        e["properties"] = json.loads(e["properties"] or "{}")
    return out


def _profiles(con: duckdb.DuckDBPyConnection, pid: int, ids: set[str]) -> dict[str, dict[str, Any]]:
    """The profiles as the store holds them now (a profile first seen a moment ago may
    not be written yet: its delivery then names it with no properties)."""
    if not ids:
        return {}
    rows = con.execute(
        """SELECT profile_id, first_seen, last_seen, properties::VARCHAR FROM profiles
           WHERE project_id = ? AND profile_id IN (SELECT unnest(?))""",
        [pid, sorted(ids)],
    ).fetchall()
    return {
        r[0]: {"profile_id": r[0], "first_seen": format_time(r[1]),
               "last_seen": format_time(r[2]), "properties": json.loads(r[3] or "{}")}
        for r in rows
    }  # fmt: skip
