"""Segment's tracking API (analytics.js, analytics-python, the mobile SDKs) -> events.

Profiles: a message's `userId` is its profile; without one, its `anonymousId`, unless an
identify call tied that anonymous id to a user by the message's time, in which case that
user. So a device's events recorded before sign-in stay on the anonymous profile (even
when they arrive after the identify call), and its events from the identify call on
(even those that carry only the anonymous id) go to the user (server/identity.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lull.errors import BadInput
from lull.ingest.records import Event, check_clock_fix, check_properties
from lull.ingest.sdk import event_name, properties, text_id
from lull.model import parse_time

TYPES = {"track", "page", "screen", "identify", "alias", "group"}
SHORT = {"t": "track", "p": "page", "s": "screen", "i": "identify", "a": "alias", "g": "group"}
_NAMES = {
    "page": "Page Viewed",
    "screen": "Screen Viewed",
    "identify": "Identity Set",
    "alias": "Identity Set",
    "group": "Identity Set",
}


def _str(msg: dict[str, Any], key: str) -> str | None:
    return text_id(msg.get(key), key, required=False)


def to_event(
    msg: object,
    default_type: str | None,
    source: str,
    resolve: Callable[[str, int], str],
    sent_at: object,
    received_at: int,
) -> tuple[Event, tuple[str, str] | None]:
    """One Segment message -> an event, and an (anonymous id, user id) link if it makes one."""
    if not isinstance(msg, dict):
        raise BadInput("a message must be a JSON object")
    kind = msg.get("type", default_type)
    if not isinstance(kind, str) or kind not in TYPES:
        raise BadInput(f"field 'type': {kind!r} is not one of {', '.join(sorted(TYPES))}")
    user, anonymous = _str(msg, "userId"), _str(msg, "anonymousId")
    if kind == "alias":
        anonymous = _str(msg, "previousId") or anonymous
    if user is None and anonymous is None:
        raise BadInput("a message needs a 'userId' or an 'anonymousId'")
    link = (anonymous, user) if anonymous and user and kind in ("identify", "alias") else None
    message_id = _str(msg, "messageId")
    if message_id is None:
        raise BadInput("field 'messageId' is missing")
    name = event_name(msg.get("event"), "event", {}) if kind == "track" else _NAMES[kind]
    where = "traits" if kind in ("identify", "group") else "properties"
    props = properties(msg.get(where) or None, where)
    if kind == "page" and msg.get("name"):
        props = {"name": msg["name"], **props}
    if kind == "group" and msg.get("groupId") is not None:
        props = {"groupId": msg["groupId"], **props}
    check_properties(props, where)
    timestamp = msg.get("timestamp")
    ts = received_at if timestamp is None else parse_time(timestamp, "field 'timestamp'")
    sent = msg.get("sentAt", sent_at)
    sent_ms = None if sent is None else parse_time(sent, "field 'sentAt'")
    check_clock_fix(ts, sent_ms, received_at, "sentAt")
    profile = user if user is not None else resolve(anonymous or "", ts)
    return (
        Event(
            message_id=message_id,
            profile_id=profile,
            name=name,
            ts=ts,
            source=source,
            sent_at=sent_ms,
            properties=props,
        ),
        link,
    )
