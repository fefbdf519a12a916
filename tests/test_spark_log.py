"""`lull serve --ingest-only` processes write one shared ingest log; `lull spark stream
--log` sessionizes it: every acknowledged event exactly once, the embedded engine's
sessions and ids (`lull import --keep-open` of the same rows, in the log's order)."""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from lull.ingest.records import corrected_time
from lull.server.ingest_only import CLOCK, clock_row
from lull.store.log import IngestLog, read_segment, segments
from lullrun import lull
from serverproc import Keys, LullServer, export, now_ms
from test_spark_stream import embedded, outcome, read

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

MIN = 60_000
Record = dict[str, Any]


def ingest_only(db: Path, log: Path, writer: str) -> LullServer:
    server = LullServer(db)
    server.serve_args = ["--ingest-only", "--writer", writer, "--log-dir", str(log)]
    return server


def stream_log(log: Path, tmp: Path, project: str = "shop") -> Path:
    """`lull spark stream --log LOG --project P --until-idle` in this process."""
    out = tmp / "out"
    done = lull(
        tmp / "x.duckdb",
        *("spark", "stream", "--log", str(log), "--project", project, "--out", str(out)),
        *("--checkpoint", str(tmp / "ck"), "--timeout", "10m", "--until-idle"),
        *("--partitions", "2"),
    )
    assert done.code == 0, done.err
    return out


def logged(log: Path, project: str = "shop") -> list[Record]:
    """The events (kind 0) of `project` in the log's closed segments, in the stream's
    arrival order (received_at, then segment path and row), as canonical records."""
    rows = []
    for seg in segments(log):
        pos = 0
        for _, _, batch in read_segment(seg.path):
            for row in batch.to_pylist():
                pos += 1
                if row["kind"] == 0 and row["project"] == project:
                    rows.append((row["received_at"], str(seg.path), pos, row))
    rows.sort(key=lambda r: r[:3])
    return [r[3] for r in rows]


def canonical(row: Record) -> Record:
    out = {k: row[k] for k in ("message_id", "profile_id", "name", "ts", "source",
                               "received_at")}  # fmt: skip
    if row["sent_at"] is not None:
        out["sent_at"] = row["sent_at"]
    return out | {"properties": json.loads(row["properties"])}


def traffic(seed: int, keys: Keys, now: int) -> list[tuple[str, list[Record]]]:
    """Requests (key, events): times either minutes old (open sessions) or an hour or
    more (concluded at once), some with a skewed client clock (R5), some excluded."""
    rng = random.Random(seed)
    requests = []
    for r in range(8):
        events = []
        for i in range(12):
            recent = rng.random() < 0.5
            ago = (rng.choice([0, 1, 2, 4]) if recent else rng.randrange(60, 200)) * MIN
            event = {"message_id": f"m{r}-{i}", "profile_id": f"u{rng.randrange(6)}",
                     "name": rng.choice(["Play", "Play", "Pause", "App Installed"]),
                     "ts": now - ago, "properties": {"r": r, "i": i}}  # fmt: skip
            if rng.random() < 0.2:
                event["sent_at"] = now + rng.choice([-1, 1]) * rng.randrange(1, 90) * 1000
            events.append(event)
        requests.append((rng.choice([keys.web, keys.ios, keys.android]), events))
    return requests


