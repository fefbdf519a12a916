"""The native API's fast path (ingest/native.py) takes exactly the events the exact path
(records.to_record) takes: whatever it is unsure of, it hands back."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from lull.errors import BadInput
from lull.ingest.native import columns
from lull.ingest.records import to_record

NOW = 1_790_000_000_000
texts = st.one_of(st.text(min_size=0, max_size=6), st.text(min_size=250, max_size=260))
times = st.one_of(
    st.integers(min_value=-5, max_value=NOW + 10),
    st.sampled_from(
        ["2026-11-01T10:00:00.000Z", "2026-11-01T12:00:00+02:00", "yesterday", "2026-02-30T00:00Z",
         "0001-01-01T00:00:00+23:59", "1969-12-31T23:59:59Z"]
    ),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.none(),
)  # fmt: skip
props = st.one_of(
    st.none(),
    st.dictionaries(st.text(max_size=5), st.one_of(st.integers(), st.text(max_size=5)), max_size=3),
    st.lists(st.integers(), max_size=2),
    st.integers(),
    st.recursive(st.integers(), lambda inner: st.dictionaries(st.just("a"), inner, max_size=1)),
)


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    record: dict[str, Any] = {
        "message_id": draw(texts),
        "profile_id": draw(texts),
        "name": draw(st.one_of(texts, st.just("Session Concluded"), st.just("Song Played"))),
        "ts": draw(times),
    }
    for optional, strategy in (("sent_at", times), ("received_at", times), ("properties", props)):
        if draw(st.booleans()):
            record[optional] = draw(strategy)
    for field in list(record):
        if draw(st.integers(0, 20)) == 0:
            del record[field]  # a missing field
    return record


def exact(batch: list[dict[str, Any]]) -> list[tuple[Any, ...]] | None:
    out = []
    for raw in batch:
        try:
            r = to_record(raw, "web", arrived=NOW)
        except BadInput:
            return None
        out.append((r.message_id, r.profile_id, r.name, r.ts, r.sent_at, r.properties))
    return out


@given(st.lists(records(), min_size=1, max_size=5))
def test_the_fast_path_takes_what_the_exact_path_takes(batch: list[dict[str, Any]]) -> None:
    body = json.dumps(batch).encode()
    fast = columns(body, "web", NOW)
    want = exact(batch)
    if fast is None:
        return  # the exact path judges it (and may well take it)
    assert want is not None, "the fast path took a body the exact path refuses"
    assert isinstance(fast.properties, pa.Array)  # one column, made without an object each
    got = list(
        zip(fast.message_ids, fast.profile_ids, fast.names, fast.ts, fast.sent_at,
            map(msgspec.json.decode, fast.properties.to_pylist()), strict=True)
    )  # fmt: skip
    assert got == want
    assert fast.source == "web"


def test_an_ordinary_body_takes_the_fast_path() -> None:
    batch = [
        {"message_id": f"m-{i}", "profile_id": "u-1", "name": "Song Played",
         "ts": "2026-11-01T10:00:00.000Z" if i % 2 else NOW - i, "properties": {"n": i}}
        for i in range(50)
    ]  # fmt: skip
    fast = columns(json.dumps(batch).encode(), "ios", NOW)
    assert fast is not None and len(fast) == 50
    assert fast.ts[1] == 1_793_527_200_000 and fast.ts[0] == NOW
    assert isinstance(fast.properties, pa.Array)
    assert fast.properties.to_pylist()[3] == '{"n": 3}'


def test_what_it_hands_back() -> None:
    ok = {"message_id": "m", "profile_id": "u", "name": "A", "ts": NOW}
    for bad in (
        {**ok, "name": "Session Concluded"},
        {**ok, "ts": "yesterday"},
        {**ok, "ts": True},
        {**ok, "properties": [1]},
        {**ok, "properties": {"a": "x" * 40_000}},
        {**ok, "message_id": "x" * 257},
        {**ok, "ts": -1},
        {**ok, "sent_at": 99_999_999_999_999_999},
    ):
        assert columns(json.dumps([ok, bad]).encode(), "web", NOW) is None, bad
    assert columns(json.dumps(ok).encode(), "web", NOW) is None  # NDJSON: one per line
