"""Garbage at every endpoint of `lull serve` (hypothesis): malformed bodies, wrong types,
huge numbers, deep nesting, bad gzip, bad or missing keys, odd content types. Never a 5xx,
and a refused request stores nothing."""

from __future__ import annotations

import base64
import gzip
import json
import string
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lullrun import SENT, assert_reimported_unchanged
from serverproc import Keys, LullServer, bearer, now_ms

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LullServer]:
    with LullServer(tmp_path_factory.mktemp("fuzz") / "lull.duckdb") as srv:
        srv.create_project("fuzz", sessions="on")
        srv.create_project("bystander", sessions="on")
        srv.create_project("untouched", sessions="on")
        srv.start()
        yield srv


@pytest.fixture(scope="module")
def keys(server: LullServer) -> Keys:
    return server.projects["fuzz"]


def stored(server: LullServer, keys: Keys) -> int:
    """Events the project holds (Session Concluded aside: the timer adds those)."""
    return sum(e["name"] != "Session Concluded" for e in server.events(keys))


COUNT: dict[str, int] = {}  # events stored, as of the last request


def send(server: LullServer, keys: Keys, request: httpx.Request) -> httpx.Response:
    """Send; never a 5xx; a refused request leaves the store as it was."""
    before = COUNT.get(keys.read_token)
    if before is None:
        before = COUNT[keys.read_token] = stored(server, keys)
    got = server.http.send(request)
    assert got.status_code < 500, (request.method, request.url, got.status_code, got.text)
    after = COUNT[keys.read_token] = stored(server, keys)
    if got.status_code >= 400:
        assert after == before, (request.url, got.status_code, got.text)
    return got


# -- values ---------------------------------------------------------------------------

ASCII = string.ascii_letters + string.digits + string.punctuation + " "
header_text = st.text(alphabet=ASCII, max_size=60)
leaf = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.sampled_from([2**63, -(2**63) - 1, 253_402_300_800_000, 10**400])
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(["", "2026-11-01T10:00:00Z", "2026-02-30T10:00:00Z", "Session Concluded"])
)
json_values = st.recursive(
    leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()  # NaN and Infinity come out as (invalid) tokens


def native_record() -> dict[str, Any]:
    return {
        "message_id": "m",
        "profile_id": "u",
        "name": "Song Played",
        "ts": now_ms() - 1000,
        "sent_at": now_ms(),
        "properties": {"a": 1},
    }


def segment_message() -> dict[str, Any]:
    return {
        "type": "track",
        "userId": "u",
        "anonymousId": "a",
        "messageId": "m",
        "event": "Tapped",
        "timestamp": "2026-11-01T10:00:00.000Z",
        "properties": {},
        "traits": {},
        "previousId": "p",
    }


def clevertap_record() -> dict[str, Any]:
    return {
        "type": "event",
        "identity": "u",
        "ts": now_ms() // 1000,
        "evtName": "Charged",
        "evtData": {},
        "profileData": {},
    }


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any]) -> Any:
    """A good record with one to three fields replaced by anything, or removed."""
    record = dict(base)
    for field in draw(st.lists(st.sampled_from(sorted(base)), min_size=1, max_size=3)):
        if draw(st.booleans()):
            record[field] = draw(json_values)
        else:
            record.pop(field, None)
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    return record


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


raw_bodies: st.SearchStrategy[bytes] = st.one_of(
    st.binary(max_size=300),
    json_values.map(dumps),
    st.integers(1, 5000).map(nested),
    st.binary(max_size=200).map(lambda b: b"\x1f\x8b" + b),  # not gzip, though it says so
    st.binary(max_size=200).map(gzip.compress),  # gzip of garbage
    json_values.map(lambda v: gzip.compress(dumps(v))[:-4]),  # cut short
    st.just(gzip.compress(b" " * 600_000)),  # small, but over 500 KB once unzipped
)


def envelope(kind: str, records: list[Any]) -> Any:
    if kind == "segment":
        return {"batch": records, "sentAt": "2026-11-01T10:00:00.000Z"}
    if kind == "clevertap":
        return {"d": records}
    return records


@st.composite
def bodies(draw: st.DrawFn, kind: str) -> bytes:
    if draw(st.booleans()):
        return draw(raw_bodies)
    base = {"native": native_record, "segment": segment_message, "clevertap": clevertap_record}
    records = draw(st.lists(mutated(base[kind]()), min_size=1, max_size=4))
    if kind == "native" and draw(st.booleans()):  # NDJSON, with a line or two of junk
        lines = [dumps(r) for r in records]
        lines.insert(draw(st.integers(0, len(lines))), draw(st.binary(max_size=20)))
        body = b"\n".join(lines)
    else:
        outer = envelope(kind, records)
        if kind != "native" and draw(st.booleans()):
            outer = draw(mutated(outer))
        body = dumps(outer)
    return gzip.compress(body) if draw(st.booleans()) else body


@st.composite
def extra_headers(draw: st.DrawFn) -> dict[str, str]:
    headers: dict[str, str] = {}
    content_type = draw(
        st.none()
        | st.sampled_from(
            ["application/json", "text/plain", "application/x-ndjson", "multipart/form-data"]
        )
        | header_text
    )
    if content_type is not None:
        headers["Content-Type"] = content_type
    encoding = draw(st.none() | st.sampled_from(["gzip", "GZIP", "deflate", "br"]) | header_text)
    if encoding is not None:
        headers["Content-Encoding"] = encoding
    return headers


