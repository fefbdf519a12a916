"""CleverTap's upload API (`POST /1/upload`) against `lull serve`: server-pushed events,
stored and readable, never in a session (R1: source `api`)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from serverproc import Keys, LullServer, iso, now_ms


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LullServer]:
    with LullServer(tmp_path_factory.mktemp("clevertap") / "lull.duckdb") as srv:
        srv.create_project("ct", sessions="on")
        srv.create_project("other", sessions="on")
        srv.start()
        yield srv


@pytest.fixture(scope="module")
def ct(server: LullServer) -> Keys:
    return server.projects["ct"]


def headers(keys: Keys, passcode: str | None = None) -> dict[str, str]:
    return {
        "X-CleverTap-Account-Id": keys.account_id,
        "X-CleverTap-Passcode": keys.passcode if passcode is None else passcode,
    }


def upload(
    server: LullServer, keys: Keys, records: Any, passcode: str | None = None
) -> httpx.Response:
    return server.http.post("/1/upload", json={"d": records}, headers=headers(keys, passcode))


def event(identity: str | int, ts_s: int, name: str, **data: Any) -> dict[str, Any]:
    return {"type": "event", "identity": identity, "ts": ts_s, "evtName": name, "evtData": data}


def test_processed_and_unprocessed_records(server: LullServer, ct: Keys) -> None:
    t = now_ms() // 1000 - 600
    records: list[Any] = [
        event("ct-1", t, "Charged", amount=12.5, currency="EUR"),  # 0
        event("ct-1", t + 60, "Product Viewed", sku="A-1"),  # 1
        {"type": "profile", "identity": "ct-1", "ts": t, "profileData": {"plan": "gold"}},  # 2
        event("ct-1", t + 120, "Session Concluded"),  # 3: a system event
        {"type": "event", "ts": t, "evtName": "No Identity"},  # 4
        event("ct-1", t * 1000, "Milliseconds"),  # 5: ts in ms, not seconds
        event("ct-1", t, ""),  # 6
        {"type": "other", "identity": "ct-1", "ts": t},  # 7
        "not a record",  # 8
        {**event("ct-1", t, "Bad Data"), "evtData": [1, 2]},  # 9
        event(42, t + 180, "Numeric Identity"),  # 10
    ]
    got = upload(server, ct, records)
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["status"] == "success" and body["processed"] == 4
    refused = {u["index"]: u for u in body["unprocessed"]}
    assert sorted(refused) == [3, 4, 5, 6, 7, 8, 9]
    for i, u in refused.items():
        assert u["status"] == "fail" and u["code"] == 400 and u["error"]
        assert u["record"] == records[i]
    assert "system event" in refused[3]["error"]
    assert "identity" in refused[4]["error"]
    assert "ts" in refused[5]["error"]
    assert "evtName" in refused[6]["error"]
    assert "type" in refused[7]["error"]
    assert "evtData" in refused[9]["error"]

    stored = server.events(ct, profile_id="ct-1")
    assert sorted(e["name"] for e in stored) == ["Charged", "Product Viewed"]
    charged = next(e for e in stored if e["name"] == "Charged")
    assert charged["ts"] == iso(t * 1000)
    assert charged["properties"] == {"amount": 12.5, "currency": "EUR"}
    assert charged["source"] == "api"
    (numeric,) = server.events(ct, profile_id="42")
    assert numeric["name"] == "Numeric Identity"


def test_no_session_on_any_clevertap_event(server: LullServer, ct: Keys) -> None:
    t = now_ms() // 1000
    records = [event("ct-2", t - 30 * i, "App Launched", n=i) for i in range(20)]
    assert upload(server, ct, records).json()["processed"] == 20
    stored = server.events(ct, profile_id="ct-2")
    assert len(stored) == 20
    assert all(e["session_id"] is None and not e["late"] for e in stored)
    assert server.sessions(ct, profile_id="ct-2") == []
    # The same profile's SDK events are sessionized; the API events still are not.
    sdk = [{"message_id": "ct-2-sdk", "profile_id": "ct-2", "name": "Tap", "ts": t * 1000}]
    assert server.post_events(ct.android, sdk).status_code == 200
    sessions = server.sessions(ct, profile_id="ct-2")
    assert len(sessions) == 1 and sessions[0]["events"] == 1


def test_resending_an_upload_stores_nothing_twice(server: LullServer, ct: Keys) -> None:
    t = now_ms() // 1000 - 3600
    records = [event("ct-3", t + i, "Song Played", track=i) for i in range(50)]
    records.append({"type": "profile", "identity": "ct-3", "ts": t, "profileData": {}})
    for _ in range(3):
        got = upload(server, ct, records)
        assert got.status_code == 200 and got.json()["processed"] == 51
    assert len(server.events(ct, profile_id="ct-3")) == 50
    # The same records inside a larger upload: only the new ones are added.
    more = [*records, event("ct-3", t + 100, "Song Played", track=100)]
    assert upload(server, ct, more).status_code == 200
    assert len(server.events(ct, profile_id="ct-3")) == 51


def test_wrong_credentials(server: LullServer, ct: Keys) -> None:
    other = server.projects["other"]
    records = [event("ct-auth", now_ms() // 1000, "Charged")]
    assert upload(server, ct, records, passcode="wrong").status_code == 401
    assert upload(server, ct, records, passcode="").status_code == 401
    # Another project's passcode with this account id, and keys that are not passcodes.
    for passcode in (other.passcode, ct.web, ct.server, ct.read_token):
        got = upload(server, ct, records, passcode=passcode)
        assert got.status_code == 401, passcode
        assert "error" in got.json()
    wrong_account = {**headers(ct), "X-CleverTap-Account-Id": other.account_id}
    got = server.http.post("/1/upload", json={"d": records}, headers=wrong_account)
    assert got.status_code == 401
    got = server.http.post("/1/upload", json={"d": records})
    assert got.status_code == 401
    assert server.events(ct, profile_id="ct-auth") == []
    assert server.events(other, profile_id="ct-auth") == []


def test_over_1000_records_refused_whole(server: LullServer, ct: Keys) -> None:
    t = now_ms() // 1000
    records = [event("ct-big", t - i, "Ping") for i in range(1001)]
    got = upload(server, ct, records)
    assert got.status_code == 400
    assert "1000" in got.json()["error"]
    assert server.events(ct, profile_id="ct-big") == []
    got = upload(server, ct, records[:1000])
    assert got.status_code == 200 and got.json()["processed"] == 1000
    assert len(server.events(ct, profile_id="ct-big")) == 1000


def test_all_records_bad_is_a_failure(server: LullServer, ct: Keys) -> None:
    got = upload(server, ct, [{"type": "event"}, 7, None])
    assert got.status_code == 400
    body = got.json()
    assert body["status"] == "fail" and body["processed"] == 0
    assert [u["index"] for u in body["unprocessed"]] == [0, 1, 2]


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"[]", b'{"d": {}}', b'{"e": []}', b'"d"', b"\x1f\x8b\x08garbage"],
)
def test_malformed_bodies(server: LullServer, ct: Keys, body: bytes) -> None:
    got = server.http.post("/1/upload", content=body, headers=headers(ct))
    assert got.status_code == 400, got.text
    assert got.json()["error"]


def test_gzip_upload(server: LullServer, ct: Keys) -> None:
    t = now_ms() // 1000
    payload = json.dumps({"d": [event("ct-gz", t, "Zipped")]}).encode()
    got = server.http.post(
        "/1/upload",
        content=gzip.compress(payload),
        headers={**headers(ct), "Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert got.status_code == 200, got.text
    assert [e["name"] for e in server.events(ct, profile_id="ct-gz")] == ["Zipped"]


def test_profile_records_set_profile_properties(server: LullServer, ct: Keys) -> None:
    t = now_ms() // 1000 - 60
    first = {"type": "profile", "identity": "ct-prof", "ts": t, "profileData": {"plan": "gold"}}
    more = {"type": "profile", "identity": "ct-prof", "ts": t, "profileData": {"city": "Lyon"}}
    assert upload(server, ct, [first]).json()["processed"] == 1
    assert upload(server, ct, [more]).json()["processed"] == 1
    profile = server.profile(ct, "ct-prof", lambda p: len(p["properties"]) == 2)
    assert profile["properties"] == {"plan": "gold", "city": "Lyon"}
