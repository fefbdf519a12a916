"""The native ingestion API (`POST /api/v1/events`) and the read API, against `lull serve`."""

from __future__ import annotations

import base64
import gzip
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from serverproc import MIN, Keys, LullServer, bearer, iso, now_ms


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LullServer]:
    with LullServer(tmp_path_factory.mktemp("native") / "lull.duckdb") as srv:
        srv.create_project("shop", sessions="on")
        srv.create_project("rival", sessions="on")
        srv.create_project("quiet")  # sessions off (the default)
        srv.start()
        yield srv


@pytest.fixture(scope="module")
def shop(server: LullServer) -> Keys:
    return server.projects["shop"]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def ev(
    mid: str, profile: object, ts: object, name: str = "Song Played", **extra: Any
) -> dict[str, Any]:
    return {"message_id": mid, "profile_id": profile, "name": name, "ts": ts, **extra}


def test_partial_batch(server: LullServer, shop: Keys) -> None:
    t = now_ms() - 5 * MIN
    batch: list[Any] = [
        ev("pb-0", "pb", t),
        {"message_id": "pb-1", "profile_id": "pb", "ts": t},  # no name
        ev("pb-2", "pb", t + 1000, properties=[1]),
        ev("pb-3", "pb", "yesterday"),
        ev("pb-4", "pb", t + 2000, name="Session Concluded"),
        "an event?",
        ev("", "pb", t),
        ev("pb-7", 42, t),
        ev("pb-8", "pb", t + 3000, properties={"ok": True}, source="tv"),  # source: from the key
        ev("pb-9", "pb", -1),
        ev("pb-10", "pb", "2026-11-01T10:00:00"),  # no offset
    ]
    got = server.post_events(shop.web, batch)
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["accepted"] == 2 and body["duplicates"] == 0
    errors = {r["index"]: r["error"] for r in body["rejected"]}
    assert sorted(errors) == [1, 2, 3, 4, 5, 6, 7, 9, 10]
    assert "'name'" in errors[1] and "missing" in errors[1]
    assert "'properties'" in errors[2]
    assert "'ts'" in errors[3] and "'ts'" in errors[9] and "'ts'" in errors[10]
    assert "Session Concluded" in errors[4] and "system event" in errors[4]
    assert "object" in errors[5]
    assert "'message_id'" in errors[6]
    assert "'profile_id'" in errors[7]
    stored = {e["message_id"]: e for e in server.events(shop, profile_id="pb")}
    assert set(stored) == {"pb-0", "pb-8"}
    assert stored["pb-8"]["source"] == "web" and stored["pb-8"]["properties"] == {"ok": True}
    assert stored["pb-0"]["ts"] == iso(t)
    assert stored["pb-0"]["session_id"] == stored["pb-8"]["session_id"] is not None


def test_every_event_bad_is_a_400(server: LullServer, shop: Keys) -> None:
    got = server.post_events(
        shop.web, [{"name": "x"}, ev("b-1", "b", now_ms(), "Session Concluded")]
    )
    assert got.status_code == 400
    assert [r["index"] for r in got.json()["rejected"]] == [0, 1]
    assert server.events(shop, profile_id="b") == []


