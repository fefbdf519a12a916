"""Whatever any way in accepts, `lull export` writes and `lull import` reads back unchanged
(issue 12: one definition of what an event may hold, model.py).

Events with values at and past every limit (ids, names, times, property size and depth,
odd characters) are sent to a real `lull serve` through each ingestion path: the native
API, Segment, PostHog, Amplitude and CleverTap's upload. Then the store is exported, the
export imported into a fresh store, that exported again, and the two exports compared
event by event. CleverTap's web SDK, whose requests are LZ-compressed by the SDK itself,
is taken through its conversion function (`clevertap_web.to_event`) into a file that
`lull import` reads.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lull.errors import BadInput, TooLarge
from lull.ingest.clevertap_web import Hit
from lull.ingest.clevertap_web import to_event as clevertap_web_event
from lull.model import MAX_DEPTH, MAX_EPOCH_MS, MAX_EVENT, MAX_ID, MAX_NAME, format_time
from lullrun import assert_reimported_unchanged, exact_json, lull
from serverproc import Keys, LullServer, bearer, now_ms

EXAMPLES = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- values at and past the limits -----------------------------------------------------

odd = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"]) | st.sampled_from("\x00\u2028\ufeff")
)


def mostly(fine: st.SearchStrategy[Any], edge: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`fine` values three times in four, else `edge` ones: a message has several fields,
    and each path must see messages it takes as well as ones it refuses."""
    return st.one_of(fine, fine, fine, edge)


def around(limit: int) -> st.SearchStrategy[str]:
    """Texts of lengths about `limit` (either side of it), or the empty text."""
    sized = st.integers(limit - 2, limit + 2).flatmap(
        lambda n: st.sampled_from(["x", "é", "😀", "\x00"]).map(lambda c: c * n)
    )
    return sized | st.just("")


short = odd.filter(bool).map(lambda t: t[:40])
ids = mostly(short, around(MAX_ID))
names = mostly(short, around(MAX_NAME) | st.just("Session Concluded"))
epoch_ms = mostly(
    st.integers(now_ms() - 10**10, now_ms()),
    st.integers(-5, MAX_EPOCH_MS + 5)
    | st.sampled_from([-1, 0, 1, MAX_EPOCH_MS - 1, MAX_EPOCH_MS, MAX_EPOCH_MS + 1]),
)
iso = mostly(
    st.sampled_from(["2026-11-01T10:00:00.123456+05:30", "2025-01-01T00:00:00Z"]),
    st.sampled_from(
        [
            "0001-01-01T00:00:00+23:59",
            "1969-12-31T23:59:59Z",
            "1970-01-01T00:00:00Z",
            "1970-01-01T00:00:00+00:01",
            "1970-01-01T00:00:00-00:01",
            "9999-12-31T23:59:59.999Z",
            "9999-12-31T23:59:59.999-00:01",
            "2026-02-30T10:00:00Z",
        ]
    ),
)
leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    odd.map(lambda t: t[:30]),
)
json_values = st.recursive(
    leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(odd.map(lambda t: t[:8]), inner),
    max_leaves=10,
)


def nested(depth: int) -> dict[str, Any]:
    """An object `depth` levels deep (itself the first)."""
    value: Any = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return dict(value)


properties = mostly(
    st.dictionaries(odd.map(lambda t: t[:12]), json_values, max_size=5),
    st.integers(MAX_DEPTH - 6, MAX_DEPTH + 2).map(nested)
    | st.integers(MAX_EVENT - 400, MAX_EVENT + 50).map(lambda n: {"big": "z" * n}),
)


# -- the paths -------------------------------------------------------------------------


@st.composite
def native(draw: st.DrawFn) -> list[dict[str, Any]]:
    return [
        {
            "message_id": draw(ids),
            "profile_id": draw(ids),
            "name": draw(names),
            "ts": draw(epoch_ms | iso),
            "sent_at": draw(st.none() | epoch_ms | iso),
            "properties": draw(properties),
        }
        for _ in range(draw(st.integers(1, 3)))
    ]


@st.composite
def segment(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["track", "page", "identify", "alias"]))
    message = {
        "type": kind,
        "messageId": draw(ids),
        "userId": draw(ids | st.integers(-(2**64), 2**64)),
        "anonymousId": draw(ids),
        "event": draw(names),
        "timestamp": draw(iso | st.none()),
        "properties": draw(properties),
        "traits": draw(properties),
        "name": draw(st.none() | names),
    }
    return {"batch": [message]}


@st.composite
def posthog(draw: st.DrawFn) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event": draw(names | st.sampled_from(["$pageview", "$identify"])),
        "distinct_id": draw(ids),
        "uuid": draw(ids),
        "properties": {**draw(properties), "$anon_distinct_id": draw(ids)},
    }
    if draw(st.booleans()):
        event["timestamp"] = draw(iso)
    else:
        event["offset"] = draw(st.integers(-10, MAX_EPOCH_MS + 10**13))
    return {"batch": [event]}


@st.composite
def amplitude(draw: st.DrawFn) -> dict[str, Any]:
    event = {
        "event_type": draw(names),
        "user_id": draw(ids),
        "device_id": draw(ids),
        "insert_id": draw(ids),
        "time": draw(epoch_ms),
        "event_properties": draw(properties),
        "session_id": draw(st.integers(-1, 2**40)),
    }
    return {"events": [event]}


