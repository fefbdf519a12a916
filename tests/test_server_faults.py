"""Faults against a real `lull serve` on 127.0.0.1 (no mocks): kill -9 at random moments
under load, a torn and a corrupted ingest-log tail at start, a log disk that fills up and
then has room again, and SIGTERM (under load, and with the log's disk full).

The promise checked throughout: a 2xx means the events are stored, exactly once, after any
of these; a refused request (503) leaves nothing behind; and damage to an acknowledged
frame of the log is reported loudly, never silently (docs/ingest-log.md, "Crash safety").
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import struct
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from lull.store.log import HEADER, HEADER_SIZE, MAGIC
from serverproc import Keys, LullServer, bearer, export, now_ms

PROFILES = 30
SONG = "Song Played"  # eligible for sessions (sessions on, app sources)


def batch_of(
    prefix: str, n: int, rng: random.Random, size: int, pad: int = 0
) -> list[dict[str, Any]]:
    """`size` unique events; times from now back to 90 s ago (timeout 1m: some sessions
    fall due at once, some events arrive late)."""
    t = now_ms()
    return [
        {
            "message_id": f"{prefix}-{n}-{i}",
            "profile_id": f"p{rng.randrange(PROFILES)}",
            "name": SONG,
            "ts": t - rng.randrange(0, 90_000),
            "properties": {"batch": n, "pad": "x" * pad},
        }
        for i in range(size)
    ]


class Client(threading.Thread):
    """Posts batches of unique events as fast as the server takes them; notes which were
    acknowledged (2xx). A failure (server gone, 503) is simply not acknowledged."""

    def __init__(self, base: str, key: str, prefix: str, seed: int, size: int = 25) -> None:
        super().__init__(daemon=True)
        self.base, self.key, self.prefix, self.size = base, key, prefix, size
        self.rng = random.Random(seed)
        self.batches: list[list[dict[str, Any]]] = []
        self.acked: set[int] = set()
        self.outcomes: Counter[str] = Counter()
        self.halt = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=15.0) as http:
            while not self.halt.is_set():
                n = len(self.batches)
                batch = batch_of(self.prefix, n, self.rng, self.size)
                self.batches.append(batch)
                try:
                    got = http.post("/api/v1/events", json=batch, headers=bearer(self.key))
                except httpx.TransportError as e:
                    self.outcomes[type(e).__name__] += 1
                    time.sleep(0.02)
                    continue
                self.outcomes[str(got.status_code)] += 1
                if 200 <= got.status_code < 300:
                    assert got.json()["accepted"] == self.size, got.text
                    self.acked.add(n)
                time.sleep(0.002)

    def stop(self) -> None:
        self.halt.set()
        self.join(30)
        assert not self.is_alive()

    def acked_ids(self) -> set[str]:
        return {e["message_id"] for n in self.acked for e in self.batches[n]}

    def sent_ids(self) -> set[str]:
        return {e["message_id"] for b in self.batches for e in b}


def wait_acked(clients: list[Client], count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(len(c.acked) >= count for c in clients):
        assert time.monotonic() < deadline, [c.outcomes for c in clients]
        time.sleep(0.02)


def resend_unacked(srv: LullServer, key: str, clients: list[Client]) -> None:
    """What a client does after a failure: send every unacknowledged batch again."""
    for c in clients:
        for n in range(len(c.batches)):
            if n in c.acked:
                continue
            got = srv.post_events(key, c.batches[n])
            assert got.status_code == 200, got.text
            body = got.json()
            assert body["accepted"] + body["duplicates"] == len(c.batches[n]), body
            assert body["rejected"] == []
            c.acked.add(n)


def check_stored_once(events: list[dict[str, Any]], expected: set[str]) -> None:
    counts = Counter(e["message_id"] for e in events if e["name"] != "Session Concluded")
    duplicated = {m: k for m, k in counts.items() if k > 1}
    assert not duplicated, f"stored more than once: {sorted(duplicated)[:10]}"
    missing = expected - set(counts)
    assert not missing, f"acknowledged, not stored: {len(missing)}, e.g. {sorted(missing)[:10]}"


def check_sessions(events: list[dict[str, Any]], sessions: list[dict[str, Any]]) -> None:
    """Every eligible event has a session or is late (not both); every concluded session
    was concluded once (one Session Concluded event), and holds the events that name it."""
    for e in events:
        if e["name"] == SONG:
            assert (e["session_id"] is None) == bool(e["late"]), e
    concluded = Counter(e["session_id"] for e in events if e["name"] == "Session Concluded")
    assert not concluded or max(concluded.values()) == 1, concluded.most_common(3)
    assert {s["session_id"] for s in sessions if s["concluded"]} == set(concluded)
    ids = [s["session_id"] for s in sessions]
    assert len(ids) == len(set(ids))
    members = Counter(e["session_id"] for e in events if e["name"] == SONG and e["session_id"])
    assert set(members) == set(ids)
    for s in sessions:
        assert s["events"] == members[s["session_id"]], s


def log_dir(srv: LullServer) -> Path:
    return srv.db.with_name(srv.db.name + ".log")


def serve_err(srv: LullServer) -> str:
    """What the latest `lull serve` printed on stderr."""
    return srv.db.with_name(f"{srv.db.name}.serve{srv.starts}.err").read_text()


# -- 1. kill -9 at random moments under load ----------------------------------------------


def test_kill_9_at_random_moments_under_load(tmp_path: Path) -> None:
    rng = random.Random(20261201)
    db = tmp_path / "lull.duckdb"
    with LullServer(db) as srv:
        keys = srv.create_project("live", sessions="on", timeout="1m")
        every: list[Client] = []
        for r in range(3):
            srv.start()
            if r:  # after a kill: first every batch the last round left unacknowledged
                resend_unacked(srv, keys.ios, every)
            clients = [
                Client(srv.base, keys.ios, f"r{r}c{i}", rng.randrange(1 << 30)) for i in range(3)
            ]
            every += clients
            for c in clients:
                c.start()
            wait_acked(clients, 2)  # all of them under way
            time.sleep(rng.uniform(0.05, 1.5))  # then kill -9, wherever the server is
            srv.kill()
            for c in clients:
                c.stop()
            assert all(c.acked for c in clients), [c.outcomes for c in clients]
        srv.start()
        resend_unacked(srv, keys.ios, every)
        acked = set().union(*(c.acked_ids() for c in every))
        assert acked == set().union(*(c.sent_ids() for c in every))
        # The read API already has every one of them, once.
        read = srv.events(keys, name=SONG)  # the newest 10,000 at most
        assert len(read) == min(len(acked), 10_000)
        check_stored_once(read, {e["message_id"] for e in read} & acked)
        assert srv.stop() == 0
    events, sessions = export(db, "live", "events"), export(db, "live", "sessions")
    check_stored_once(events, acked)
    check_sessions(events, sessions)
    assert any(s["concluded"] for s in sessions) and any(e["late"] for e in events)


# -- 2. a torn and a corrupted log tail at start ------------------------------------------


def frames(segment: Path) -> list[tuple[int, int, int]]:
    """(offset, end, seq) of every whole frame of a segment file, in order."""
    data = segment.read_bytes()
    out, at = [], 0
    while at + HEADER_SIZE <= len(data):
        magic, length, seq, _kind, _zero, _crc = HEADER.unpack_from(data, at)
        end = at + HEADER_SIZE + length + (-length % 8)
        if magic != MAGIC or end > len(data):
            break
        out.append((at, end, seq))
        at = end
    return out


def open_segment(srv: LullServer) -> Path:
    found = sorted(log_dir(srv).glob("main-*.open"))
    assert found, sorted(p.name for p in log_dir(srv).iterdir())
    return found[-1]


def store_image(db: Path, where: Path) -> None:
    """The store's files as a crash leaves them (the server is down)."""
    where.mkdir()
    for f in db.parent.glob(db.name + "*"):
        if f.is_file() and ".serve" not in f.name:
            shutil.copy2(f, where / f.name)