def test_invalid_utf8_is_a_400_on_every_sdk_path(server: LullServer, shop: Keys) -> None:
    """Bytes that are not UTF-8 inside a JSON string: a clear 400 (an SDK retries a 5xx
    for ever), never stored, and the server goes on."""
    bad = b"\xff\xfe"
    native = b'[{"message_id": "u8", "profile_id": "u", "name": "' + bad + b'", "ts": 1}]'
    ndjson = b'{"message_id": "u8", "profile_id": "u", "name": "' + bad + b'", "ts": 1}'
    segment = b'{"batch": [{"type": "track", "event": "' + bad + b'"}]}'
    amplitude = (
        b'{"api_key": "' + shop.web.encode() + b'", "events": [{"event_type": "' + bad + b'"}]}'
    )
    posthog = b'{"api_key": "' + shop.web.encode() + b'", "batch": [{"event": "' + bad + b'"}]}'
    for path, body, headers in (
        ("/api/v1/events", native, bearer(shop.web)),
        ("/api/v1/events", ndjson, bearer(shop.web)),
        ("/v1/batch", segment, {"Authorization": "Basic " + b64(shop.web + ":")}),
        ("/2/httpapi", amplitude, {}),
        ("/batch/", posthog, {}),
    ):
        got = server.http.post(path, content=body, headers=headers)
        assert got.status_code == 400, (path, got.text)
        assert "UTF-8" in got.text, (path, got.text)
    assert server.http.get("/healthz").status_code == 200
    assert "u8" not in {e["message_id"] for e in server.events(shop)}


def test_an_answer_never_grows_much_past_its_request(server: LullServer, shop: Keys) -> None:
    """A body of many bad records lists the first 100 and counts them all (a 500 KB
    body of `{}` was answered with megabytes of errors)."""
    body = b"[" + b",".join([b"{}"] * 100_000) + b"]"
    for path, headers, key in (
        ("/api/v1/events", bearer(shop.web), "rejected"),
        ("/v1/batch", {"Authorization": "Basic " + b64(shop.web + ":")}, "rejected"),
    ):
        wrapped = body if path == "/api/v1/events" else b'{"batch": ' + body + b"}"
        got = server.http.post(path, content=wrapped, headers=headers)
        assert got.status_code == 400, got.text[:200]
        answer = got.json()
        assert len(answer[key]) == 100 and answer["rejected_count"] == 100_000
        assert len(got.content) < len(wrapped)
    ok = [ev("fine-1", "u", now_ms())]
    got = server.post_events(shop.web, ok)
    assert got.json() == {"accepted": 1, "duplicates": 0, "rejected": []}


def test_clients_that_drop_mid_body_leave_no_tracebacks(server: LullServer, shop: Keys) -> None:
    err = server.db.with_name(f"{server.db.name}.serve{server.starts}.err")
    before = err.read_text()
    head = (
        f"POST /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {shop.web}"
        "\r\nContent-Type: application/json\r\nContent-Length: 10000\r\n\r\n"
    ).encode()
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", server.port)) as s:
            s.sendall(head + b'[{"message_id": "cut", "profile_id": "u"')
        # closed with 9,960 bytes of the body still to come
    assert server.http.get("/healthz").status_code == 200
    time.sleep(0.5)
    grown = err.read_text()[len(before) :]
    assert "Traceback" not in grown and len(grown) < 2000, grown[:2000]


def test_a_gzip_body_of_several_members_is_read_whole(server: LullServer, shop: Keys) -> None:
    t = now_ms() - MIN
    first = json.dumps(ev("gzm-1", "gzm", t)).encode() + b"\n"
    second = json.dumps(ev("gzm-2", "gzm", t + 1)).encode() + b"\n"
    body = gzip.compress(first) + gzip.compress(second)  # `cat a.gz b.gz`
    got = server.http.post("/api/v1/events", content=body, headers=bearer(shop.web))
    assert got.status_code == 200 and got.json()["accepted"] == 2, got.text
    stored = {e["message_id"] for e in server.events(shop, profile_id="gzm")}
    assert stored == {"gzm-1", "gzm-2"}
    member = gzip.compress(b" " * 400_000)  # each small packed, all over 500 KB unpacked
    bomb = server.http.post("/api/v1/events", content=member * 3, headers=bearer(shop.web))
    assert bomb.status_code == 413 and "once unzipped" in bomb.text


