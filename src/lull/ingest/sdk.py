"""What the SDK wire formats share: ids, names, the source an SDK's event is taken from."""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from lull.errors import BadInput
from lull.ingest.records import MAX_ID, check_id, check_name

_encode = msgspec.json.Encoder(order="sorted").encode
_ID_BITS = 4 * MAX_ID  # a number this long has over MAX_ID digits; str() of it is slow
_MOBILE = {"ios": "ios", "ipados": "ios", "android": "android"}


def text_id(value: object, field: str, *, required: bool = True) -> str | None:
    """A profile, device or message id as an SDK sends it (a string, or a number)."""
    if value is None or value == "":
        if required:
            raise BadInput(f"field {field!r} is missing")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise BadInput(f"field {field!r} must be a string")
    if isinstance(value, int) and value.bit_length() > _ID_BITS:  # more digits than MAX_ID
        raise BadInput(f"field {field!r} must be 1 to {MAX_ID} characters")
    return check_id(str(value), field)


def event_name(value: object, field: str, renames: dict[str, str]) -> str:
    """An SDK's event name as lull stores it: its own names for page and screen views and
    identify calls (`renames`), and never the system event."""
    if not isinstance(value, str) or not value:
        raise BadInput(f"field {field!r} must be a non-empty string")
    return renames.get(value, check_name(value, field))


def properties(value: object, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadInput(f"field {field!r} must be an object")
    return value


def content_id(prefix: str, message: object) -> str:
    """A message id derived from a message's content, for SDK messages that carry none:
    the same message sent again is then a duplicate (R6)."""
    return f"{prefix}-{hashlib.md5(_encode(message)).hexdigest()}"


def source_for(key_source: str, platform: object) -> str:
    """The source of an SDK event: its key's, except that the `web` key also serves the
    mobile SDKs, whose platform field (`iOS`, `Android`) then names the source."""
    if key_source == "web" and isinstance(platform, str):
        return _MOBILE.get(platform.strip().lower(), key_source)
    return key_source
