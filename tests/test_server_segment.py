"""The real Segment client (analytics-python) against `lull serve`: its calls come out as
events, sessionized by R2 and read back through the read API."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
import segment.analytics as analytics  # type: ignore[import-untyped]

from lull.model import parse_time
from serverproc import MIN, Keys, LullServer, now_ms

ALLOWED_SKEW_MS = 2_000  # sentAt correction (R5): the client's and the server's clocks


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LullServer]:
    """A fresh store: the server makes project `default` (sessions on, 20 min)."""
    with LullServer(tmp_path_factory.mktemp("segment") / "lull.duckdb") as srv:
        srv.start()
        yield srv


@pytest.fixture(scope="module")
def keys(server: LullServer) -> Keys:
    assert server.default_keys is not None, "the server printed no keys for `default`"
    return server.default_keys


@pytest.fixture
def sync_client(server: LullServer, keys: Keys) -> Iterator[None]:
    """The module-level API, one blocking request per call."""
    analytics.write_key = keys.web
    analytics.host = server.base
    analytics.sync_mode = True
    analytics.default_client = None
    yield
    analytics.default_client = None


class Errors:
    def __init__(self) -> None:
        self.seen: list[Any] = []
        self.lock = threading.Lock()

    def __call__(self, error: Exception, batch: list[Any]) -> None:
        with self.lock:
            self.seen.append((error, batch))


def batching_client(server: LullServer, key: str, messages: int, errors: Errors) -> Any:
    """The client as apps use it (a queue, a consumer thread, gzip), sending exactly one
    batch of `messages` messages."""
    return analytics.Client(
        key,
        host=server.base,
        gzip=True,
        upload_size=messages,
        upload_interval=1.0,  # one window: the messages are queued at once
        on_error=errors,
        max_retries=0,
    )


def at(ms: int) -> datetime:
    """Epoch ms -> an aware datetime, exactly (no float rounding)."""
    return datetime.fromtimestamp(ms // 1000, UTC) + timedelta(milliseconds=ms % 1000)


def ms_of(iso: str) -> int:
    return parse_time(iso, "time")


def by_name(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        out.setdefault(e["name"], []).append(e)
    return out


def wait_for(check: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def close_to(iso: str, ms: int) -> bool:
    return 0 <= ms_of(iso) - ms <= ALLOWED_SKEW_MS


def test_track_page_identify_one_request_each(
    server: LullServer, keys: Keys, sync_client: None
) -> None:
    now = now_ms()
    a, b, c, old = now - 9 * MIN, now - 4 * MIN, now - 3 * MIN, now - 39 * MIN
    analytics.track("u-sync", "Song Played", {"genre": "jazz"}, timestamp=at(a))
    analytics.page("u-sync", "Docs", "Pricing", {"path": "/pricing"}, timestamp=at(b))
    analytics.identify("u-sync", {"plan": "pro"}, timestamp=at(c))
    # 30 min before the first, arriving last: a session of its own, over at once.
    analytics.track("u-sync", "Song Played", timestamp=at(old))

    events = by_name(server.events(keys, profile_id="u-sync"))
    played = sorted(events["Song Played"], key=lambda e: e["ts"])
    (page,) = events["Page Viewed"]
    (identity,) = events["Identity Set"]
    assert close_to(played[1]["ts"], a) and close_to(page["ts"], b)
    assert close_to(played[0]["ts"], old) and close_to(identity["ts"], c)
    assert page["properties"] == {"name": "Pricing", "path": "/pricing"}
    assert played[1]["properties"] == {"genre": "jazz"}
    assert identity["properties"] == {"plan": "pro"}
    assert {e["source"] for es in events.values() for e in es} == {"web"}
    # R2: 5 min apart -> one session; 30 min apart -> another; identify: excluded (R1).
    assert played[1]["session_id"] is not None
    assert page["session_id"] == played[1]["session_id"]
    assert played[0]["session_id"] not in (None, page["session_id"])
    assert identity["session_id"] is None
    assert not any(e["late"] for es in events.values() for e in es)

    sessions = {s["session_id"]: s for s in server.sessions(keys, profile_id="u-sync")}
    assert len(sessions) == 2
    current = sessions[page["session_id"]]
    assert current["events"] == 2 and not current["concluded"]
    assert current["length_s"] in (299, 300)  # each request's own clock-skew correction
    alone = sessions[played[0]["session_id"]]
    assert alone["events"] == 1 and alone["concluded"] and alone["length_s"] == 0
    (concluded,) = events["Session Concluded"]
    assert concluded["session_id"] == alone["session_id"]
    assert concluded["properties"] == {"Session Length": 0, "Session ID": alone["session_id"]}
    assert concluded["ts"] == played[0]["ts"]

    server.profile(keys, "u-sync", lambda p: bool(p["latest_session_id"] == current["session_id"]))


def test_one_batch_from_the_batching_client(server: LullServer, keys: Keys) -> None:
    t0 = now_ms() - 120 * MIN
    errors = Errors()
    client = batching_client(server, keys.ios, 5, errors)
    client.track("u-batch", "Song Played", timestamp=at(t0), message_id="b-1")
    client.screen("u-batch", name="Player", timestamp=at(t0 + 5 * MIN), message_id="b-2")
    client.track("u-batch", "Song Played", timestamp=at(t0 + 35 * MIN), message_id="b-3")
    client.identify("u-batch", {"plan": "free"}, timestamp=at(t0 + 36 * MIN), message_id="b-4")
    client.track("u-batch", "Song Skipped", timestamp=at(t0 + 35 * MIN + 30_000))
    client.flush()
    client.join()
    assert errors.seen == []

    def concluded() -> list[dict[str, Any]]:
        return server.events(keys, profile_id="u-batch", name="Session Concluded")

    # Both sessions are long over: the first by the batch itself, the second by the timer.
    assert wait_for(lambda: len(concluded()) == 2)
    events = by_name(server.events(keys, profile_id="u-batch"))
    ids = {e["message_id"]: e for es in events.values() for e in es}
    assert ids["b-1"]["session_id"] == ids["b-2"]["session_id"] is not None
    assert ids["b-3"]["session_id"] not in (None, ids["b-1"]["session_id"])
    (skipped,) = events["Song Skipped"]
    assert skipped["session_id"] == ids["b-3"]["session_id"]
    assert ids["b-2"]["name"] == "Screen Viewed" and ids["b-4"]["name"] == "Identity Set"
    assert ids["b-4"]["session_id"] is None
    assert {e["source"] for e in ids.values() if e["name"] != "Session Concluded"} == {"ios"}
    length = {e["session_id"]: e["properties"]["Session Length"] for e in concluded()}
    assert length == {ids["b-1"]["session_id"]: 300, ids["b-3"]["session_id"]: 30}
    first = next(e for e in concluded() if e["session_id"] == ids["b-1"]["session_id"])
    assert first["ts"] == ids["b-2"]["ts"]  # R4: the time of its last event


def test_anonymous_events_after_identify_go_to_the_user(
    server: LullServer, keys: Keys, sync_client: None
) -> None:
    """identify ties the anonymous id to the user from the identify call's own time on:
    the device's events timed after it go to the user, those timed before it stay on the
    anonymous profile, in whatever order they arrive (a client may send an identify call
    before a batch of events it recorded earlier). It holds across a restart."""
    now = now_ms()
    analytics.track(anonymous_id="anon-1", event="Home Viewed", timestamp=at(now - 60_000))
    analytics.identify(
        "u-anon", {"email": "a@example.com"}, anonymous_id="anon-1", timestamp=at(now - 10_000)
    )
    analytics.track(anonymous_id="anon-1", event="Added to Cart", timestamp=at(now - 1_000))
    # sent after the identify call, recorded before it: the device's, not the user's
    analytics.track(anonymous_id="anon-1", event="Searched", timestamp=at(now - 20_000))
    analytics.track(anonymous_id="anon-1", event="Tied At Once", timestamp=at(now - 10_000))
    # the identify call again, later (analytics.js repeats it): the tie keeps its time
    analytics.identify("u-anon", anonymous_id="anon-1", timestamp=at(now - 5_000))
    analytics.track(anonymous_id="anon-1", event="Wishlisted", timestamp=at(now - 7_000))

    def names(profile: str) -> list[str]:
        return sorted(e["name"] for e in server.events(keys, profile_id=profile))

    assert names("anon-1") == ["Home Viewed", "Searched"]  # before sign-in: the device's
    after = by_name(server.events(keys, profile_id="u-anon"))
    assert sorted(after) == ["Added to Cart", "Identity Set", "Tied At Once", "Wishlisted"]
    assert len(after["Identity Set"]) == 2
    assert after["Added to Cart"][0]["session_id"] is not None

    server.restart()  # the tie and its time come back from the store
    analytics.default_client = None
    analytics.track(anonymous_id="anon-1", event="Late", timestamp=at(now - 30_000))
    analytics.track(anonymous_id="anon-1", event="Paid", timestamp=at(now - 500))
    assert names("anon-1") == ["Home Viewed", "Late", "Searched"]
    assert "Paid" in names("u-anon") and "Late" not in names("u-anon")


def test_anonymous_identify_and_event_in_one_batch(server: LullServer, keys: Keys) -> None:
    now = now_ms()
    errors = Errors()
    client = batching_client(server, keys.android, 4, errors)
    client.track(anonymous_id="anon-2", event="Home Viewed", timestamp=at(now - 60_000))
    client.identify("u-anon-2", anonymous_id="anon-2", timestamp=at(now - 50_000))
    client.track(anonymous_id="anon-2", event="Added to Cart", timestamp=at(now - 40_000))
    client.alias("anon-3", "u-anon-2", timestamp=at(now - 30_000))
    client.flush()
    client.join()
    assert errors.seen == []
    assert [e["name"] for e in server.events(keys, profile_id="anon-2")] == ["Home Viewed"]
    names = sorted(e["name"] for e in server.events(keys, profile_id="u-anon-2"))
    assert names == ["Added to Cart", "Identity Set", "Identity Set"]

    # The alias ties anon-3 to the user too.
    analytics.write_key, analytics.host, analytics.sync_mode = keys.android, server.base, True
    analytics.default_client = None
    try:
        analytics.track(anonymous_id="anon-3", event="Checkout", timestamp=at(now - 20_000))
    finally:
        analytics.default_client = None
    assert [e["name"] for e in server.events(keys, profile_id="u-anon-2", name="Checkout")] == [
        "Checkout"
    ]
    assert server.events(keys, profile_id="anon-3") == []


def test_a_wrong_write_key_is_refused(server: LullServer, keys: Keys) -> None:
    client = analytics.Client("not-a-key", host=server.base, sync_mode=True)
    with pytest.raises(analytics.request.APIError) as refused:
        client.track("u-wrong", "Song Played")
    assert refused.value.status == 401
    # A read token is no write key either.
    client = analytics.Client(keys.read_token, host=server.base, sync_mode=True)
    with pytest.raises(analytics.request.APIError):
        client.track("u-wrong", "Song Played")
    assert server.events(keys, profile_id="u-wrong") == []


def test_a_wrong_basic_key_is_a_401_even_with_a_bad_body(server: LullServer) -> None:
    got = server.http.post("/v1/batch", content=b"{not json", auth=("not-a-key", ""))
    assert got.status_code == 401


def test_segment_system_event_name_is_refused(server: LullServer, keys: Keys) -> None:
    got = server.http.post(
        "/v1/track",
        json={
            "writeKey": keys.web,
            "userId": "u-sys",
            "event": "Session Concluded",
            "messageId": "sys-1",
        },
    )
    assert got.status_code == 400
    assert "system event" in got.json()["rejected"][0]["error"]
    assert server.events(keys, profile_id="u-sys") == []


def test_short_paths_and_basic_auth(server: LullServer, keys: Keys) -> None:
    now = now_ms()
    auth = (keys.web, "")
    for path, body in [
        ("/v1/t", {"userId": "u-short", "event": "Tapped", "messageId": "s-1"}),
        ("/v1/p", {"userId": "u-short", "name": "Home", "messageId": "s-2"}),
        ("/v1/s", {"userId": "u-short", "name": "Main", "messageId": "s-3"}),
        ("/v1/g", {"userId": "u-short", "groupId": "g-1", "messageId": "s-4"}),
        ("/v1/track", {"userId": "u-short", "event": "Tapped", "messageId": "s-5"}),
    ]:
        got = server.http.post(path, json={**body, "timestamp": now - 1000}, auth=auth)
        assert got.status_code == 200, got.text
    names = sorted(e["name"] for e in server.events(keys, profile_id="u-short"))
    assert names == ["Identity Set", "Page Viewed", "Screen Viewed", "Tapped", "Tapped"]
    ids = {e["session_id"] for e in server.events(keys, profile_id="u-short")}
    assert None in ids and len(ids) == 2  # one session; group -> Identity Set: none


def test_default_keys_printed_and_usable(server: LullServer, keys: Keys) -> None:
    # `keys` came from the server's stdout, a file here, read while the server runs: they
    # must be flushed at once (they are shown only once).
    assert keys.name == "default"
    got = server.http.get("/api/v1/sessions", headers={"Authorization": f"Bearer {keys.web}"})
    assert got.status_code == 401  # a write key cannot read


def test_identify_traits_become_profile_properties(server: LullServer, keys: Keys) -> None:
    body = {
        "writeKey": keys.web,
        "batch": [
            {"type": "identify", "userId": "traits-user", "messageId": "tr-1",
             "traits": {"plan": "family", "country": "FR"}},
        ],
    }  # fmt: skip
    assert server.http.post("/v1/batch", json=body).status_code == 200
    profile = server.profile(keys, "traits-user", lambda p: bool(p["properties"]))
    assert profile["properties"] == {"plan": "family", "country": "FR"}


def test_a_link_stored_before_links_had_times_holds_since_always(tmp_path: Path) -> None:
    db = tmp_path / "old.duckdb"
    with LullServer(db) as old:
        keys = old.create_project("old", sessions="on")
        con = duckdb.connect(str(db))  # as lull left it before links had a time: schema 2
        con.execute("ALTER TABLE aliases DROP COLUMN since")
        con.execute("UPDATE lull_meta SET value = '2' WHERE key = 'schema_version'")
        con.execute(
            "INSERT INTO aliases SELECT id, 'anon-old', 'u-old' FROM projects WHERE name = 'old'"
        )
        con.close()
        old.start()  # migrates
        for mid, anonymous in (("old-1", "anon-old"), ("old-2", "anon-new")):
            sent = old.http.post(
                "/v1/track",
                json={"writeKey": keys.web, "anonymousId": anonymous, "event": "Played",
                      "messageId": mid, "timestamp": at(now_ms() - 24 * 60 * MIN).isoformat()},
            )  # fmt: skip
            assert sent.status_code == 200, sent.text
        for profile, mid in (("u-old", "old-1"), ("anon-new", "old-2")):
            events = old.events(keys, profile_id=profile, name="Played")
            assert [e["message_id"] for e in events] == [mid]
