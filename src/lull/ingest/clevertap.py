"""CleverTap's upload API records -> events (pushed by servers: never sessionized, R1)."""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from lull.errors import BadInput
from lull.model import SESSION_CONCLUDED
from lull.server.live import Event

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
    identity = record.get("identity", record.get("objectId"))
    if isinstance(identity, bool) or not isinstance(identity, str | int) or identity == "":
        raise BadInput("'identity' (or 'objectId') must be a string or a number")
    ts = record.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, int) or not 0 <= ts < 253_402_300_800:
        raise BadInput("'ts' must be epoch seconds (an integer)")
    if kind == "profile":
        data = record.get("profileData", {})
        if not isinstance(data, dict):
            raise BadInput("'profileData' must be an object")
        return None
    name = record.get("evtName")
    if not isinstance(name, str) or not name:
        raise BadInput("'evtName' must be a non-empty string")
    if name == SESSION_CONCLUDED:
        raise BadInput(f"'evtName': {SESSION_CONCLUDED!r} is a system event")
    data = record.get("evtData", {})
    if not isinstance(data, dict):
        raise BadInput("'evtData' must be an object")
    digest = hashlib.md5(_encode(record)).hexdigest()
    return Event(f"ct-{digest}", str(identity), name, ts * 1000, "api", None, data)


def profile_update(record: dict[str, Any]) -> tuple[str, dict[str, Any], int]:
    """A `profile` record (checked by `to_event`) -> (profile id, properties, time ms)."""
    identity = record.get("identity", record.get("objectId"))
    return str(identity), dict(record.get("profileData") or {}), int(record["ts"]) * 1000
