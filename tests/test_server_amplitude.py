"""Amplitude's HTTP V2 and Batch APIs: the real amplitude-analytics client, and the answers
Amplitude's SDKs read (`code`, `events_ingested`, bad events by field), against `lull serve`."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from amplitude import Amplitude, BaseEvent, Config, EventOptions, Identify  # type: ignore[import-untyped]

from serverproc import Keys, LullServer, default_project, now_ms

MIN = 60_000


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LullServer, Keys]]:
    with default_project(tmp_path_factory.mktemp("amplitude")) as both:
        yield both


@pytest.fixture(scope="module")
def server(started: tuple[LullServer, Keys]) -> LullServer:
    return started[0]


@pytest.fixture(scope="module")
def keys(started: tuple[LullServer, Keys]) -> Keys:
    return started[1]


class Answers:
    """What the client's callback saw: (event type, status code, message) per event."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, str | None]] = []
        self.lock = threading.Lock()

    def __call__(self, event: BaseEvent, code: int, message: str | None = None) -> None:
        with self.lock:
            self.seen.append((event.event_type, code, message))


@pytest.mark.parametrize(("use_batch", "path"), [(False, "/2/httpapi"), (True, "/batch")])
def test_the_python_client_sends_events_that_are_sessionized(
    server: LullServer, keys: Keys, use_batch: bool, path: str
) -> None:
    answers = Answers()
    device, user = f"amp-dev-{path}", f"amp-user-{path}"
    client = Amplitude(
        keys.web,
        Config(
            server_url=server.base + path,
            use_batch=use_batch,
            callback=answers,
            flush_queue_size=50,
            flush_max_retries=1,
        ),
    )
    start = now_ms() - 40 * MIN
    for i in range(4):  # a device's events, two sessions (a 21-minute gap)
        client.track(
            BaseEvent(
                "Song Played",
                device_id=device,
                time=start + i * MIN + (21 * MIN if i >= 2 else 0),
                event_properties={"n": i},
                session_id=start,
                insert_id=f"{path}-{i}",
            )
        )
    # signing in: an event with both ids ties the device to the user
    client.track(BaseEvent("Signed In", device_id=device, user_id=user, insert_id=f"{path}-in"))
    client.track(BaseEvent("Song Played", device_id=device, insert_id=f"{path}-after"))
    client.identify(Identify().set("plan", "gold"), EventOptions(user_id=user, device_id=device))
    client.flush()
    client.shutdown()
    assert answers.seen and {code for _, code, _ in answers.seen} == {200}, answers.seen
    assert len(answers.seen) == 7  # each event answered once: none retried
    before = server.sent(keys, device)
    assert sorted(e["message_id"] for e in before) == [f"{path}-{i}" for i in range(4)]
    first = next(e for e in before if e["message_id"] == f"{path}-0")
    assert first["properties"] == {"n": 0, "Amplitude Session ID": start}
    assert len({e["session_id"] for e in before}) == 2 and all(e["session_id"] for e in before)
    after = server.sent(keys, user)
    assert sorted(e["name"] for e in after) == ["Identity Set", "Signed In", "Song Played"]
    profile = server.profile(keys, user, lambda p: p["properties"].get("plan") == "gold")
    assert profile["properties"]["plan"] == "gold"


def _event(**fields: Any) -> dict[str, Any]:
    return {"event_type": "Played", "device_id": "amp-raw", "time": now_ms(), **fields}


def test_a_batch_with_a_bad_event_is_refused_whole(server: LullServer, keys: Keys) -> None:
    body = {
        "api_key": keys.web,
        "events": [
            _event(insert_id="raw-ok"),
            _event(time="yesterday", insert_id="raw-bad-time"),
            {"device_id": "amp-raw", "insert_id": "raw-no-type"},
        ],
    }
    got = server.http.post("/2/httpapi", json=body)
    assert got.status_code == 400
    answer = got.json()
    assert answer["code"] == 400
    assert answer["events_with_invalid_fields"] == {"time": [1]}
    assert answer["events_with_missing_fields"] == {"event_type": [2]}
    assert "event 1: field 'time' must be epoch milliseconds" in answer["error"]
    assert server.sent(keys, "amp-raw") == []  # nothing stored, as Amplitude does
    body["events"] = body["events"][:1]  # the SDK drops the bad ones and sends the rest
    again = server.http.post("/2/httpapi", json=body)
    assert again.status_code == 200
    assert again.json()["code"] == 200 and again.json()["events_ingested"] == 1
    assert [e["message_id"] for e in server.sent(keys, "amp-raw")] == ["raw-ok"]


def test_the_platform_picks_a_mobile_source(server: LullServer, keys: Keys) -> None:
    events = [
        _event(device_id="amp-mob", platform="iOS", insert_id="m-ios"),
        _event(device_id="amp-mob", platform="Android", insert_id="m-android"),
        _event(device_id="amp-mob", platform="Web", insert_id="m-web"),
        _event(device_id="amp-mob", os_name="android", insert_id="m-os"),
    ]
    got = server.http.post("/2/httpapi", json={"api_key": keys.web, "events": events})
    assert got.status_code == 200, got.text
    sources = {e["message_id"]: e["source"] for e in server.sent(keys, "amp-mob")}
    assert sources == {"m-ios": "ios", "m-android": "android", "m-web": "web", "m-os": "android"}
    # a server key's events are API events, whatever the platform says
    api = server.http.post(
        "/2/httpapi",
        json={"api_key": keys.server, "events": [_event(device_id="amp-api", platform="iOS")]},
    )
    assert api.status_code == 200
    [stored] = server.sent(keys, "amp-api")
    assert stored["source"] == "api" and stored["session_id"] is None
    assert stored["message_id"].startswith("amp-")  # no insert_id: one from its content


def test_a_wrong_key_is_answered_as_amplitude_does(server: LullServer, keys: Keys) -> None:
    got = server.http.post("/2/httpapi", json={"api_key": "nope", "events": [_event()]})
    assert got.status_code == 400 and got.json()["error"].startswith("Invalid API key")
    no_events = server.http.post("/2/httpapi", json={"api_key": keys.web})
    assert no_events.status_code == 400 and "'events'" in no_events.json()["error"]
    system = server.http.post(
        "/2/httpapi",
        json={"api_key": keys.web, "events": [_event(event_type="Session Concluded")]},
    )
    assert system.status_code == 400
    assert system.json()["events_with_invalid_fields"] == {"event_type": [0]}
