"""Amplitude's HTTP V2 and Batch APIs (the Browser SDK, the Python and mobile SDKs) -> events.

A body is `{"api_key", "events": [...], "options"}`. Amplitude takes a batch whole or not
at all: one bad event refuses the request (400) with the indices of the bad events by
field, and the SDKs drop those and send the rest again. lull answers the same way.

Profiles: an event's `user_id` is its profile; without one, its `device_id`, unless an
event with both tied that device to a user, in which case that user. Amplitude's own
`session_id` is kept as the property "Amplitude Session ID": lull's sessions are lull's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lull.errors import BadInput, LullError
from lull.ingest.records import Event, EventTooLarge, check_properties
from lull.ingest.sdk import content_id, event_name, properties, source_for, text_id
from lull.model import MAX_EPOCH_MS, MIN_EPOCH_MS

RENAMES = {
    "$identify": "Identity Set",
    "$groupidentify": "Identity Set",
    "[Amplitude] Page Viewed": "Page Viewed",
}
MAX_EVENTS = 2000  # Amplitude's own limit per request


class BadEvent(BadInput):
    """An event's fault, with the field it is in (Amplitude reports faults by field)."""

    def __init__(self, field: str, message: str, missing: bool = False) -> None:
        super().__init__(message)
        self.field = field
        self.missing = missing


def batch(payload: object) -> tuple[str | None, list[Any]]:
    """The key and the events of a request body."""
    if not isinstance(payload, dict):
        raise BadInput("body must be a JSON object with 'api_key' and 'events'")
    key = payload.get("api_key")
    events = payload.get("events")
    if not isinstance(events, list):
        raise BadInput("field 'events' must be an array of events")
    if len(events) > MAX_EVENTS:
        raise BadInput(f"at most {MAX_EVENTS} events per request")
    return (key if isinstance(key, str) and key else None), events


def to_event(
    msg: object, key_source: str, resolve: Callable[[str, int], str], received_at: int
) -> tuple[Event, tuple[str, str] | None, dict[str, Any] | None]:
    """One Amplitude event -> an event, a (device id, user id) link if it names both, and
    the user properties an `$identify` event sets."""
    if not isinstance(msg, dict):
        raise BadEvent("event", "an event must be a JSON object")
    try:
        name = event_name(msg.get("event_type"), "event_type", RENAMES)
    except BadInput as e:
        raise BadEvent("event_type", e.message, "event_type" not in msg) from None
    user = _id(msg, "user_id")
    device = _id(msg, "device_id")
    if user is None and device is None:
        raise BadEvent("user_id", "an event needs a 'user_id' or a 'device_id'", missing=True)
    link = (device, user) if device and user and device != user else None
    time = msg.get("time")
    if time is None:
        ts = received_at
    elif isinstance(time, bool) or not isinstance(time, int):
        raise BadEvent("time", "field 'time' must be epoch milliseconds (an integer)")
    elif not MIN_EPOCH_MS <= time <= MAX_EPOCH_MS:
        raise BadEvent(
            "time", f"field 'time': {time} ms is out of range: use a time from 1970 to 9999"
        )
    else:
        ts = time
    profile = user if user is not None else resolve(device or "", ts)
    message_id = _id(msg, "insert_id") or content_id("amp", msg)
    try:
        props = dict(properties(msg.get("event_properties"), "event_properties"))
    except BadInput as e:
        raise BadEvent("event_properties", e.message) from None
    user_props = msg.get("user_properties")
    if user_props is not None and not isinstance(user_props, dict):
        raise BadEvent("user_properties", "field 'user_properties' must be an object")
    session = msg.get("session_id")
    if session is not None and session != -1:
        props["Amplitude Session ID"] = session
    try:
        check_properties(props, "event_properties")
    except EventTooLarge:
        raise
    except BadInput as e:
        raise BadEvent("event_properties", e.message) from None
    traits = None
    if name == "Identity Set" and user_props:
        # `$identify` carries operations ({"$set": {...}}); plain properties are sets too
        sets = user_props.get("$set")
        traits = (
            dict(sets)
            if isinstance(sets, dict)
            else {k: v for k, v in user_props.items() if not k.startswith("$")}
        )
    event = Event(
        message_id=message_id,
        profile_id=profile,
        name=name,
        ts=ts,
        source=source_for(key_source, msg.get("platform") or msg.get("os_name")),
        sent_at=None,
        properties=props,
    )
    return event, link, traits or None


def _id(msg: dict[str, Any], field: str) -> str | None:
    try:
        return text_id(msg.get(field), field, required=False)
    except BadInput as e:
        raise BadEvent(field, e.message) from None


def refusal(faults: list[tuple[int, LullError]]) -> dict[str, object]:
    """The 400 answer Amplitude gives a batch with bad events: indices by field."""
    invalid: dict[str, list[int]] = {}
    missing: dict[str, list[int]] = {}
    for index, fault in faults:  # an event over 32 KB is no BadEvent: its field is the event
        field, lacking = getattr(fault, "field", "event"), getattr(fault, "missing", False)
        (missing if lacking else invalid).setdefault(field, []).append(index)
    first_index, first = faults[0]
    return {
        "code": 400,
        "error": f"event {first_index}: {first.message}",
        "events_with_invalid_fields": invalid,
        "events_with_missing_fields": missing,
    }
