"""Live segments on a real `lull serve`, POSTing to a real receiver on 127.0.0.1: what
fires (event name and property filters, "first time"), the signature (checked here with
hmac, apart from lull's code), retries after the receiver fails, the delivery log, and
Session Concluded and excluded events refused."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from serverproc import Keys, LullServer, bearer, now_ms
from webhook import Received, receiver


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[tuple[LullServer, Keys]]:
    with LullServer(tmp_path / "lull.duckdb") as srv:
        keys = srv.create_project("shop", sessions="on")
        srv.start()
        yield srv, keys


def create(srv: LullServer, keys: Keys, name: str, definition: dict[str, Any]) -> Any:
    got = srv.http.post("/api/v1/segments", json={"name": name, "definition": definition},
                        headers=bearer(keys.admin_key))  # fmt: skip
    return got


def event(mid: str, profile: str, name: str, **props: Any) -> dict[str, Any]:
    return {"message_id": mid, "profile_id": profile, "name": name, "ts": now_ms(),
            "properties": props}  # fmt: skip


def signed_by(secret: str, got: Received) -> bool:
    """The receiver's check, as docs/segments.md shows it."""
    parts = dict(p.split("=", 1) for p in got.headers["x-lull-signature"].split(","))
    mac = hmac.new(secret.encode(), parts["t"].encode() + b"." + got.body, hashlib.sha256)
    fresh = abs(time.time() - int(parts["t"])) < 300
    return fresh and hmac.compare_digest(mac.hexdigest(), parts["v1"])


def test_fires_on_matching_events_signed(shop: tuple[LullServer, Keys]) -> None:
    srv, keys = shop
    with receiver() as hook:
        made = create(srv, keys, "big-buy", {"event": "Purchase", "webhook": hook.url,
                      "where": [{"property": "amount", "op": ">", "value": 10}]})  # fmt: skip
        assert made.status_code == 201, made.text
        secret = made.json()["secret"]
        sent = srv.post_events(keys.web, [
            event("m1", "ann", "Purchase", amount=5),
            event("m2", "ann", "Purchase", amount=20),
            event("m3", "bob", "Song Played", amount=50),
            event("m4", "bob", "Purchase", amount="99"),  # text, not a number: no match
        ])  # fmt: skip
        assert sent.status_code == 200
        (got,) = hook.wait_for(1)
        time.sleep(1.5)  # nothing else comes
        assert len(hook.got) == 1
        body = got.json()
        assert body["segment"] == "big-buy" and body["event"]["message_id"] == "m2"
        assert body["event"]["properties"] == {"amount": 20} and body["event"]["name"] == "Purchase"
        assert body["profile"]["profile_id"] == "ann"
        assert got.headers["content-type"] == "application/json"
        assert signed_by(secret, got)
        assert not signed_by(secret + "x", got)
        tampered = Received(got.headers, got.body.replace(b"20", b"21"))
        assert not signed_by(secret, tampered)


def test_retries_after_the_receiver_fails_and_logs_each_attempt(
    shop: tuple[LullServer, Keys],
) -> None:
    srv, keys = shop
    with receiver() as hook:
        hook.failing = 2
        assert (
            create(srv, keys, "any-song", {"event": "Song Played", "webhook": hook.url}).status_code
            == 201
        )
        srv.post_events(keys.ios, [event("s1", "cat", "Song Played", genre="jazz")])
        (got,) = hook.wait_for(1)
        assert hook.refused == 2 and got.json()["event"]["message_id"] == "s1"
        deadline = time.monotonic() + 10
        while True:  # the log is written after the attempt
            log = srv.read(keys, "segments/any-song")["deliveries"]
            if len(log) == 3 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        attempts = [(d["attempt"], d["status"], d["outcome"]) for d in reversed(log)]
        assert attempts == [(1, 500, "retrying"), (2, 500, "retrying"), (3, 204, "delivered")]
        assert all(d["message_id"] == "s1" and d["profile_id"] == "cat" for d in log)


def test_gives_up_after_five_attempts(shop: tuple[LullServer, Keys]) -> None:
    srv, keys = shop
    with receiver() as hook:
        hook.failing = 100
        create(srv, keys, "doomed", {"event": "Song Played", "webhook": hook.url})
        srv.post_events(keys.ios, [event("d1", "dan", "Song Played")])
        deadline = time.monotonic() + 20
        while hook.refused < 5:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(1.0)
        assert hook.refused == 5
        log = srv.read(keys, "segments/doomed")["deliveries"]
        assert [d["outcome"] for d in reversed(log)] == ["retrying"] * 4 + ["failed"]


def test_first_time_only(shop: tuple[LullServer, Keys]) -> None:
    srv, keys = shop
    with receiver() as hook:
        jazz = [{"property": "genre", "op": "=", "value": "jazz"}]
        liked = {"event": "Song Liked", "first_time": True, "where": jazz, "webhook": hook.url}
        create(srv, keys, "first-like", liked)
        srv.post_events(keys.web, [event("l1", "eve", "Song Liked", genre="rock")])
        srv.post_events(keys.web, [event("l2", "eve", "Song Liked", genre="jazz"),
                                   event("l3", "eve", "Song Liked", genre="jazz")])  # fmt: skip
        srv.post_events(keys.web, [event("l4", "eve", "Song Liked", genre="jazz"),
                                   event("l5", "fay", "Song Liked", genre="jazz")])  # fmt: skip
        got = hook.wait_for(2)
        time.sleep(1.5)
        assert sorted(g.json()["event"]["message_id"] for g in hook.got) == ["l2", "l5"]
        assert len(got) == 2


def test_session_concluded_and_excluded_events_are_refused(shop: tuple[LullServer, Keys]) -> None:
    srv, keys = shop
    reasons = {
        "Session Concluded": "it is the system event lull raises when a session ends",
        "App Installed": "one of the project's excluded system events",
    }
    for name, why in reasons.items():
        refused = create(srv, keys, "x", {"event": name, "webhook": "http://127.0.0.1:9/h"})
        assert refused.status_code == 400
        assert f"event: {name!r} cannot be used in a live segment" in refused.json()["error"]
        assert why in refused.json()["error"]
    bad = create(srv, keys, "x", {"event": "A", "webhook": "ftp://127.0.0.1/h"})
    assert bad.status_code == 400 and bad.json()["error"].startswith("webhook: ")
    assert srv.read(keys, "segments") == []
    # a live segment has no profiles to count
    create(srv, keys, "live", {"event": "A", "webhook": "http://127.0.0.1:9/h"})
    counted = srv.http.get("/api/v1/segments/live/count", headers=bearer(keys.read_token))
    assert counted.status_code == 400 and "is a live segment" in counted.json()["error"]
