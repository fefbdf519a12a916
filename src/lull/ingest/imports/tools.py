"""The export files of Segment, Amplitude, Mixpanel and PostHog -> what their live endpoints
take, converted by those endpoints' own functions (ingest/segment.py, amplitude.py,
posthog.py). What an export adds is read here: the time the tool received each event
(it becomes `received_at`), and times written as the tool writes them. docs/import.md
lists the mapping field by field.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from lull.errors import BadInput
from lull.ingest import amplitude, posthog, segment
from lull.ingest.records import Event
from lull.model import parse_time
from lull.server.identity import Resolve


@dataclass(slots=True)
class Converted:
    """One exported event as lull takes it: the event, an (anonymous id, profile) link it
    makes, the profile properties it sets, and when the tool received it (None: unknown)."""

    event: Event
    link: tuple[str, str] | None
    traits: dict[str, Any] | None
    received_at: int | None


# A tool's converter: (exported record, the key's source, resolve, now) -> Converted.
Convert = Callable[[Any, str, Resolve, int], Converted]

# A tool's own time text: ISO 8601 with a T or a space, fractions to any digits, and an
# offset, Z, or none (UTC): "2026-11-01 10:00:00.123456" (Amplitude), "...+00:00" (PostHog).
_LOOSE = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2})?)(?:\.(\d+))?\s*(Z|UTC|[+-]\d{2}:?\d{2})?$"
)


def tool_time(value: object, field: str) -> int:
    """A time as a tool exports it (see _LOOSE, or epoch ms) -> epoch ms."""
    if isinstance(value, str):
        found = _LOOSE.match(value.strip())
        if found:
            day, clock, fraction, zone = found.groups()
            if zone in (None, "Z", "UTC"):
                zone = "Z"
            elif ":" not in zone:
                zone = f"{zone[:3]}:{zone[3:]}"
            frac = f".{fraction[:6]}" if fraction else ""
            value = f"{day}T{clock}{frac}{zone}"
    return parse_time(value, f"field {field!r}")


def _optional_time(record: dict[str, Any], field: str) -> int | None:
    value = record.get(field)
    return None if value is None or value == "" else tool_time(value, field)


def _object(record: object, what: str = "a record") -> dict[str, Any]:
    if not isinstance(record, dict):
        raise BadInput(f"{what} must be a JSON object")
    return record


def from_segment(record: Any, source: str, resolve: Resolve, now: int) -> Converted:
    """A message of Segment's archive (its S3 destination's files): a track, page, screen,
    identify, alias or group call as Segment stored it, with `receivedAt`.

    The live API gets `timestamp` on the client's clock and fixes it with `sentAt`; the
    archive keeps that as `originalTimestamp` and writes the fixed time in `timestamp`.
    So the client's time and `sentAt` go in, and lull makes the same fix."""
    msg = dict(_object(record, "a message"))
    received = _optional_time(msg, "receivedAt")
    if msg.get("originalTimestamp") is not None:
        msg["timestamp"] = msg["originalTimestamp"]
    else:  # `timestamp` is already fixed: nothing to fix it with
        msg.pop("sentAt", None)
    if received is None:  # no arrival to fix the clock against
        msg.pop("sentAt", None)
    event, link = segment.to_event(
        msg, None, source, resolve, None, received if received is not None else now
    )
    traits = event.properties if event.name == "Identity Set" else None
    return Converted(event, link, traits or None, received)


def from_amplitude(record: Any, source: str, resolve: Resolve, now: int) -> Converted:
    """An event of Amplitude's Export API: `event_time` (Amplitude's time, already fixed
    for the client's clock) is the live API's `time`; `$insert_id` its `insert_id`; an
    event without one is named by Amplitude's `uuid`."""
    msg = dict(_object(record, "an event"))
    received = _optional_time(msg, "server_received_time")
    if received is None:
        received = _optional_time(msg, "server_upload_time")
    if msg.get("event_time") is None:
        raise BadInput("field 'event_time' is missing")
    msg["time"] = tool_time(msg["event_time"], "event_time")
    insert_id = msg.get("$insert_id") or msg.get("insert_id")
    if not insert_id and isinstance(msg.get("uuid"), str) and msg["uuid"]:
        insert_id = f"amp-{msg['uuid']}"
    msg["insert_id"] = insert_id
    arrived = received if received is not None else now
    event, link, traits = amplitude.to_event(msg, source, resolve, arrived)
    return Converted(event, link, traits, received)


