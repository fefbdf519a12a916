"""PostHog's capture API (posthog-js, posthog-python, the mobile SDKs) -> events.

Bodies come as JSON, gzip (with or without a `Content-Encoding`: posthog-js sends gzip as
`text/plain`), or a form field `data=` holding the JSON in base64 (`compression=base64`)
or as text. A body is one event, an array of events, or `{"api_key", "batch": [...]}`.

Profiles: an event's `distinct_id` is its profile, unless an `$identify` call tied that
(anonymous) id to a user by the event's time, in which case that user; as on the Segment
path, a device's events recorded before sign-in stay on the anonymous profile, even when
they arrive after the `$identify` (server/identity.py). PostHog's own `$session_id` stays
an event property: lull's sessions are lull's.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from lull.errors import BadInput
from lull.ingest.records import Event, check_clock_fix, check_properties
from lull.ingest.sdk import content_id, event_name, properties, source_for, text_id
from lull.model import check_epoch, parse_time

RENAMES = {
    "$pageview": "Page Viewed",
    "$screen": "Screen Viewed",
    "$identify": "Identity Set",
    "$set": "Identity Set",
    "$create_alias": "Identity Set",
}
# Properties that are the SDK's plumbing, not the event's: the key is not stored.
_DROPPED = ("token", "distinct_id", "$set", "$set_once")
_PLATFORM = {"posthog-ios": "ios", "posthog-android": "android"}


@dataclass(slots=True)
class Capture:
    """A decoded capture request: its key (if the body names one), batch clock and events."""

    key: str | None
    sent_at: object
    messages: list[Any]


def decode(body: bytes, query: dict[str, str], content_type: str) -> bytes:
    """The JSON text of a capture body (already gunzipped by the body reader)."""
    form = content_type.startswith("application/x-www-form-urlencoded") or body.startswith(b"data=")
    if form:
        fields = parse_qs(body.decode("latin-1"), keep_blank_values=True)
        if "data" not in fields:
            raise BadInput("form body has no 'data' field")
        body = fields["data"][0].encode("latin-1")
    if query.get("compression") == "base64" or (form and body.lstrip()[:1] not in (b"[", b"{")):
        try:
            body = base64.b64decode(body, validate=False)
        except (binascii.Error, ValueError):
            raise BadInput("body is not valid base64 (compression=base64)") from None
    return body


def capture(payload: object) -> Capture:
    """The events of a capture body, whichever of its three shapes it has."""
    if isinstance(payload, list):
        messages = payload
        key = _key_of(messages[0]) if messages else None
        return Capture(key, None, messages)
    if not isinstance(payload, dict):
        raise BadInput("body must be a JSON object or an array of events")
    batch = payload.get("batch")
    if batch is not None:
        if not isinstance(batch, list):
            raise BadInput("field 'batch' must be an array of events")
        key = payload.get("api_key") or (_key_of(batch[0]) if batch else None)
        return Capture(key if isinstance(key, str) else None, payload.get("sent_at"), batch)
    return Capture(_key_of(payload), payload.get("sent_at"), [payload])


def _key_of(message: object) -> str | None:
    if not isinstance(message, dict):
        return None
    props = message.get("properties")
    for key in (
        message.get("api_key"),
        message.get("token"),
        props.get("token") if isinstance(props, dict) else None,
    ):
        if isinstance(key, str) and key:
            return key
    return None


def to_event(
    msg: object,
    key_source: str,
    resolve: Callable[[str, int], str],
    sent_at: object,
    received_at: int,
) -> tuple[Event, tuple[str, str] | None, dict[str, Any] | None]:
    """One PostHog event -> an event, an (anonymous id, user id) link if it makes one, and
    the person properties it sets (`$set`), if any. `resolve(id, time)`: the profile of
    an id's event at that time."""
    if not isinstance(msg, dict):
        raise BadInput("an event must be a JSON object")
    props = properties(msg.get("properties"), "properties")
    raw_name = msg.get("event")
    name = event_name(raw_name, "event", RENAMES)
    distinct = text_id(
        msg.get("distinct_id", props.get("distinct_id", props.get("$distinct_id"))),
        "distinct_id",
    )
    assert distinct is not None
    link = None
    if raw_name == "$identify":
        anonymous = text_id(props.get("$anon_distinct_id"), "$anon_distinct_id", required=False)
        if anonymous and anonymous != distinct:
            link = (anonymous, distinct)
    elif raw_name == "$create_alias":
        alias = text_id(props.get("alias"), "alias", required=False)
        if alias and alias != distinct:
            link = (alias, distinct)
    message_id = text_id(msg.get("uuid") or props.get("$insert_id"), "uuid", required=False)
    if message_id is None:
        message_id = content_id("ph", msg)
    timestamp = msg.get("timestamp")
    if timestamp is not None:
        ts = parse_time(timestamp, "field 'timestamp'")
    elif isinstance(msg.get("offset"), int) and not isinstance(msg.get("offset"), bool):
        # ms before it was sent: a negative offset (the future) is capped at the arrival
        ts = check_epoch(received_at - int(msg["offset"]), "field 'offset'")
    else:
        ts = received_at
    sent = msg.get("sent_at", sent_at)
    sent_ms = None if sent is None else parse_time(sent, "field 'sent_at'")
    check_clock_fix(ts, sent_ms, received_at, "sent_at")
    profile = distinct if link else resolve(distinct, ts)
    traits = props.get("$set") or msg.get("$set")
    if traits is not None and not isinstance(traits, dict):
        raise BadInput("field '$set' must be an object")
    platform = _PLATFORM.get(str(props.get("$lib", "")), props.get("$os"))
    kept = {k: v for k, v in props.items() if k not in _DROPPED}
    event = Event(
        message_id=message_id,
        profile_id=profile,
        name=name,
        ts=ts,
        source=source_for(key_source, platform),
        sent_at=sent_ms,
        properties=check_properties(kept, "properties"),
    )
    return event, link, traits or None


