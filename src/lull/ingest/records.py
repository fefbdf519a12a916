"""The canonical event record (docs/sessions.md), validated one record at a time.

This is the exact validator: the server uses it per event, and a bulk import uses it to
say precisely which line and field is wrong when the fast columnar check finds a fault.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from lull.errors import BadInput, TooLarge
from lull.model import (
    MAX_DEPTH,
    MAX_EVENT,
    MAX_ID,
    MAX_NAME,
    SESSION_CONCLUDED,
    SOURCES,
    parse_time,
)

__all__ = ["MAX_ID", "MAX_NAME", "Record", "check_id", "check_name", "check_properties"]

# The properties object counted as one level: a canonical record holding it, in a JSON
# array body, is then MAX_DEPTH levels deep at most.
MAX_PROPERTIES_DEPTH = MAX_DEPTH - 2
_encode = msgspec.json.Encoder().encode


@dataclass(slots=True)
class Event:
    """One validated event of a request (the live path's form: `received_at` is the
    request's, applied by the engine)."""

    message_id: str
    profile_id: str
    name: str
    ts: int
    source: str
    sent_at: int | None
    properties: dict[str, Any]
    raw: str | None = None  # the properties as JSON text, when they came as such


class EventTooLarge(TooLarge, BadInput):
    """An event over MAX_EVENT: a 413 to a client, and a bad line to an import."""


def check_id(value: str, field: str) -> str:
    """A message or profile id (a user, a device, an identity) as lull stores it."""
    if not value or len(value) > MAX_ID:
        raise BadInput(f"field {field!r} must be 1 to {MAX_ID} characters")
    return value


def check_name(value: str, field: str) -> str:
    """An event name a client may send: 1 to MAX_NAME characters, not the system event."""
    if not value or len(value) > MAX_NAME:
        raise BadInput(f"field {field!r} must be 1 to {MAX_NAME} characters")
    if value == SESSION_CONCLUDED:
        raise BadInput(f"field {field!r}: {SESSION_CONCLUDED!r} is a system event")
    return value


def check_properties(props: dict[str, Any], field: str) -> dict[str, Any]:
    """An event's properties as lull stores them: at most MAX_EVENT bytes of JSON and
    MAX_PROPERTIES_DEPTH levels deep. TooLarge (413) when over the size."""
    encoded = _encode(props)
    if len(encoded) > MAX_EVENT:
        raise EventTooLarge(f"field {field!r}: the event is over {MAX_EVENT // 1024} KB")
    # only a text with that many brackets can nest that deep: most are not walked
    brackets = encoded.count(b"{") + encoded.count(b"[")
    if brackets > MAX_PROPERTIES_DEPTH and deeper_than(props, MAX_PROPERTIES_DEPTH):
        raise BadInput(f"field {field!r} is nested more than {MAX_PROPERTIES_DEPTH} levels deep")
    return props


def deeper_than(value: object, limit: int) -> bool:
    """Do arrays and objects nest more than `limit` levels in `value`?"""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in item if isinstance(child, dict | list))
    return False


@dataclass(slots=True, frozen=True)
class Record:
    message_id: str
    profile_id: str
    name: str
    ts: int
    source: str
    received_at: int | None
    sent_at: int | None
    properties: dict[str, Any]


def _text(obj: dict[str, Any], key: str, limit: int) -> str:
    value = obj.get(key)
    if value is None:
        raise BadInput(f"field {key!r} is missing")
    if not isinstance(value, str):
        raise BadInput(f"field {key!r} must be a string, got {_kind(value)}")
    if not value or len(value) > limit:
        raise BadInput(f"field {key!r} must be 1 to {limit} characters")
    return value


def _kind(value: object) -> str:
    return {
        dict: "an object",
        list: "an array",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
    }.get(type(value), type(value).__name__)


def _time(obj: dict[str, Any], key: str, required: bool) -> int | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise BadInput(f"field {key!r} is missing")
        return None
    try:
        return parse_time(value, f"field {key!r}")
    except BadInput as e:
        raise BadInput(e.message) from None


