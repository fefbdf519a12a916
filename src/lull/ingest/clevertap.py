"""CleverTap's upload API records -> events (pushed by servers: never sessionized, R1)."""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from lull.errors import BadInput
from lull.ingest.records import Event, check_properties
from lull.ingest.sdk import event_name, properties, text_id
from lull.model import check_epoch

MAX_RECORDS = 1000
_encode = msgspec.json.Encoder(order="sorted").encode


def to_event(record: object) -> Event | None:
    """An `event` record -> an event; a `profile` record -> None (it updates no event).

    CleverTap records carry no message id, so one is derived from the record's content:
    re-sending the same upload is then acknowledged and ignored (R6).
    """
    if not isinstance(record, dict):
        raise BadInput("a record must be a JSON object")
    kind = record.get("type")
    if kind not in ("event", "profile"):
        raise BadInput("'type' must be 'event' or 'profile'")
    field = "identity" if "identity" in record else "objectId"
    identity = record.get(field)
    if isinstance(identity, bool) or not isinstance(identity, str | int) or identity == "":
        raise BadInput("'identity' (or 'objectId') must be a string or a number")
    profile = text_id(identity, field)
    assert profile is not None
    ts = record.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, int):
        raise BadInput("field 'ts' must be epoch seconds (an integer)")
    check_epoch(ts * 1000, "field 'ts'")
    if kind == "profile":
        properties(record.get("profileData", {}), "profileData")
        return None
    name = event_name(record.get("evtName"), "evtName", {})
    data = check_properties(properties(record.get("evtData", {}), "evtData"), "evtData")
    digest = hashlib.md5(_encode(record)).hexdigest()
    return Event(f"ct-{digest}", profile, name, ts * 1000, "api", None, data)


def profile_update(record: dict[str, Any]) -> tuple[str, dict[str, Any], int]:
    """A `profile` record (checked by `to_event`) -> (profile id, properties, time ms)."""
    identity = record.get("identity", record.get("objectId"))
    return str(identity), dict(record.get("profileData") or {}), int(record["ts"]) * 1000
