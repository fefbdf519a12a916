"""kill -9 while clients stream: every acknowledged event survives exactly once, retries are
harmless, open sessions carry on after the restart, and sessions that fell due while the
server was down are concluded as soon as it is back (R4), each exactly once."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from lull.model import parse_time
from serverproc import Keys, LullServer, bearer, export, now_ms

PROFILES = 40
PER_BATCH = 20


def ms(text: str) -> int:
    return parse_time(text, "time")


class Streamer(threading.Thread):
    """A client sending batches of events (ts = now) as fast as the server takes them,
    noting which got a 2xx; errors (the server is gone) are just not acknowledged."""

    def __init__(self, base: str, keys: Keys) -> None:
        super().__init__(daemon=True)
        self.base, self.keys = base, keys
        self.batches: list[list[dict[str, Any]]] = []
        self.acked: set[int] = set()
        self.failed: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=10.0) as http:
            while not self.halt.is_set():
                n = len(self.batches)
                t = now_ms()
                batch = [
                    {
                        "message_id": f"s{n}-{i}",
                        "profile_id": f"p{(n * PER_BATCH + i) % PROFILES}",
                        "name": "Song Played",
                        "ts": t,
                        "properties": {"batch": n},
                    }
                    for i in range(PER_BATCH)
                ]
                self.batches.append(batch)
                try:
                    got = http.post("/api/v1/events", json=batch, headers=bearer(self.keys.ios))
                except httpx.TransportError as e:
                    self.failed.append(type(e).__name__)
                    time.sleep(0.01)
                    continue
                if 200 <= got.status_code < 300:
                    self.acked.add(n)
                else:
                    self.failed.append(str(got.status_code))
                time.sleep(0.003)


def test_kill_while_streaming_then_restart(tmp_path: Path) -> None:
    db = tmp_path / "lull.duckdb"
    with LullServer(db) as srv:
        keys = srv.create_project("live", sessions="on", timeout="1m")
        srv.start()

        # Sessions that fall due a few seconds from now: while the server is down.
        t0 = now_ms()
        due_times = {f"d{i}": [t0 - 56_000 + i * 100, t0 - 55_000 + i * 100] for i in range(5)}
        early = [
            {"message_id": f"{p}-{j}", "profile_id": p, "name": "Play", "ts": ts}
            for p, times in due_times.items()
            for j, ts in enumerate(times)
        ]
        assert srv.post_events(keys.web, early).status_code == 200
        due = {p: times[-1] + 60_000 for p, times in due_times.items()}

        stream = Streamer(srv.base, keys)
        stream.start()
        time.sleep(1.2)
        srv.kill()
        killed_at = now_ms()
        time.sleep(0.3)  # the client keeps trying against a dead server
        stream.halt.set()
        stream.join(30)
        assert not srv.running
        assert len(stream.acked) >= 5, stream.failed
        unacked = [n for n in range(len(stream.batches)) if n not in stream.acked]
        assert unacked, "the kill should cut some batches off"
        assert killed_at < min(due.values())  # those sessions were still open at the kill

        while now_ms() < max(due.values()) + 500:
            time.sleep(0.1)
        restarted_at = now_ms()
        srv.start()
        ready_at = now_ms()

        # R4: every session due while down is concluded at once, once.
        concluded = {e["profile_id"]: e for e in srv.events(keys, name="Session Concluded")}
        assert set(concluded) == set(due)
        for p, sc in concluded.items():
            raised = ms(sc["received_at"])
            assert restarted_at <= raised <= ready_at + 1_000
            assert ms(sc["ts"]) == due_times[p][-1]
            assert sc["properties"]["Session Length"] == 1

        # Retries: every unacknowledged batch, and every third acknowledged one, again.
        acked_before = {n for n in stream.acked}
        with httpx.Client(base_url=srv.base, timeout=30.0) as http:
            for n in sorted(unacked + [n for n in acked_before if n % 3 == 0]):
                got = http.post("/api/v1/events", json=stream.batches[n], headers=bearer(keys.ios))
                assert got.status_code == 200, got.text
                body = got.json()
                assert body["accepted"] + body["duplicates"] == PER_BATCH
                assert body["rejected"] == []
                if n in acked_before:
                    assert body["duplicates"] == PER_BATCH

        # Open sessions carry on: a new event of each streamed profile joins the session
        # its events from before the kill are in.
        before_kill: dict[str, set[str]] = {}
        for e in srv.events(keys, name="Song Played"):
            if int(e["message_id"][1:].split("-")[0]) in acked_before:
                before_kill.setdefault(e["profile_id"], set()).add(e["session_id"])
        assert len(before_kill) == PROFILES
        assert all(len(ids) == 1 and None not in ids for ids in before_kill.values())
        t = now_ms()
        after = [
            {"message_id": f"after-{p}", "profile_id": p, "name": "Song Played", "ts": t}
            for p in before_kill
        ]
        assert srv.post_events(keys.ios, after).json()["accepted"] == PROFILES
        for e in srv.events(keys, name="Song Played", **{"from": t}):
            assert {e["session_id"]} == before_kill[e["profile_id"]], e
        for s in srv.sessions(keys):
            if s["profile_id"] in before_kill:
                assert not s["concluded"] and s["session_id"] in before_kill[s["profile_id"]]

        # Another kill and restart: nothing is concluded a second time.
        srv.restart()
        assert len(srv.events(keys, name="Session Concluded")) == len(due)
        # A graceful stop (SIGTERM) ends normally, with the store closed and checkpointed.
        assert srv.stop() == 0
        assert not db.with_name(db.name + ".wal").exists()

    # Exactly once, read back from the store itself.
    events = export(db, "live", "events")
    sessions = export(db, "live", "sessions")
    counts = Counter(e["message_id"] for e in events)
    assert max(counts.values()) == 1
    sent = {e["message_id"] for batch in stream.batches for e in batch}
    assert sent <= set(counts)  # everything, acknowledged or retried, is stored
    concluded_ids = Counter(e["session_id"] for e in events if e["name"] == "Session Concluded")
    assert max(concluded_ids.values()) == 1
    assert {s["session_id"] for s in sessions if s["concluded"]} == set(concluded_ids)
    by_session = Counter(e["session_id"] for e in events if e["name"] != "Session Concluded")
    for s in sessions:
        assert s["events"] == by_session[s["session_id"]], s
    assert len(sessions) == PROFILES + len(due)