def restore_store(db: Path, where: Path) -> None:
    """Put a crash image of the store back: the log keeps what was acknowledged since,
    which the store had not applied (a crash between the acknowledgement and the commit)."""
    for f in (db, db.with_name(db.name + ".wal")):
        f.unlink(missing_ok=True)
    for f in where.iterdir():
        shutil.copy2(f, db.parent / f.name)


def post_acked(
    srv: LullServer, keys: Keys, prefix: str, count: int, rng: random.Random
) -> set[str]:
    ids: set[str] = set()
    for n in range(count):
        batch = batch_of(prefix, n, rng, 10)
        got = srv.post_events(keys.ios, batch)
        assert got.status_code == 200 and got.json()["accepted"] == 10, got.text
        ids |= {e["message_id"] for e in batch}
    return ids


def stored_ids(srv: LullServer, keys: Keys) -> Counter[str]:
    """Every stored event's id, counted (read a profile at a time: a read answers at most
    10,000 events, fewer than a profile has here)."""
    found: Counter[str] = Counter()
    for p in range(PROFILES):
        got = srv.events(keys, name=SONG, profile_id=f"p{p}")
        assert len(got) < 10_000, "too many events to read in one answer"
        found.update(e["message_id"] for e in got)
    return found


def test_torn_log_tail_at_start(tmp_path: Path) -> None:
    rng = random.Random(7)
    db = tmp_path / "lull.duckdb"
    with LullServer(db) as srv:
        keys = srv.create_project("live", sessions="on", timeout="1m")
        srv.start()
        acked = post_acked(srv, keys, "a", 5, rng)
        srv.kill()  # right after the acknowledged appends
        seg = open_segment(srv)
        start, end, seq = frames(seg)[-1]
        data = seg.read_bytes()
        # Half of a real next frame: the header says seq + 1 and a length the file lacks.
        header = struct.pack("<4sIQHHI", MAGIC, end - start - HEADER_SIZE, seq + 1, 2, 0, 0)
        torn = header + data[start + HEADER_SIZE : end][: (end - start) // 2]
        with seg.open("ab") as f:
            f.write(torn)
        srv.start()
        err = serve_err(srv)
        assert f"dropped a torn tail of {len(torn)} bytes at byte {end}" in err, err
        assert seg.stat().st_size == end
        got = stored_ids(srv, keys)
        assert set(got) == acked and max(got.values()) == 1

        # Garbage after a crash (blocks that never held a frame).
        acked |= post_acked(srv, keys, "b", 3, rng)
        srv.kill()
        seg = open_segment(srv)
        size = seg.stat().st_size
        with seg.open("ab") as f:
            f.write(rng.randbytes(5000).replace(MAGIC, b"XXXX"))
        srv.start()
        err = serve_err(srv)
        assert f"dropped a torn tail of 5000 bytes at byte {size}" in err, err
        acked |= post_acked(srv, keys, "c", 2, rng)  # appends go on after the cut
        got = stored_ids(srv, keys)
        assert set(got) == acked and max(got.values()) == 1
        assert srv.stop() == 0
    events, sessions = export(db, "live", "events"), export(db, "live", "sessions")
    check_stored_once(events, acked)
    check_sessions(events, sessions)


def flip(segment: Path, at: int) -> None:
    with segment.open("r+b") as f:
        f.seek(at)
        old = f.read(4)
        f.seek(at)
        f.write(bytes(b ^ 0xFF for b in old))


def test_corrupted_log_tail_at_start(tmp_path: Path) -> None:
    """Bytes flipped in the last frame of the log, a frame that was acknowledged. The log
    cannot vouch for it and drops it (it cannot be told from an unsynced write after a
    power cut); the server says so loudly on stderr, then tells from the store whether
    that frame's events are lost:

    - the store had applied it (the usual case: the engine follows the log within
      milliseconds): nothing is lost, the events stay stored once, and the server carries
      on after the cut (what it appends next is replayed after a later crash);
    - the store had not applied it (a crash between the acknowledgement and the store's
      commit): its events are LOST, and the server says DATA LOSS with the count of
      frames; the client was told they were stored, so only the operator can know.
    """
    rng = random.Random(11)
    db = tmp_path / "lull.duckdb"
    with LullServer(db) as srv:
        keys = srv.create_project("live", sessions="on", timeout="1m")
        srv.start()
        acked = post_acked(srv, keys, "a", 4, rng)
        assert set(stored_ids(srv, keys)) == acked  # applied: the store has them all
        srv.kill()
        seg = open_segment(srv)
        start, end, _ = frames(seg)[-1]
        flip(seg, (start + end) // 2)  # in the payload: the checksum fails
        srv.start()
        err = serve_err(srv)
        assert f"at byte {start} (checksum mismatch): a whole frame there is DAMAGED" in err, err
        assert "the store had applied it: nothing lost" in err, err
        assert "DATA LOSS" not in err
        got = stored_ids(srv, keys)
        assert set(got) == acked and max(got.values()) == 1

        # The server carries on after the cut: what it acknowledges now is replayed after
        # a crash that comes before the store applies it.
        srv.kill()
        store_image(db, tmp_path / "image1")
        srv.start()
        later = post_acked(srv, keys, "b", 2, rng)
        srv.kill()
        restore_store(db, tmp_path / "image1")  # the store had not applied "b" yet
        srv.start()
        acked |= later
        got = stored_ids(srv, keys)
        assert set(got) == acked and max(got.values()) == 1

        # Now an acknowledged frame the store had not applied, damaged: lost, loudly.
        srv.kill()
        store_image(db, tmp_path / "image2")
        srv.start()
        lost = post_acked(srv, keys, "c", 1, rng)
        srv.kill()
        restore_store(db, tmp_path / "image2")
        seg = open_segment(srv)
        start, end, _ = frames(seg)[-1]
        flip(seg, (start + end) // 2)
        srv.start()
        err = serve_err(srv)
        assert f"at byte {start} (checksum mismatch): a whole frame there is DAMAGED" in err, err
        assert "DATA LOSS" in err and "LOST" in err, err
        got = stored_ids(srv, keys)
        assert set(got) == acked and max(got.values()) == 1
        assert not lost & set(got)
        # Sent again (as a client that hears of the loss would), they are stored once.
        for n in range(1):
            batch = [e for e in batch_of("c", n, random.Random(0), 10)]
            for e, mid in zip(batch, sorted(lost), strict=False):
                e["message_id"] = mid
            assert srv.post_events(keys.ios, batch).json()["accepted"] == 10
        acked |= lost
        assert srv.stop() == 0
    events, sessions = export(db, "live", "events"), export(db, "live", "sessions")
    check_stored_once(events, acked)
    check_sessions(events, sessions)


# -- 3. the log's disk fills up, then has room again --------------------------------------


@contextmanager
def small_disk(where: Path, size: str = "2m") -> Iterator[Path]:
    """A real, small tmpfs mounted at `where` (as root), unmounted afterwards."""
    where.mkdir()
    assert os.geteuid() == 0, "these tests mount a small tmpfs: run them as root"
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, f"cannot mount a tmpfs at {where}: {done.stderr}"
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path) -> Path:
    """Fill the disk to the last byte with one file; returns it."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for chunk in (1 << 16, 4096, 512, 1):
            try:
                while True:
                    os.write(fd, b"\x01" * chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_log_disk_full_then_room_again(tmp_path: Path) -> None:
    rng = random.Random(3)
    db = tmp_path / "lull.duckdb"
    with small_disk(tmp_path / "disk") as disk, LullServer(db) as srv:
        keys = srv.create_project("live", sessions="on", timeout="1m")
        srv.serve_args += ["--log-dir", str(disk / "log")]
        srv.start()
        acked = post_acked(srv, keys, "a", 3, rng)
        filler = fill(disk)
        refused: list[list[dict[str, Any]]] = []
        for n in range(3):  # each big enough to need new pages
            batch = batch_of("full", n, rng, 20, pad=500)
            got = srv.post_events(keys.ios, batch)
            assert got.status_code == 503, got.text
            assert got.headers["Retry-After"] == "2"
            refused.append(batch)
            health = srv.http.get("/healthz")
            assert health.status_code == 503 and health.headers["Retry-After"] == "2"
            assert "ENOSPC" in health.text, health.text
        assert "not durable, ENOSPC" in serve_err(srv)
        assert set(stored_ids(srv, keys)) == acked  # nothing of the refused requests

        filler.unlink()  # room again: no restart
        got = srv.post_events(keys.ios, refused[0])  # the first refused batch, retried
        assert got.status_code == 200 and got.json()["accepted"] == 20, got.text
        acked |= {e["message_id"] for e in refused[0]}
        assert srv.http.get("/healthz").status_code == 200
        acked |= post_acked(srv, keys, "b", 3, rng)
        got_ids = stored_ids(srv, keys)
        assert set(got_ids) == acked and max(got_ids.values()) == 1
        never = {e["message_id"] for b in refused[1:] for e in b}
        assert not never & set(got_ids)
        assert srv.stop() == 0
        events, sessions = export(db, "live", "events"), export(db, "live", "sessions")
    check_stored_once(events, acked)
    assert not never & {e["message_id"] for e in events}
    check_sessions(events, sessions)


# -- 4. SIGTERM stops it within 10 s ------------------------------------------------------


def sigterm(srv: LullServer) -> float:
    """SIGTERM; asserts a clean exit within 10 s; returns how long it took."""
    began = time.monotonic()
    code = srv.stop(timeout=10.0)  # kills it and raises TimeoutExpired past 10 s
    took = time.monotonic() - began
    assert code == 0, serve_err(srv)
    return took


def test_sigterm_under_load_stops_within_10_s(tmp_path: Path) -> None:
    rng = random.Random(5)
    db = tmp_path / "lull.duckdb"
    with LullServer(db) as srv:
        keys = srv.create_project("live", sessions="on", timeout="1m")
        srv.start()
        clients = [Client(srv.base, keys.ios, f"t{i}", rng.randrange(1 << 30)) for i in range(4)]
        for c in clients:
            c.start()
        time.sleep(1.5)
        took = sigterm(srv)
        for c in clients:
            c.stop()
        assert took < 10.0
        acked = set().union(*(c.acked_ids() for c in clients))
        assert acked
        srv.start()  # everything acknowledged is there after the restart, once
        got = stored_ids(srv, keys)
        assert acked <= set(got) and max(got.values()) == 1
        resend_unacked(srv, keys.ios, clients)
        acked = set().union(*(c.sent_ids() for c in clients))
        assert sigterm(srv) < 10.0
    events, sessions = export(db, "live", "events"), export(db, "live", "sessions")
    check_stored_once(events, acked)
    check_sessions(events, sessions)


def test_sigterm_with_the_log_disk_full(tmp_path: Path) -> None:
    rng = random.Random(6)
    db = tmp_path / "lull.duckdb"
    with small_disk(tmp_path / "disk") as disk, LullServer(db) as srv:
        keys = srv.create_project("live", sessions="on", timeout="1m")
        srv.serve_args += ["--log-dir", str(disk / "log")]
        srv.start()
        acked = post_acked(srv, keys, "a", 3, rng)
        filler = fill(disk)
        clients = [Client(srv.base, keys.ios, f"t{i}", rng.randrange(1 << 30)) for i in range(3)]
        for c in clients:
            c.start()
        wait_for(lambda: srv.http.get("/healthz").status_code == 503)
        time.sleep(0.5)  # the writer failing, requests refused, under load
        took = sigterm(srv)
        for c in clients:
            c.stop()
        assert took < 10.0
        assert sum(c.outcomes["503"] for c in clients) > 0
        acked |= set().union(*(c.acked_ids() for c in clients))
        filler.unlink()
        srv.start()
        got = stored_ids(srv, keys)
        assert acked <= set(got) and max(got.values()) == 1
        assert sigterm(srv) < 10.0