@st.composite
def write_auth(draw: st.DrawFn, keys: Keys) -> dict[str, str]:
    """Mostly good keys (so the body gets looked at), sometimes bad ones."""
    good = draw(st.sampled_from([keys.web, keys.ios, keys.android, keys.server]))
    choice = draw(st.integers(0, 7))
    if choice <= 3:
        return bearer(good)
    if choice == 4:
        return {"Authorization": draw(header_text)}
    if choice == 5:
        raw = draw(st.binary(max_size=40))
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
    if choice == 6:
        return bearer(draw(st.sampled_from([keys.read_token, keys.passcode, good + "x"])))
    return {}


def request(
    server: LullServer, method: str, path: str, body: bytes, headers: dict[str, str]
) -> httpx.Request:
    clean = {k: v.strip() for k, v in headers.items()}  # what HTTP allows at all
    return server.http.build_request(method, path, content=body, headers=clean)


# -- the tests -----------------------------------------------------------------------


@SETTINGS
@given(data=st.data())
def test_native_endpoint(server: LullServer, keys: Keys, data: st.DataObject) -> None:
    body = data.draw(bodies("native"))
    headers = {**data.draw(extra_headers()), **data.draw(write_auth(keys))}
    send(server, keys, request(server, "POST", "/api/v1/events", body, headers))


@SETTINGS
@given(data=st.data())
def test_segment_endpoints(server: LullServer, keys: Keys, data: st.DataObject) -> None:
    path = data.draw(
        st.sampled_from(["/v1/batch", "/b", "/v1/track", "/v1/i", "/v1/alias", "/v1/page"])
        | st.text(alphabet=string.ascii_letters, min_size=1, max_size=10).map(lambda k: "/v1/" + k)
    )
    body = data.draw(bodies("segment"))
    if path not in ("/v1/batch", "/b") and data.draw(st.booleans()):
        body = dumps(data.draw(mutated({**segment_message(), "writeKey": keys.web})))
    headers = data.draw(extra_headers())
    auth = data.draw(write_auth(keys))
    if "Bearer" in auth.get("Authorization", "") and data.draw(st.booleans()):
        user = auth["Authorization"].split(" ", 1)[1]
        auth = {"Authorization": "Basic " + base64.b64encode(f"{user}:".encode()).decode()}
    send(server, keys, request(server, "POST", path, body, {**headers, **auth}))


@SETTINGS
@given(data=st.data())
def test_clevertap_upload(server: LullServer, keys: Keys, data: st.DataObject) -> None:
    bystander = server.projects["bystander"]
    account = data.draw(st.sampled_from([keys.account_id, bystander.account_id]) | header_text)
    passcode = data.draw(st.sampled_from([keys.passcode, bystander.passcode]) | header_text)
    headers = {
        **data.draw(extra_headers()),
        "X-CleverTap-Account-Id": account,
        "X-CleverTap-Passcode": passcode,
    }
    body = data.draw(bodies("clevertap"))
    got = send(server, keys, request(server, "POST", "/1/upload", body, headers))
    if (account, passcode) != (keys.account_id, keys.passcode):
        assert got.status_code in (401, 404) or (
            (account, passcode) == (bystander.account_id, bystander.passcode)
        )


read_params = st.dictionaries(
    st.sampled_from(["limit", "from", "to", "days", "until", "profile_id", "session_id", "name"]),
    st.text(max_size=25)
    | st.integers(min_value=-(10**30), max_value=10**30).map(str)
    | st.sampled_from(["²", "٣", "1" * 5000, "0", "0001-01-01", "9999-12-31", "1e3"]),
    max_size=4,
)


@SETTINGS
@given(data=st.data())
def test_read_endpoints(server: LullServer, keys: Keys, data: st.DataObject) -> None:
    what = data.draw(
        st.sampled_from(["events", "sessions", "board"])
        | st.text(max_size=30).map(lambda p: "profiles/" + quote(p, safe=""))
    )
    token = data.draw(
        st.sampled_from([bearer(keys.read_token)] * 4 + [bearer(keys.web), {}])
        | header_text.map(lambda t: {"Authorization": t.strip()})
    )
    params = data.draw(read_params)
    got = server.http.get(f"/api/v1/{what}", params=params, headers=token)
    assert got.status_code < 500, (what, params, got.text)
    if got.status_code == 200:
        assert isinstance(got.json(), list | dict)


@SETTINGS
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
    path=st.sampled_from(
        ["/healthz", "/openapi.json", "/api/v1/events", "/v1/batch", "/1/upload", "/api/v1/board"]
    )
    | st.text(alphabet=string.ascii_letters + "/._-%", max_size=30).map(lambda p: "/" + p),
    body=raw_bodies,
)
def test_any_method_any_path(
    server: LullServer, keys: Keys, method: str, path: str, body: bytes
) -> None:
    send(server, keys, request(server, method, path, body, bearer(keys.web)))


def test_still_healthy_after_the_fuzz(server: LullServer, keys: Keys) -> None:
    assert server.http.get("/healthz").status_code == 200
    t = now_ms()
    good = [{"message_id": "after-fuzz", "profile_id": "calm", "name": "Song Played", "ts": t}]
    assert server.post_events(keys.web, good).json()["accepted"] == 1
    assert len(server.events(keys, profile_id="calm")) == 1
    # Only CleverTap uploads with the bystander's own account and passcode reach it.
    assert {e["source"] for e in server.events(server.projects["bystander"])} <= {"api"}
    assert server.events(server.projects["untouched"]) == []


def test_what_the_fuzz_stored_is_exported_and_imported_unchanged(server: LullServer) -> None:
    """Whatever the garbage above got stored is exported and imported again as it was
    sent (its sessions aside: the fuzz project's settings made them)."""
    server.stop()
    try:
        assert assert_reimported_unchanged(server.db, "fuzz", SENT)
    finally:
        server.start()