def test_times_outside_1970_to_9999_are_refused(server: LullServer, shop: Keys) -> None:
    """As an import refuses them: a year-0 time once broke a project's pages and its
    export (issue 12), and 1969 was taken as ISO text while -1 ms was not."""
    for i, ts in enumerate(("0001-01-01T00:00:00+23:59", "1969-12-31T23:59:59Z", -1)):
        got = server.post_events(shop.web, [ev(f"range-{i}", "range", ts)])
        assert got.status_code == 400, got.text
        assert "field 'ts'" in got.json()["rejected"][0]["error"]
    ok = server.post_events(shop.web, [ev("range-ok", "range", "1970-01-01T00:00:00Z")])
    assert ok.status_code == 200 and ok.json()["accepted"] == 1


def test_a_profile_of_any_id_is_read_by_its_id(server: LullServer, shop: Keys) -> None:
    """Slashes, a line feed inside and one at the end: each id reads its own profile
    (a line feed at the end was once cut off, and one inside was a plain-text 404)."""
    ids = ["a/b", "line\nfeed", "ends\n", "ends"]
    t = now_ms() - MIN
    got = server.post_events(shop.web, [ev(f"any-{i}", p, t) for i, p in enumerate(ids)])
    assert got.status_code == 200 and got.json()["accepted"] == 4, got.text
    for profile_id in ids:
        path = "/api/v1/profiles/" + urllib.parse.quote(profile_id, safe="")
        deadline = time.monotonic() + 6
        while True:
            read = server.http.get(path, headers=bearer(shop.read_token))
            if read.status_code == 200 or time.monotonic() > deadline:
                break
            assert read.headers["content-type"] == "application/json", read.text
            time.sleep(0.1)
        assert read.status_code == 200 and read.json()["profile_id"] == profile_id, read.text
    missing = server.http.get("/api/v1/profiles/no%0Abody", headers=bearer(shop.read_token))
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/json"


def test_duplicates_stored_once(server: LullServer, shop: Keys) -> None:
    t = now_ms() - MIN
    batch = [ev("dup-1", "dup", t), ev("dup-2", "dup", t + 1), ev("dup-1", "dup", t + 2)]
    got = server.post_events(shop.ios, batch)
    assert got.json() == {"accepted": 2, "duplicates": 1, "rejected": []}
    for _ in range(2):  # a client retrying
        got = server.post_events(shop.ios, batch)
        assert got.status_code == 200
        assert got.json() == {"accepted": 0, "duplicates": 3, "rejected": []}
    # the same id from another source of the project is the same event (R6: per project)
    got = server.post_events(shop.android, [ev("dup-2", "dup", t + 5), ev("dup-3", "dup", t)])
    assert got.json()["accepted"] == 1 and got.json()["duplicates"] == 1
    stored = server.events(shop, profile_id="dup")
    assert sorted(e["message_id"] for e in stored) == ["dup-1", "dup-2", "dup-3"]
    first = next(e for e in stored if e["message_id"] == "dup-1")
    assert first["ts"] == iso(t)  # the first one wins
    (session,) = server.sessions(shop, profile_id="dup")
    assert session["events"] == 3