def test_two_ingest_only_servers_one_stream(spark: SparkSession, tmp_path: Path) -> None:
    db, log = tmp_path / "lull.duckdb", tmp_path / "log"
    a, b = ingest_only(db, log, "a"), ingest_only(db, log, "b")
    keys = a.create_project("shop", sessions="on", timeout="10m")
    other = a.create_project("other")
    with a, b:
        a.start()
        b.start()  # both hold the store read-only at start: DuckDB allows it
        now = now_ms()
        for k, (key, events) in enumerate(traffic(5, keys, now)):
            if k == 3:  # a retry through the other server: the same message id (R6)
                events.append(dict(events[0]))
            got = (a if k % 2 else b).post_events(key, events)
            assert got.status_code == 200, got.text
        same = {"message_id": "twice", "profile_id": "u1", "name": "Play", "ts": now - 3 * MIN}
        assert a.post_events(keys.web, [same, same]).json()["duplicates"] == 1  # one request
        assert b.post_events(keys.web, [same]).json()["accepted"] == 1  # Spark drops it
        assert a.post_events(other.web, [same | {"message_id": "elsewhere"}]).status_code == 200
        identify = {"type": "identify", "messageId": "id-1", "anonymousId": "anon-9",
                    "userId": "u2", "traits": {"plan": "pro"}}  # fmt: skip
        got = a.http.post("/v1/batch", json={"batch": [identify], "writeKey": keys.web})
        assert got.status_code == 200, got.text
        for path in ("/api/v1/sessions", "/api/v1/events", "/p/shop/board", "/"):
            refused = a.http.get(path, headers={"Authorization": f"Bearer {keys.read_token}"})
            assert refused.status_code == 404 and "ingest-only" in refused.json()["error"], path
        assert a.http.get("/healthz").status_code == 200
        assert a.stop() == 0 and b.stop() == 0  # each closes its open segment
    assert {s.writer for s in segments(log)} == {"a", "b"}
    left_open = [s.path for s in segments(log, closed_only=False) if not s.closed]
    assert not [b for path in left_open for b in read_segment(path)]  # no batch left open

    out = stream_log(log, tmp_path)
    events = read(out, "events")
    ids = [e["message_id"] for e in events]
    assert len(ids) == len(set(ids)) == 8 * 12 + 2  # + "twice" and the identify's event
    assert "elsewhere" not in ids  # another project's
    # The embedded engine on the same rows, with the copy of each repeat the stream kept.
    kept = {e["message_id"]: e["received_at"] for e in events}
    rows, seen = [], set()
    for row in logged(log):
        mid = row["message_id"]
        if mid not in seen and _iso_ms(kept[mid]) == row["received_at"]:
            seen.add(mid)
            rows.append(canonical(row))
    assert len(rows) == len(ids)
    want = embedded(tmp_path / "embedded.duckdb", tmp_path, rows)
    assert outcome(out) | {"db": want["db"]} == want
    assert sum(e["late"] for e in want["events"]) >= 1 and want["concluded"]
    fixed = [r for r in logged(log) if r["sent_at"] is not None]
    assert fixed and any(corrected_time(r["ts"], r["sent_at"], r["received_at"]) != r["ts"]
                         for r in fixed)  # fmt: skip


def _iso_ms(text: str) -> int:
    from lull.model import parse_time

    return parse_time(text, "received_at")


def test_kill_9_mid_load_loses_no_acknowledged_event(spark: SparkSession, tmp_path: Path) -> None:
    db, log = tmp_path / "lull.duckdb", tmp_path / "log"
    server = ingest_only(db, log, "k")
    keys = server.create_project("shop", sessions="on", timeout="10m")
    acked: list[str] = []
    sent: list[str] = []

    def load() -> None:
        with httpx.Client(base_url=server.base, timeout=10.0) as client:
            for r in range(100_000):
                batch: list[dict[str, Any]] = [
                    {"message_id": f"k{r}-{i}", "profile_id": f"u{i % 7}", "name": "Play",
                     "ts": now_ms() - i * 1000} for i in range(20)
                ]  # fmt: skip
                sent.extend(str(e["message_id"]) for e in batch)
                try:
                    got = client.post("/api/v1/events", json=batch,
                                      headers={"Authorization": f"Bearer {keys.web}"})  # fmt: skip
                except httpx.TransportError:
                    return
                if got.status_code == 200:
                    acked.extend(str(e["message_id"]) for e in batch)

    with server:
        server.start()
        sender = threading.Thread(target=load)
        sender.start()
        deadline = time.monotonic() + 60
        while len(acked) < 200 and time.monotonic() < deadline:  # under load by then
            time.sleep(0.05)
        server.kill()  # kill -9 mid-load: its segment stays .open, maybe torn
        sender.join(30)
        assert len(acked) >= 100
        server.start()  # the same writer id recovers its open segment ...
        assert server.stop() == 0  # ... and closes it
    out = stream_log(log, tmp_path)
    ids = [e["message_id"] for e in read(out, "events")]
    assert len(ids) == len(set(ids))  # exactly once
    assert set(acked) <= set(ids) <= set(sent)


