"""PostHog's capture API: the real posthog-python client, and the body forms posthog-js
sends (gzip as text/plain, base64 in a form, one event or a batch), against `lull serve`."""

from __future__ import annotations

import base64
import gzip
import json
import re
import threading
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import posthog
import pytest

from serverproc import Keys, LullServer, default_project, iso, now_ms

MIN = 60_000


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LullServer, Keys]]:
    with default_project(tmp_path_factory.mktemp("posthog")) as both:
        yield both


@pytest.fixture(scope="module")
def server(started: tuple[LullServer, Keys]) -> LullServer:
    return started[0]


@pytest.fixture(scope="module")
def keys(started: tuple[LullServer, Keys]) -> Keys:
    return started[1]


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
    before = server.sent(keys, "ph-py-1")
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
    user = server.sent(keys, "ph-py-user")
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
    got = {e["message_id"]: e for e in server.sent(keys, "ph-js")}
    assert {got[x["uuid"]]["name"] for x in (a, b, c, d)} == {
        "Page Viewed", "Screen Viewed", "Clicked", "Scrolled"
    }  # fmt: skip
    assert got[a["uuid"]]["properties"]["$current_url"] == "https://x.example/"


def test_a_batch_without_its_slash_is_posthogs_whatever_it_holds(
    server: LullServer, keys: Keys
) -> None:
    """`/batch` is Amplitude's path too: PostHog's batch is told by its shape, even when
    a property holds the word "events"."""
    e = _ph_event("Listed", "ph-noslash", keys.web, note='"events"', events=3)
    got = server.http.post("/batch", json={"api_key": keys.web, "batch": [e]})
    assert got.status_code == 200 and got.json()["status"] == 1, got.text
    [stored] = server.sent(keys, "ph-noslash")
    assert stored["message_id"] == e["uuid"] and stored["properties"]["events"] == 3


def test_a_resent_event_is_stored_once(server: LullServer, keys: Keys) -> None:
    e = _ph_event("Played", "ph-dup", keys.web)
    for _ in range(3):
        assert (
            server.http.post("/batch/", json={"api_key": keys.web, "batch": [e]}).status_code == 200
        )
    assert [x["message_id"] for x in server.sent(keys, "ph-dup")] == [e["uuid"]]


def test_mobile_sdks_with_the_web_key_are_their_platform(server: LullServer, keys: Keys) -> None:
    ios = _ph_event("Opened", "ph-mobile", keys.web, **{"$lib": "posthog-ios", "$os": "iOS"})
    android = _ph_event("Opened", "ph-mobile", keys.web, **{"$os": "Android"})
    server_side = _ph_event("Billed", "ph-mobile", keys.server, **{"$lib": "posthog-python"})
    for e in (ios, android):
        assert server.http.post("/e/", json=e).status_code == 200
    assert server.http.post("/e/", json=server_side).status_code == 200
    got = {e["message_id"]: e for e in server.sent(keys, "ph-mobile")}
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
    assert [e["message_id"] for e in server.sent(keys, "ph-mixed")] == [ok["uuid"]]
    garbage = server.http.post("/e/?compression=base64", data={"data": "%%%"})
    assert garbage.status_code == 400


def test_flags_let_the_sdk_go_on_without_features(server: LullServer, keys: Keys) -> None:
    for path in ("/flags/?v=2", "/decide/?v=3"):
        got = server.http.post(path, json={"token": keys.web, "distinct_id": "x"})
        assert got.status_code == 200
        assert got.json()["featureFlags"] == {} and got.json()["sessionRecording"] is False


def test_events_recorded_before_identify_stay_anonymous_whenever_they_arrive(
    server: LullServer, keys: Keys
) -> None:
    """posthog-js sends `$identify` at once, on its own, while the events captured before
    it wait for their batch. lull ties the anonymous id to the user from the identify
    event's own time on, so those events stay on the anonymous profile even when they
    arrive after it; `$create_alias` ties its alias the same way."""
    errors: list[Any] = []
    client = posthog.Posthog(
        keys.web, host=server.base, sync_mode=True, max_retries=0,
        on_error=lambda error, batch: errors.append(error),
    )  # fmt: skip
    now = now_ms()

    def capture(name: str, distinct: str, ago: int, **props: Any) -> None:
        client.capture(name, distinct_id=distinct, properties=props, timestamp=iso(now - ago))

    capture("$pageview", "ph-anon-2", 60_000)
    capture("$identify", "ph-user-2", 10_000, **{"$anon_distinct_id": "ph-anon-2"})
    capture("Song Played", "ph-anon-2", 20_000)  # the batch held back: recorded before
    capture("Song Liked", "ph-anon-2", 5_000)
    client.alias("ph-user-2", "ph-other-2", timestamp=iso(now - 8_000))  # ties ph-other-2
    capture("Shared", "ph-other-2", 9_000)
    capture("Bought", "ph-other-2", 1_000)
    client.shutdown()
    assert errors == []

    def names(profile: str) -> list[str]:
        return sorted(e["name"] for e in server.sent(keys, profile))

    assert names("ph-anon-2") == ["Page Viewed", "Song Played"]
    assert names("ph-other-2") == ["Shared"]
    assert names("ph-user-2") == ["Bought", "Identity Set", "Identity Set", "Song Liked"]


def test_remote_config_lets_posthog_js_go_on_without_features(
    server: LullServer, keys: Keys
) -> None:
    """posthog-js (unless `advanced_disable_flags`) loads `/array/TOKEN/config.js`, else
    `/array/TOKEN/config`, from its page's origin: both answer, readable cross-origin,
    with nothing switched on and no feature flags to ask for."""
    page = {"Origin": "https://shop.example"}
    got = server.http.get(f"/array/{keys.web}/config", headers=page)
    assert got.status_code == 200, got.text
    assert got.headers["access-control-allow-origin"] == "https://shop.example"
    config = got.json()
    assert config["token"] == keys.web and config["hasFeatureFlags"] is False
    assert config["sessionRecording"] is False and config["surveys"] is False
    assert config["autocapture_opt_out"] is True and "gzip-js" in config["supportedCompression"]
    assert "analytics" not in config  # events keep going to /e/
    script = server.http.get(f"/array/{keys.web}/config.js", headers=page)
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("application/javascript")
    assert script.headers["access-control-allow-origin"] == "https://shop.example"
    found = re.search(r"all\[(\"[^\"]*\")\] = \{ config: (\{.*\}), siteApps: \[\] \}", script.text)
    assert found is not None, script.text
    assert json.loads(found[1]) == keys.web and json.loads(found[2]) == config
    # whatever the path holds stays a string in the script
    hostile = 'x"];alert(1);<b>&\u2028'
    odd = server.http.get(f"/array/{quote(hostile)}/config.js")
    assert odd.status_code == 200
    literal = re.search(r"all\[(\"(?:[^\"\\]|\\.)*\")\]", odd.text)
    assert literal is not None and json.loads(literal[1]) == hostile
    assert "<" not in odd.text and 'x"]' not in odd.text
    assert server.http.get(f"/array/{keys.web}/other").status_code == 404
