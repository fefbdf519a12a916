"""`lull serve` is two processes: the front (HTTP, the ingest log) and the store process
(the live engine, the store, the reads; server/front.py, server/store_process.py).

What the split must never show: a process left behind, an acknowledged event lost when
either one dies, a request from outside reaching the front's private questions to the
store process, or a client's cookies riding along with another client's requests.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import httpx

from lull.server.front import CONFIG_HEADER, LOG_HEADER, _forwarded
from serverproc import LullServer, bearer, now_ms


def store_process(srv: LullServer) -> int:
    """The pid of the server's store process (the front's one child)."""
    assert srv.proc is not None
    deadline = time.monotonic() + 10
    while True:
        children = Path(f"/proc/{srv.proc.pid}/task/{srv.proc.pid}/children").read_text().split()
        if children:
            (pid,) = children
            return int(pid)
        assert time.monotonic() < deadline, "no store process"
        time.sleep(0.05)


def gone(pid: int, wait: float = 10.0) -> bool:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            if Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z":
                return True  # a zombie: dead, its parent not yet told
        except (ProcessLookupError, FileNotFoundError):
            return True
        time.sleep(0.05)
    return False


def play(prefix: str, n: int, ts: int) -> list[dict[str, object]]:
    return [
        {"message_id": f"{prefix}-{i}", "profile_id": f"p{i % 5}", "name": "Song Played", "ts": ts}
        for i in range(n)
    ]


def test_a_killed_front_takes_the_store_process_with_it(tmp_path: Path) -> None:
    """kill -9 of the server (its front): the store process does not linger holding the
    store, and the next start has every acknowledged event, once."""
    with LullServer(tmp_path / "lull.duckdb") as srv:
        keys = srv.create_project("app", sessions="on")
        srv.start()
        t = now_ms()
        assert srv.post_events(keys.ios, play("a", 40, t - 1_000)).json()["accepted"] == 40
        child = store_process(srv)
        srv.kill()
        assert gone(child), "the store process outlived its front"
        srv.start()
        assert sorted(e["message_id"] for e in srv.events(keys)) == sorted(
            f"a-{i}" for i in range(40)
        )
        again = srv.post_events(keys.ios, play("a", 40, t - 1_000)).json()
        assert (again["accepted"], again["duplicates"]) == (0, 40)


def test_a_store_process_that_dies_stops_the_server_and_loses_nothing(tmp_path: Path) -> None:
    """The store process killed: the front says so and exits non-zero (a service manager
    restarts it); what it acknowledged is in the log and the next start applies it."""
    db = tmp_path / "lull.duckdb"
    with LullServer(db) as srv:
        keys = srv.create_project("app", sessions="on")
        srv.start()
        t = now_ms()
        assert srv.post_events(keys.ios, play("b", 30, t - 2_000)).json()["accepted"] == 30
        os.kill(store_process(srv), signal.SIGKILL)
        assert srv.proc is not None
        code = srv.proc.wait(30)
        srv.proc = None
        assert code != 0
        err = db.with_name(f"{db.name}.serve{srv.starts}.err").read_text()
        assert "the store process stopped unexpectedly" in err, err
        srv.start()
        got = srv.events(keys)
        assert sorted(e["message_id"] for e in got) == sorted(f"b-{i}" for i in range(30))
        assert len({e["session_id"] for e in got}) == 5  # one session per profile


def test_a_clean_stop_stops_both(tmp_path: Path) -> None:
    with LullServer(tmp_path / "lull.duckdb") as srv:
        keys = srv.create_project("app", sessions="on")
        srv.start()
        assert srv.post_events(keys.ios, play("c", 10, now_ms())).json()["accepted"] == 10
        child = store_process(srv)
        assert srv.stop() == 0
        assert gone(child, wait=1.0)
        assert not (tmp_path / "lull.duckdb.sock").exists()
        # the store process stopped cleanly: it saved the live state for the next start
        assert (tmp_path / "lull.duckdb.live").exists()


def test_the_front_s_questions_to_the_store_are_not_reachable(tmp_path: Path) -> None:
    """/_lull/... is between the two processes only: from outside it is not found, and a
    client's own x-lull-* headers are dropped, not believed."""
    with LullServer(tmp_path / "lull.duckdb") as srv:
        keys = srv.create_project("app", sessions="on")
        srv.start()
        assert srv.post_events(keys.ios, play("d", 3, now_ms())).json()["accepted"] == 3
        for method in ("GET", "POST"):
            got = srv.http.request(
                method, "/_lull/stored", json={"project": 1, "ids": ["d-0"], "since": 0}
            )
            assert got.status_code == 404, got.text
            assert "d-0" not in got.text
        # a read claiming the log is acknowledged far ahead still answers what is stored
        # (the front's own x-lull-log comes last and wins either way: the rule that drops
        # a client's is checked directly in the test below)
        got = srv.http.get(
            "/api/v1/events",
            headers={**bearer(keys.read_token), "x-lull-log": "999999:0"},
            params={"limit": 10},
        )
        assert got.status_code == 200 and len(got.json()) == 3
        assert "x-lull-config" not in got.headers  # between the two processes only
        assert got.headers.get_list("date") and len(got.headers.get_list("date")) == 1


def test_the_front_forwards_no_header_of_its_own_kind_from_a_client() -> None:
    """What the front passes on of a client's request: never an x-lull-* header (the
    store process believes those: how far the log was acknowledged), never one the front
    sets itself (who the client is) or a hop-by-hop one; the rest as it came. (The test
    above cannot see the difference: the front's own x-lull-log comes last and wins.)"""
    for header in (LOG_HEADER, CONFIG_HEADER, b"x-lull-anything", b"x-forwarded-for",
                   b"content-length", b"connection"):  # fmt: skip
        assert not _forwarded(header), header
    for header in (b"authorization", b"cookie", b"content-type", b"x-request-id", b"accept"):
        assert _forwarded(header), header


def test_two_clients_cookies_never_mix(tmp_path: Path) -> None:
    """The front forwards each request with its own cookies only: the session the store
    process gave a signed-in browser never rides along with another browser's request."""
    db = tmp_path / "lull.duckdb"
    with LullServer(db) as srv:
        srv.start()  # a store with no accounts: the first start makes `admin`
        err = db.with_name(f"{db.name}.serve{srv.starts}.err").read_text()
        found = re.search(r"made user 'admin' .* shown once: (\S+)", err)
        assert found, err
        one = httpx.Client(base_url=srv.base, timeout=30.0)
        page = one.get("/signin").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf, page
        got = one.post("/signin", data={"csrf": csrf.group(1), "name": "admin",
                                        "password": found.group(1)})  # fmt: skip
        assert got.status_code == 303, got.text
        assert one.get("/p/default/board").status_code == 200
        other = httpx.Client(base_url=srv.base, timeout=30.0)
        got = other.get("/p/default/board")
        assert got.status_code == 303 and got.headers["location"].startswith("/signin")
