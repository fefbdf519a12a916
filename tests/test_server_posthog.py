"""PostHog's capture API: the real posthog-python client, and the body forms posthog-js
sends (gzip as text/plain, base64 in a form, one event or a batch), against `lull serve`."""

from __future__ import annotations

import base64
import gzip
import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import posthog
import pytest

from serverproc import Keys, LullServer, iso, now_ms

MIN = 60_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LullServer]:
    with LullServer(tmp_path_factory.mktemp("posthog") / "lull.duckdb") as srv:
        srv.start()  # project `default`, sessions on
        yield srv


@pytest.fixture(scope="module")
def keys(server: LullServer) -> Keys:
    assert server.default_keys is not None
    return server.default_keys


def _mine(server: LullServer, keys: Keys, profile: str) -> list[dict[str, Any]]:
    """The profile's events as sent (lull's own Session Concluded left out)."""
    return [e for e in server.events(keys, profile_id=profile) if e["name"] != "Session Concluded"]


def test_the_python_client_sends_events_that_are_sessionized(
    server: LullServer, keys: Keys
) -> None:
    errors: list[Any] = []
    lock = threading.Lock()

    def on_error(error: Exception, batch: list[Any]) -> None:
        with lock:
            errors.append((error, batch))

    client = posthog.Posthog(
        keys.web, host=server.base, gzip=True, flush_at=10, on_error=on_error, max_retries=0
    )
    start = now_ms() - 30 * MIN
    sent = []
    for i in range(6):  # two sessions: a 25-minute gap after the third event
        at = start + i * MIN + (25 * MIN if i >= 3 else 0)
        sent.append(
            client.capture(
                "Song Played",
                distinct_id="ph-py-1",
                properties={"n": i, "$session_id": "their-session"},
                timestamp=iso(at),
            )
        )
    client.capture(
        "$identify",
        distinct_id="ph-py-user",
        properties={"$anon_distinct_id": "ph-py-1", "$set": {"plan": "gold"}},
    )
    client.capture("Song Played", distinct_id="ph-py-1", properties={"after": True})
    client.flush()
    client.shutdown()
    assert errors == []
    before = _mine(server, keys, "ph-py-1")
    concluded = [
        e for e in server.events(keys, profile_id="ph-py-1") if e["name"] == "Session Concluded"
    ]
    assert [c["properties"]["Session Length"] for c in concluded] == [120]  # the first one
    assert sorted(e["message_id"] for e in before) == sorted(str(s) for s in sent)
    assert all(e["name"] == "Song Played" and e["source"] == "web" for e in before)
    assert before[0]["properties"]["$session_id"] == "their-session"  # kept, not lull's
    assert "token" not in before[0]["properties"]
    assert len({e["session_id"] for e in before}) == 2 and all(e["session_id"] for e in before)
    # after $identify, the anonymous id's events go to the user
    user = _mine(server, keys, "ph-py-user")
    assert sorted(e["name"] for e in user) == ["Identity Set", "Song Played"]
    profile = server.profile(keys, "ph-py-user", lambda p: p["properties"].get("plan") == "gold")
    assert profile["properties"]["plan"] == "gold"


def _ph_event(name: str, distinct: str, key: str, **extra: Any) -> dict[str, Any]:
    return {
        "event": name,
        "uuid": str(uuid.uuid4()),
        "timestamp": iso(now_ms() - 1000),
        "properties": {"token": key, "distinct_id": distinct, "$lib": "web", **extra},
    }