# What /flags and /decide answer: no feature flags, and no remote features switched on,
# so an SDK goes on capturing without waiting for them.
FLAGS: dict[str, Any] = {
    "featureFlags": {},
    "featureFlagPayloads": {},
    "flags": {},
    "errorsWhileComputingFlags": False,
    "quotaLimited": [],
    "requestId": "lull",
    "config": {"enable_collect_everything": False},
    "supportedCompression": ["gzip", "gzip-js"],
    "sessionRecording": False,
    "autocapture_opt_out": True,
    "capturePerformance": False,
    "heatmaps": False,
    "surveys": False,
    "siteApps": [],
    "toolbarParams": {},
}


# What `/array/<token>/config` (JSON) and `/array/<token>/config.js` answer: posthog-js's
# remote config (it asks for it at init unless `advanced_disable_flags`), the same for
# every project: no feature flags (so it does not ask /flags at init), no remote features
# (recordings, surveys, heatmaps, autocapture...) switched on, gzip for its batches, and
# its analytics endpoint left as it is (`/e/`). The token in the path is a web key, which
# a page shows anyway, and the answer holds nothing of the project: it is not checked
# (a wrong key is refused, 401, by the first capture).
REMOTE_CONFIG: dict[str, Any] = {
    "supportedCompression": ["gzip", "gzip-js"],
    "hasFeatureFlags": False,
    "autocapture_opt_out": True,
    "autocaptureExceptions": False,
    "errorTracking": {"autocaptureExceptions": False, "suppressionRules": []},
    "logs": {"captureConsoleLogs": False},
    "capturePerformance": False,
    "captureDeadClicks": False,
    "heatmaps": False,
    "sessionRecording": False,
    "surveys": False,
    "productTours": False,
    "conversations": False,
    "elementsChainAsString": True,
    "defaultIdentifiedOnly": True,
    "isAuthenticated": False,
    "toolbarParams": {},
    "siteApps": [],
}


def remote_config(token: str) -> dict[str, Any]:
    return {"token": token, **REMOTE_CONFIG}


def remote_config_js(token: str) -> str:
    """`config.js`: sets `window._POSTHOG_REMOTE_CONFIG[token]`, where posthog-js looks
    for its remote config once the script has run (and for the site apps to load)."""
    key, config = _js_json(token), _js_json(remote_config(token))
    return (
        "(function () {\n"
        "  var all = (window._POSTHOG_REMOTE_CONFIG = window._POSTHOG_REMOTE_CONFIG || {});\n"
        f"  all[{key}] = {{ config: {config}, siteApps: [] }};\n"
        "})();\n"
    )


def _js_json(value: object) -> str:
    """JSON as a JavaScript literal that no token can break out of."""
    text = json.dumps(value, ensure_ascii=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