_MIXPANEL_RENAMES = {"$mp_web_page_view": "$pageview"}
_SECONDS_BELOW = 100_000_000_000  # a `time` under this is seconds (ms would be before 1974)


def from_mixpanel(record: Any, source: str, resolve: Resolve, now: int) -> Converted:
    """An event of Mixpanel's raw export: `{"event", "properties": {"time", "distinct_id",
    "$insert_id", ...}}`, taken as PostHog's capture takes it (PostHog's event model is
    Mixpanel's: `distinct_id`, `$identify` with `$anon_distinct_id`, `$create_alias` with
    `alias`, `$insert_id`). Simplified ID Merge: an event with both `$device_id` and
    `$user_id` ties `$device:<device id>` (the device's anonymous distinct_id) to the user."""
    msg = _object(record, "an event")
    props = dict(_object(msg.get("properties"), "field 'properties'"))
    time = props.pop("time", None)
    if isinstance(time, bool) or not isinstance(time, int | float) or time < 0:
        raise BadInput("field 'properties.time' must be epoch seconds or milliseconds")
    ts = int(time * 1000) if time < _SECONDS_BELOW else int(time)
    received = props.get("mp_processing_time_ms", props.get("$mp_api_timestamp_ms"))
    if received is not None:
        received = parse_time(received, "field 'properties.mp_processing_time_ms'")
    name = msg.get("event")
    live = {
        "event": _MIXPANEL_RENAMES.get(name, name) if isinstance(name, str) else name,
        "distinct_id": props.get("distinct_id"),
        "timestamp": ts,
        "properties": props,
    }
    event, link, traits = posthog.to_event(
        live, source, resolve, None, received if received is not None else now
    )
    device, user = props.get("$device_id"), props.get("$user_id")
    if link is None and isinstance(device, str) and device and isinstance(user, str) and user:
        link = (f"$device:{device}", user)
    return Converted(event, link, traits, received)


_decode_json = msgspec.json.Decoder().decode
_POSTHOG_FIELDS = ("uuid", "event", "distinct_id")


def from_posthog(record: Any, source: str, resolve: Resolve, now: int) -> Converted:
    """An event of PostHog's export (batch export or file download: JSON lines or Parquet;
    or CSV): `uuid, event, distinct_id, properties, timestamp, created_at`. `timestamp` is
    PostHog's time, already fixed for the client's clock; `created_at` is when PostHog
    received it. In Parquet and CSV, `properties` is JSON text; in CSV, `properties.<name>`
    columns (PostHog's CSV of a `*` or property column; a leading `*.` is dropped) add
    properties."""
    msg, extra = _flattened(_object(record, "an event"))
    props = msg.get("properties")
    if isinstance(props, str):
        try:
            props = _decode_json(props)
        except msgspec.DecodeError as e:
            raise BadInput(f"field 'properties' is not valid JSON ({e})") from None
    props = dict(_object(props if props is not None else {}, "field 'properties'"))
    props.update(extra)
    received = _optional_time(msg, "created_at")
    live: dict[str, Any] = {k: msg[k] for k in _POSTHOG_FIELDS if k in msg}
    live["properties"] = props
    if msg.get("timestamp") not in (None, ""):
        live["timestamp"] = tool_time(msg["timestamp"], "timestamp")
    event, link, traits = posthog.to_event(
        live, source, resolve, None, received if received is not None else now
    )
    return Converted(event, link, traits, received)


def _flattened(msg: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A CSV row's `*.x` and `properties.<name>` columns as `x`, and as extra properties."""
    if not any(str(k).startswith(("*.", "properties.")) for k in msg):
        return msg, {}
    out: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in msg.items():
        name = str(key).removeprefix("*.")
        if name.startswith("properties."):
            extra[name.removeprefix("properties.")] = value
        else:
            out[name] = value
    return out, extra


TOOLS: dict[str, Convert] = {
    "segment": from_segment,
    "amplitude": from_amplitude,
    "mixpanel": from_mixpanel,
    "posthog": from_posthog,
}
# Which tools' exports come as CSV or Parquet too (the others are JSON lines only).
TABLE_TOOLS = ("posthog",)