def corrected_time(ts: int, sent_at: int | None, received_at: int) -> int:
    """R5: the event time fixed for the client's clock skew and capped at its arrival."""
    fixed = ts if sent_at is None else ts + (received_at - sent_at)
    return min(fixed, received_at)


def corrected_times(ts: Any, sent_at: Any, received_at: Any) -> Any:
    """`corrected_time` column-wise, over Arrow arrays (`sent_at` null where not sent)."""
    import pyarrow.compute as pc  # (only the column-wise readers need it)

    fixed = pc.if_else(pc.is_null(sent_at), ts, pc.add(ts, pc.subtract(received_at, sent_at)))
    return pc.min_element_wise(fixed, received_at)


def check_clock_fix(ts: int, sent_at: int | None, arrived: int | None, field: str) -> None:
    """Refuse an event whose clock fix (R5) would move it before 1970."""
    if sent_at is not None and arrived is not None and corrected_time(ts, sent_at, arrived) < 0:
        raise BadInput(
            f"field {field!r}: it is so far ahead of 'ts' that the clock fix "
            "(ts + received_at - sent_at) falls before 1970"
        )


def to_record(
    obj: object, source: str | None = None, now: int | None = None, arrived: int | None = None
) -> Record:
    """Validate one decoded JSON value as a canonical event; BadInput names the field.

    `source`, when given (the server knows it from the write key), is used instead of
    the record's own field. The clock fix must not move the event before 1970; it is
    checked against `arrived` (the server's receive time), else the record's
    `received_at`, else `now` (when an import without `received_at` arrives).
    """
    if not isinstance(obj, dict):
        raise BadInput(f"an event must be a JSON object, got {_kind(obj)}")
    name = check_name(_text(obj, "name", MAX_NAME), "name")
    if source is None:
        source = _text(obj, "source", 16)
    if source not in SOURCES:
        raise BadInput(f"field 'source': {source!r} is not one of {', '.join(SOURCES)}")
    props = obj.get("properties")
    if props is None:
        props = {}
    elif not isinstance(props, dict):
        raise BadInput(f"field 'properties' must be an object, got {_kind(props)}")
    else:
        check_properties(props, "properties")
    ts = _time(obj, "ts", True)
    assert ts is not None
    received_at = _time(obj, "received_at", False)
    sent_at = _time(obj, "sent_at", False)
    arrival = arrived if arrived is not None else received_at if received_at is not None else now
    check_clock_fix(ts, sent_at, arrival, "sent_at")
    return Record(
        message_id=_text(obj, "message_id", MAX_ID),
        profile_id=_text(obj, "profile_id", MAX_ID),
        name=name,
        ts=ts,
        source=source,
        received_at=received_at,
        sent_at=sent_at,
        properties=props,
    )


def is_exported_conclusion(obj: object) -> bool:
    """A `Session Concluded` line of `lull export events` (it names its session): an
    import leaves it out, as the replay raises its own; written any other way, the name
    is refused (only lull raises it)."""
    return (
        isinstance(obj, dict)
        and obj.get("name") == SESSION_CONCLUDED
        and obj.get("session_id") is not None
    )


def find_first_error(path: str, start_record: int = 0, now: int | None = None) -> str | None:
    """Scan an NDJSON file and describe its first bad line ('line N: ...').

    Records before `start_record` (counting non-blank lines) are only decoded, not
    validated, since the columnar check found them good.
    """
    decoder = msgspec.json.Decoder()
    record = -1
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            record += 1
            try:
                obj = decoder.decode(raw)
            except msgspec.DecodeError as e:
                return f"line {number}: malformed JSON ({e})"
            if record < start_record or is_exported_conclusion(obj):
                continue
            try:
                to_record(obj, now=now)
            except BadInput as e:
                return f"line {number}: {e.message}"
    return None