def test_concurrent_retries_stored_once(server: LullServer, shop: Keys) -> None:
    """Copies of a batch sent at once, while the writer is busy with a big one, reach it in
    one group commit: the first copy is stored, the others are duplicates (R6)."""
    t = now_ms() - MIN
    accepted: list[int] = []

    def send(body: list[dict[str, Any]], start: threading.Barrier, count: bool) -> None:
        with httpx.Client(base_url=server.base, timeout=30.0) as http:
            start.wait()
            got = http.post("/api/v1/events", json=body, headers=bearer(shop.web))
            assert got.status_code == 200
            if count:
                accepted.append(got.json()["accepted"])

    for r in range(5):
        batch = [ev(f"cc{r}-{i}", f"cc{i}", t + r * 1000) for i in range(5)]
        busy = [ev(f"busy{r}-{i}", "busy", t, properties={"i": i}) for i in range(2000)]
        start = threading.Barrier(9)
        threads = [threading.Thread(target=send, args=(busy, start, False))]
        threads += [threading.Thread(target=send, args=(batch, start, True)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sum(accepted) == 25 and len(accepted) == 5 * 8
    for i in range(5):
        stored = server.events(shop, profile_id=f"cc{i}")
        assert sorted(e["message_id"] for e in stored) == [f"cc{r}-{i}" for r in range(5)]
        (session,) = server.sessions(shop, profile_id=f"cc{i}")
        assert session["events"] == 5


def test_size_limits(server: LullServer, shop: Keys) -> None:
    t = now_ms()
    big = ev("big-1", "big", t, properties={"blob": "x" * 33_000})
    got = server.post_events(shop.web, [ev("big-0", "big", t), big])
    assert got.status_code == 200
    (refused,) = got.json()["rejected"]
    assert refused["index"] == 1 and "32 KB" in refused["error"]
    got = server.post_events(shop.web, [big])
    assert got.status_code == 413 and "32 KB" in got.json()["rejected"][0]["error"]
    # A body over 500 KB is refused whole, however its events are.
    many = [ev(f"big-{i}", "big", t, properties={"p": "y" * 1000}) for i in range(2, 600)]
    got = server.post_events(shop.web, many)
    assert got.status_code == 413 and "limit" in got.json()["error"]
    # ... also when it is only that big once unzipped, or streamed without a length.
    zipped = gzip.compress(json.dumps(many).encode())
    assert len(zipped) < 500 * 1024
    got = server.http.post(
        "/api/v1/events",
        content=zipped,
        headers={**bearer(shop.web), "Content-Encoding": "gzip"},
    )
    assert got.status_code == 413
    chunks = iter([json.dumps(many).encode()[i : i + 65536] for i in range(0, 700_000, 65536)])
    got = server.http.post("/api/v1/events", content=chunks, headers=bearer(shop.web))
    assert got.status_code == 413
    assert [e["message_id"] for e in server.events(shop, profile_id="big")] == ["big-0"]


def test_keys(server: LullServer, shop: Keys) -> None:
    rival = server.projects["rival"]
    t = now_ms()
    batch = [ev("key-1", "key", t)]
    for headers in (
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer nope"},
        {"Authorization": f"Basic {shop.web}"},
        {"Authorization": shop.web},
        bearer(shop.read_token),
        bearer(shop.passcode),
        bearer(shop.web + "x"),
    ):
        got = server.http.post("/api/v1/events", json=batch, headers=headers)
        assert got.status_code == 401, headers
        assert got.json() == {"error": "missing or wrong key"}
    assert server.events(shop, profile_id="key") == []
    for what in ("events", "sessions", "profiles/key", "board"):
        for headers in ({}, bearer(shop.web), bearer(shop.server), bearer("lull_read_x")):
            assert server.http.get(f"/api/v1/{what}", headers=headers).status_code == 401

    # The rival project's key writes to the rival project only; its token reads only it.
    assert server.post_events(rival.web, batch).status_code == 200
    assert server.events(shop, profile_id="key") == []
    assert server.sessions(shop, profile_id="key") == []
    got = server.http.get("/api/v1/profiles/key", headers=bearer(shop.read_token))
    assert got.status_code == 404
    assert [e["message_id"] for e in server.events(rival, profile_id="key")] == ["key-1"]
    assert server.post_events(shop.web, batch).json()["accepted"] == 1  # not a duplicate here
    mine = server.events(shop, profile_id="key")
    theirs = server.events(rival, profile_id="key")
    assert len(mine) == len(theirs) == 1
    assert mine[0]["session_id"] and theirs[0]["session_id"]
    assert not {e["message_id"] for e in server.events(rival)} & {"pb-0", "dup-1", "big-0"}


def test_gzip_bodies(server: LullServer, shop: Keys) -> None:
    t = now_ms()
    body = gzip.compress(json.dumps([ev("gz-1", "gz", t)]).encode())
    got = server.http.post(
        "/api/v1/events",
        content=body,
        headers={
            **bearer(shop.web),
            "Content-Encoding": "gzip",
            "Content-Type": "application/json",
        },
    )
    assert got.status_code == 200 and got.json()["accepted"] == 1
    body = gzip.compress(json.dumps([ev("gz-2", "gz", t + 1)]).encode())
    got = server.http.post(
        "/api/v1/events", content=body, headers={**bearer(shop.web), "Content-Type": "text/plain"}
    )
    assert got.status_code == 200 and got.json()["accepted"] == 1
    got = server.http.post(
        "/api/v1/events",
        content=b"\x1f\x8b not really gzip",
        headers={**bearer(shop.web), "Content-Encoding": "gzip"},
    )
    assert got.status_code == 400 and "gzip" in got.json()["error"]
    assert sorted(e["message_id"] for e in server.events(shop, profile_id="gz")) == ["gz-1", "gz-2"]


def test_ndjson_body(server: LullServer, shop: Keys) -> None:
    t = now_ms() - 10_000
    lines = [json.dumps(ev(f"nd-{i}", "nd", t + i * 1000)) for i in range(3)]
    body = ("\n".join(lines[:2]) + "\n\n" + lines[2] + "\n").encode()
    got = server.http.post(
        "/api/v1/events",
        content=body,
        headers={**bearer(shop.android), "Content-Type": "application/x-ndjson"},
    )
    assert got.status_code == 200 and got.json()["accepted"] == 3
    stored = server.events(shop, profile_id="nd")
    assert len(stored) == 3 and len({e["session_id"] for e in stored}) == 1
    assert {e["source"] for e in stored} == {"android"}
    got = server.http.post(
        "/api/v1/events", content=lines[0] + "\n{not json\n", headers=bearer(shop.android)
    )
    assert got.status_code == 400 and "line 2" in got.json()["error"]


def test_server_key_events_have_no_session(server: LullServer, shop: Keys) -> None:
    t = now_ms() - 60_000
    got = server.post_events(shop.server, [ev(f"api-{i}", "api", t + i) for i in range(5)])
    assert got.status_code == 200
    stored = server.events(shop, profile_id="api")
    assert len(stored) == 5
    assert all(e["source"] == "api" and e["session_id"] is None for e in stored)
    assert server.sessions(shop, profile_id="api") == []
    # ... nor do they extend an SDK session of the same profile.
    assert server.post_events(shop.web, [ev("api-web", "api", t)]).status_code == 200
    (session,) = server.sessions(shop, profile_id="api")
    assert session["events"] == 1 and session["first_ts"] == session["last_ts"] == iso(t)


def test_excluded_events_and_sessions_off(server: LullServer, shop: Keys) -> None:
    t = now_ms() - 60_000
    got = server.post_events(
        shop.web, [ev("ex-1", "ex", t, name="App Installed"), ev("ex-2", "ex", t + 1, "Play")]
    )
    assert got.status_code == 200
    stored = {e["message_id"]: e for e in server.events(shop, profile_id="ex")}
    assert stored["ex-1"]["session_id"] is None and stored["ex-2"]["session_id"] is not None
    quiet = server.projects["quiet"]
    assert server.post_events(quiet.web, [ev("q-1", "q", t)]).status_code == 200
    assert server.events(quiet, profile_id="q")[0]["session_id"] is None
    assert server.sessions(quiet) == []


def test_clock_skew_and_future_times(server: LullServer, shop: Keys) -> None:
    now = now_ms()
    skewed = ev("sk-1", "sk", now - 3_600_000 - 30_000, sent_at=now - 3_600_000)
    future = ev("sk-2", "sk-future", now + 3_600_000)
    got = server.post_events(shop.web, [skewed, future])
    assert got.status_code == 200
    (one,) = server.events(shop, profile_id="sk")
    received = now_ms()
    assert now - 30_000 <= ms(one["ts"]) <= received - 30_000  # R5: skew corrected
    (two,) = server.events(shop, profile_id="sk-future")
    assert two["ts"] == two["received_at"]  # R5: not later than it was received


def ms(text: str) -> int:
    from lull.model import parse_time

    return parse_time(text, "ts")


def test_read_api_filters(server: LullServer, shop: Keys) -> None:
    t = now_ms() - 40 * MIN  # one session, still open
    batch = [ev(f"rf-{i}", "rf", t + i * 10 * MIN, "Play" if i % 2 else "Pause") for i in range(4)]
    assert server.post_events(shop.web, batch).status_code == 200
    everything = server.events(shop, profile_id="rf")
    assert [e["message_id"] for e in everything if e["name"] != "Session Concluded"] == [
        "rf-3",
        "rf-2",
        "rf-1",
        "rf-0",
    ]  # newest first
    assert [e["message_id"] for e in server.events(shop, profile_id="rf", name="Play")] == [
        "rf-3",
        "rf-1",
    ]
    between: dict[str, str | int] = {"from": t + 10 * MIN, "to": iso(t + 20 * MIN)}
    window = server.events(shop, profile_id="rf", **between)
    assert [e["message_id"] for e in window] == ["rf-2", "rf-1"]
    assert len(server.events(shop, profile_id="rf", limit=1)) == 1
    sid = everything[-1]["session_id"]
    assert {e["message_id"] for e in server.events(shop, session_id=sid)} == {
        "rf-0",
        "rf-1",
        "rf-2",
        "rf-3",
    }
    for params in ({"limit": "0"}, {"limit": "x"}, {"from": "soon"}, {"to": "2026-13-01"}):
        got = server.http.get("/api/v1/events", params=params, headers=bearer(shop.read_token))
        assert got.status_code == 400, params
    for params in ({"days": "0"}, {"until": "someday"}):
        got = server.http.get("/api/v1/board", params=params, headers=bearer(shop.read_token))
        assert got.status_code == 400, params
    board = server.read(shop, "board", days=2)
    assert {"length_distribution", "per_day", "late_events"} <= set(board)
    profile = server.profile(shop, "rf", lambda p: bool(p["latest_session_id"] == sid))
    assert profile["first_seen"] == iso(t)
    assert (
        server.http.get("/api/v1/profiles/nobody", headers=bearer(shop.read_token)).status_code
        == 404
    )


def test_openapi_and_unknown_paths(server: LullServer, shop: Keys) -> None:
    spec = server.http.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.") and "/api/v1/events" in spec["paths"]
    # Each read GET answers with the JSON type the spec declares.
    types = {"array": list, "object": dict}
    queries = {
        "/api/v1/whatif": {"timeout": "30m"},
        "/api/v1/figures/breakdown": {"property": "plan"},
    }
    for path, ops in spec["paths"].items():
        get = ops.get("get")
        if not get or get.get("security") != [{"read": []}] or "{" in path:
            continue
        declared = get["responses"]["200"]["content"]["application/json"]["schema"]["type"]
        got = server.http.get(path, params=queries.get(path), headers=bearer(shop.read_token))
        assert got.status_code == 200, (path, got.text)
        assert isinstance(got.json(), types[declared]), path
    assert server.http.get("/nothing-here").status_code == 404
    assert server.http.delete("/api/v1/events").status_code == 405


def test_clock_fix_before_1970_is_refused(server: LullServer, shop: Keys) -> None:
    t = now_ms()
    bad = {**ev("pre-1970", "u-clock", 1000), "sent_at": t + 10**12}
    good = ev("clock-ok", "u-clock", t - 1000)
    got = server.post_events(shop.android, [bad, good])
    assert got.status_code == 200
    [rejected] = got.json()["rejected"]
    assert rejected["index"] == 0 and "falls before 1970" in rejected["error"]
    assert [e["message_id"] for e in server.events(shop, profile_id="u-clock")] == ["clock-ok"]
