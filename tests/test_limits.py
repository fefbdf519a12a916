"""One definition of what an event may hold (model.py), applied by every way in: each
path's conversion function takes a value at a limit and refuses one past it, with an
error naming the field as that path's clients spell it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from lull.errors import BadInput, TooLarge
from lull.ingest import amplitude, clevertap, clevertap_web, posthog, segment
from lull.ingest.records import MAX_PROPERTIES_DEPTH, to_record
from lull.model import MAX_EPOCH_MS, MAX_EVENT, MAX_ID, MAX_NAME

NOW = 1_790_000_000_000


def unlinked(anonymous: str, at: int | None) -> str:
    return anonymous


def native(fields: dict[str, Any]) -> Any:
    record = {"message_id": "m", "profile_id": "u", "name": "Played", "ts": NOW - 1000}
    rec = to_record({**record, **fields}, "web", arrived=NOW)
    return rec.profile_id, rec.name, rec.ts, rec.properties


def via_segment(fields: dict[str, Any]) -> Any:
    message = {"type": "track", "userId": "u", "messageId": "m", "event": "Played"}
    event, _ = segment.to_event({**message, **fields}, None, "web", unlinked, None, NOW)
    return event.profile_id, event.name, event.ts, event.properties


def via_posthog(fields: dict[str, Any]) -> Any:
    message = {"event": "Played", "distinct_id": "u", "uuid": "m"}
    event, _, _ = posthog.to_event({**message, **fields}, "web", unlinked, None, NOW)
    return event.profile_id, event.name, event.ts, event.properties


def via_amplitude(fields: dict[str, Any]) -> Any:
    message = {"event_type": "Played", "user_id": "u", "insert_id": "m"}
    event, _, _ = amplitude.to_event({**message, **fields}, "web", unlinked, NOW)
    return event.profile_id, event.name, event.ts, event.properties


def via_clevertap(fields: dict[str, Any]) -> Any:
    record = {"type": "event", "identity": "u", "ts": NOW // 1000, "evtName": "Played"}
    event = clevertap.to_event({**record, **fields})
    assert event is not None
    return event.profile_id, event.name, event.ts, event.properties


def via_clevertap_web(fields: dict[str, Any]) -> Any:
    """An event push (a profile push when `Identity` is given); `i` goes to the query."""
    i = fields.pop("i", str(NOW // 1000))
    payload: dict[str, Any] = {"id": "acct", "type": "event", "evtName": "Played", **fields}
    if "Identity" in payload:
        payload = {"id": "acct", "type": "profile", "profile": {"Identity": payload["Identity"]}}
    mapped = clevertap_web.to_event(
        clevertap_web.Hit("push", payload, i=i), "guid", 1, unlinked, NOW
    )
    event = mapped.event
    assert event is not None
    props = {k: v for k, v in event.properties.items() if k != clevertap_web.SESSION_PROPERTY}
    return event.profile_id, event.name, event.ts, props


@dataclass(frozen=True)
class Path:
    convert: Callable[[dict[str, Any]], Any]
    profile: str  # the field that names the profile
    name: str  # the event's name
    time: str  # the event's time
    too_early: Any  # a time before 1970 in that field
    too_late: Any  # a time after 9999
    properties: str


PATHS = {
    "native": Path(native, "profile_id", "name", "ts", -1, MAX_EPOCH_MS + 1, "properties"),
    "segment": Path(via_segment, "userId", "event", "timestamp", "1969-12-31T23:59:59Z",
                    "0001-01-01T00:00:00+23:59", "properties"),
    "posthog": Path(via_posthog, "distinct_id", "event", "offset", NOW + 1, -MAX_EPOCH_MS,
                    "properties"),
    "amplitude": Path(via_amplitude, "user_id", "event_type", "time", -1, MAX_EPOCH_MS + 1,
                      "event_properties"),
    "clevertap": Path(via_clevertap, "identity", "evtName", "ts", -1,
                      MAX_EPOCH_MS // 1000 + 1, "evtData"),
    "clevertap_web": Path(via_clevertap_web, "Identity", "evtName", "i", "-1",
                          str(MAX_EPOCH_MS // 1000 + 1), "evtData"),
}  # fmt: skip
paths = pytest.mark.parametrize("path", PATHS.values(), ids=list(PATHS))


@paths
def test_a_profile_id_at_the_limit_is_taken_and_one_past_it_refused(path: Path) -> None:
    assert path.convert({path.profile: "é" * MAX_ID})[0] == "é" * MAX_ID
    with pytest.raises(BadInput, match=f"'{path.profile}' must be 1 to {MAX_ID} characters"):
        path.convert({path.profile: "é" * (MAX_ID + 1)})


@paths
def test_a_name_at_the_limit_is_taken_and_one_past_it_refused(path: Path) -> None:
    assert path.convert({path.name: "n" * MAX_NAME})[1] == "n" * MAX_NAME
    with pytest.raises(BadInput, match=f"'{path.name}' must be 1 to {MAX_NAME} characters"):
        path.convert({path.name: "n" * (MAX_NAME + 1)})


@paths
def test_the_system_event_is_refused_naming_the_field(path: Path) -> None:
    with pytest.raises(BadInput, match=f"'{path.name}': 'Session Concluded' is a system event"):
        path.convert({path.name: "Session Concluded"})


@paths
@pytest.mark.parametrize("when", ["too_early", "too_late"])
def test_a_time_outside_1970_to_9999_is_refused_naming_the_field(path: Path, when: str) -> None:
    with pytest.raises(BadInput, match=f"'{path.time}'.*(out of range|1970)"):
        path.convert({path.time: getattr(path, when)})


@paths
def test_properties_over_the_size_are_413(path: Path) -> None:
    assert path.convert({path.properties: {"big": "z" * (MAX_EVENT - 100)}})[3]["big"]
    with pytest.raises(TooLarge, match=f"'{path.properties}'.*over 32 KB"):
        path.convert({path.properties: {"big": "z" * MAX_EVENT}})


def deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


@paths
def test_properties_nested_past_the_depth_are_refused_naming_the_field(path: Path) -> None:
    assert path.convert({path.properties: deep(MAX_PROPERTIES_DEPTH)})[3] == deep(
        MAX_PROPERTIES_DEPTH
    )
    with pytest.raises(BadInput, match=f"'{path.properties}' is nested more than"):
        path.convert({path.properties: deep(MAX_PROPERTIES_DEPTH + 1)})


def test_an_id_given_as_a_huge_number_is_refused_not_converted() -> None:
    with pytest.raises(BadInput, match="'userId' must be 1 to 256 characters"):
        via_segment({"userId": 10**300})


def test_amplitude_refusal_lists_an_event_over_the_size_among_bad_ones() -> None:
    faults: list[tuple[int, Any]] = [
        (0, TooLarge("event is over 32 KB")),
        (1, amplitude.BadEvent("time", "field 'time' must be epoch milliseconds")),
    ]
    answer = amplitude.refusal(faults)
    assert answer["events_with_invalid_fields"] == {"event": [0], "time": [1]}