def test_posthog_js_body_forms(server: LullServer, keys: Keys) -> None:
    a = _ph_event("$pageview", "ph-js", keys.web, **{"$current_url": "https://x.example/"})
    b = _ph_event("$screen", "ph-js", keys.web)
    c = _ph_event("Clicked", "ph-js", keys.web)
    d = _ph_event("Scrolled", "ph-js", keys.web)
    body = {"api_key": keys.web, "batch": [a], "sent_at": iso(now_ms())}
    # gzip sent as text/plain with no Content-Encoding (posthog-js), and compression=gzip-js
    gz = server.http.post(
        "/e/?compression=gzip-js&ver=1.449.2",
        content=gzip.compress(json.dumps(body).encode()),
        headers={"Content-Type": "text/plain"},
    )
    assert gz.status_code == 200 and gz.json()["status"] == 1, gz.text
    # base64 in a form field (posthog-js's beacon fallback)
    b64 = base64.b64encode(json.dumps([b]).encode()).decode()
    form = server.http.post("/i/v0/e/?compression=base64", data={"data": b64})
    assert form.status_code == 200, form.text
    # one event, plain JSON, to /capture/ with the key at the top
    single = server.http.post("/capture/", json={**c, "api_key": keys.web})
    assert single.status_code == 200, single.text
    # an array of events, the key in their properties
    plain = server.http.post("/e/", json=[d])
    assert plain.status_code == 200, plain.text
    got = {e["message_id"]: e for e in _mine(server, keys, "ph-js")}
    assert {got[x["uuid"]]["name"] for x in (a, b, c, d)} == {
        "Page Viewed", "Screen Viewed", "Clicked", "Scrolled"
    }  # fmt: skip
    assert got[a["uuid"]]["properties"]["$current_url"] == "https://x.example/"


def test_a_resent_event_is_stored_once(server: LullServer, keys: Keys) -> None:
    e = _ph_event("Played", "ph-dup", keys.web)
    for _ in range(3):
        assert (
            server.http.post("/batch/", json={"api_key": keys.web, "batch": [e]}).status_code == 200
        )
    assert [x["message_id"] for x in _mine(server, keys, "ph-dup")] == [e["uuid"]]


def test_mobile_sdks_with_the_web_key_are_their_platform(server: LullServer, keys: Keys) -> None:
    ios = _ph_event("Opened", "ph-mobile", keys.web, **{"$lib": "posthog-ios", "$os": "iOS"})
    android = _ph_event("Opened", "ph-mobile", keys.web, **{"$os": "Android"})
    server_side = _ph_event("Billed", "ph-mobile", keys.server, **{"$lib": "posthog-python"})
    for e in (ios, android):
        assert server.http.post("/e/", json=e).status_code == 200
    assert server.http.post("/e/", json=server_side).status_code == 200
    got = {e["message_id"]: e for e in _mine(server, keys, "ph-mobile")}
    assert got[ios["uuid"]]["source"] == "ios"
    assert got[android["uuid"]]["source"] == "android"
    assert got[server_side["uuid"]]["source"] == "api"
    assert got[server_side["uuid"]]["session_id"] is None  # R1: API events have none


def test_bad_input_is_named(server: LullServer, keys: Keys) -> None:
    wrong = server.http.post("/e/", json=_ph_event("X", "p", "not-a-key"))
    assert wrong.status_code == 401
    system = server.http.post("/e/", json=_ph_event("Session Concluded", "p", keys.web))
    assert system.status_code == 400
    assert "'Session Concluded' is a system event" in system.text
    nobody = _ph_event("X", "p", keys.web)
    del nobody["properties"]["distinct_id"]
    missing = server.http.post("/e/", json=nobody)
    assert missing.status_code == 400 and "field 'distinct_id' is missing" in missing.text
    ok = _ph_event("Fine", "ph-mixed", keys.web)
    mixed = server.http.post("/batch/", json={"api_key": keys.web, "batch": [ok, {"event": 5}]})
    assert mixed.status_code == 200
    assert mixed.json()["rejected"][0]["index"] == 1
    assert [e["message_id"] for e in _mine(server, keys, "ph-mixed")] == [ok["uuid"]]
    garbage = server.http.post("/e/?compression=base64", data={"data": "%%%"})
    assert garbage.status_code == 400


def test_flags_let_the_sdk_go_on_without_features(server: LullServer, keys: Keys) -> None:
    for path in ("/flags/?v=2", "/decide/?v=3"):
        got = server.http.post(path, json={"token": keys.web, "distinct_id": "x"})
        assert got.status_code == 200
        assert got.json()["featureFlags"] == {} and got.json()["sessionRecording"] is False