def test_clock_rows_move_the_streams_clock(spark: SparkSession, tmp_path: Path) -> None:
    """A quiet ingest-only server's clock rows conclude what is due (R4)."""
    log = tmp_path / "log"
    now = now_ms()
    with IngestLog(log, writer="w") as w:
        from lull.ingest.records import Event
        from lull.server.door import Batch, to_arrow

        old = Event("e1", "u", "Play", now - 30 * MIN, "web", None, {})
        w.append(to_arrow("shop", Batch(1, now - 25 * MIN, [old])))
        w.append(clock_row(now))
    assert [r["kind"] for r in logged_all(log)] == [0, CLOCK]
    out = stream_log(log, tmp_path)
    assert [s["events"] for s in read(out, "sessions")] == [1]


def logged_all(log: Path) -> list[Record]:
    return [row for seg in segments(log) for _, _, b in read_segment(seg.path)
            for row in b.to_pylist()]  # fmt: skip


def test_stream_over_a_servers_log_gives_its_sessions(spark: SparkSession, tmp_path: Path) -> None:
    """A full `lull serve`'s own log (closed at its stop) streamed: the server's sessions,
    ids and late marks; a repeat, a refused and an excluded event; an old session the
    server's timer concluded before an event late for it came."""
    server = LullServer(tmp_path / "lull.duckdb")
    keys = server.create_project("shop", sessions="on", timeout="10m")
    now = now_ms()

    def ev(mid: str, profile: str, ts: int, name: str = "Play", **extra: Any) -> Record:
        return {"message_id": mid, "profile_id": profile, "name": name, "ts": ts, **extra}

    with server:
        server.start()
        batches = [
            [ev("a1", "ann", now), ev("b1", "bob", now - 60 * MIN, properties={"k": [1, "x"]})],
            [ev("a2", "ann", now + 1000, sent_at=now + 5000), ev("a1", "ann", now)],  # retry
            [
                ev("bad", "ann", now, name="Session Concluded"),
                ev("c1", "cy", now, name="App Installed"),
            ],
        ]
        for batch in batches:
            server.post_events(keys.web, batch)
        time.sleep(1.5)  # bob's session (an hour old) is concluded by the server's timer
        late = [ev("b2", "bob", now - 60 * MIN + 30_000), ev("a3", "ann", now + 2000)]
        server.post_events(keys.ios, late)
        assert server.stop() == 0
    out = stream_log(tmp_path / "lull.duckdb.log", tmp_path)
    stored = export(server.db, "shop", "events")
    assert any(e["late"] for e in stored)  # the case is not trivial
    assert {e["message_id"]: (e["session_id"], e["late"]) for e in read(out, "events")} == {
        e["message_id"]: (e["session_id"], e["late"])
        for e in stored
        if e["name"] != "Session Concluded"
    }
    concluded = {s["session_id"] for s in export(server.db, "shop", "sessions") if s["concluded"]}
    assert {s["session_id"] for s in read(out, "sessions")} == concluded


def test_a_quiet_writer_appends_clock_rows(tmp_path: Path) -> None:
    from lull.server.ingest_only import Heartbeat

    with IngestLog(tmp_path, writer="q", segment_seconds=0.2) as log:
        beat = Heartbeat(log, lambda: 42, beat=0.3)
        beat.start()
        time.sleep(1.5)
        beat.stop()
    rows = logged_all(tmp_path)
    assert rows and all(r["kind"] == CLOCK and r["received_at"] == 42 for r in rows)
    assert len(segments(tmp_path)) >= 2  # closed as they come: Spark sees them