@st.composite
def clevertap(draw: st.DrawFn) -> dict[str, Any]:
    record = {
        "type": "event",
        "identity": draw(ids | st.integers(0, 2**64)),
        "ts": draw(st.integers(-1, MAX_EPOCH_MS // 1000 + 1)),
        "evtName": draw(names),
        "evtData": draw(properties),
    }
    return {"d": [record]}


PATHS = {
    "native": (native(), "/api/v1/events"),
    "segment": (segment(), "/v1/batch"),
    "posthog": (posthog(), "/batch/"),
    "amplitude": (amplitude(), "/2/httpapi"),
    "clevertap": (clevertap(), "/1/upload"),
}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LullServer, Keys]]:
    with LullServer(tmp_path_factory.mktemp("roundtrip") / "lull.duckdb") as server:
        keys = server.create_project("rt")  # sessions off: the events alone are compared
        server.start()
        yield server, keys


def send(server: LullServer, keys: Keys, path: str, body: Any) -> int:
    """POST the body (with the path's key); the status (never a 5xx)."""
    headers = bearer(keys.web)
    if path == "/1/upload":
        headers = {"X-CleverTap-Account-Id": keys.account_id, "X-CleverTap-Passcode": keys.passcode}
    elif isinstance(body, dict):
        body = {**body, "writeKey": keys.web, "api_key": keys.web}
    got = server.http.post(path, json=body, headers=headers)
    assert got.status_code < 500, (path, got.status_code, got.text[:500])
    return got.status_code


def sender(
    server: LullServer,
    keys: Keys,
    name: str,
    path: str,
    bodies: st.SearchStrategy[Any],
    statuses: Counter[tuple[str, int]],
) -> Any:
    """A hypothesis test that sends `bodies` to `path`, counting the answers by status."""

    @EXAMPLES
    @given(body=bodies)
    def send_one(body: Any) -> None:
        statuses[name, send(server, keys, path, body)] += 1

    return send_one


def test_what_every_path_accepts_is_exported_and_imported_unchanged(
    store: tuple[LullServer, Keys],
) -> None:
    server, keys = store
    statuses: Counter[tuple[str, int]] = Counter()

    for name, (bodies, path) in PATHS.items():
        sender(server, keys, name, path, bodies, statuses)()
    # each path took some of them, and refused some
    for name in PATHS:
        assert statuses[name, 200] > 0, (name, statuses)
        assert sum(n for (p, s), n in statuses.items() if p == name and s >= 400) > 0, name
    server.stop()
    first = assert_reimported_unchanged(server.db, "rt")
    assert {e["source"] for e in first} >= {"web", "api"}
    server.start()


# -- CleverTap's web SDK, through its conversion function --------------------------------


@st.composite
def hits(draw: st.DrawFn) -> Hit:
    push = draw(st.booleans())
    payload: dict[str, Any] = {"id": "acct", "g": draw(ids)}
    if push and draw(st.booleans()):
        payload |= {"type": "event", "evtName": draw(names), "evtData": draw(properties)}
    elif push:
        payload |= {"type": "profile", "profile": {**draw(properties), "Identity": draw(ids)}}
    else:
        payload |= {"cpg": draw(odd), "referrer": draw(json_values)}
    seconds = st.integers(-1, MAX_EPOCH_MS // 1000 + 1).map(str)
    return Hit("push" if push else "page", payload, i=draw(st.none() | seconds), rn="1")


def canonical(event: Any, received_at: int) -> dict[str, Any]:
    return {
        "message_id": event.message_id,
        "profile_id": event.profile_id,
        "name": event.name,
        "ts": min(event.ts, received_at),  # R5: what the live engine stores
        "source": event.source,
        "received_at": received_at,
        "properties": event.properties,
    }


@settings(EXAMPLES, max_examples=15)  # each runs `lull import` and `lull export` twice
@given(found=st.lists(hits(), min_size=1, max_size=4))
def test_what_clevertap_web_accepts_is_imported_and_exported_unchanged(
    tmp_path_factory: pytest.TempPathFactory, found: list[Hit]
) -> None:
    received = now_ms()
    records: list[dict[str, Any]] = []
    for hit in found:
        try:
            mapped = clevertap_web_event(hit, "g-" + str(len(records)), 1, lambda g, t: g, received)
        except (BadInput, TooLarge):
            continue
        if mapped.event is not None:
            records.append(canonical(mapped.event, received))
    folder = tmp_path_factory.mktemp("ctw")
    source = folder / "sent.ndjson"
    source.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    db = folder / "lull.duckdb"
    done = lull(db, "--project", "rt", "import", str(source))
    assert done.code == 0, done.err
    stored = {e["message_id"]: e for e in assert_reimported_unchanged(db, "rt")}
    assert len(stored) == len({r["message_id"] for r in records})
    for r in records:
        got = stored[r["message_id"]]
        assert (got["profile_id"], got["name"], got["source"]) == (
            r["profile_id"], r["name"], r["source"]
        )  # fmt: skip
        assert got["ts"] == format_time(r["ts"])
        assert got["properties"] == exact_json(json.dumps(r["properties"]))
