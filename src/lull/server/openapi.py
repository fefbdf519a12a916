"""The OpenAPI description served at /openapi.json."""

from __future__ import annotations

from typing import Any

from lull.ingest import segment
from lull.model import MAX_EPOCH_MS, MAX_ID, MAX_NAME, MIN_EPOCH_MS, SOURCES
from lull.segments.openapi import paths as segment_paths

# What an event may hold (model.py), as the document says it.
_TIME = {
    "oneOf": [
        {"type": "string", "format": "date-time", "description": "1970 to 9999, with an offset"},
        {"type": "integer", "minimum": MIN_EPOCH_MS, "maximum": MAX_EPOCH_MS},
    ]
}
_ID = {"type": "string", "minLength": 1, "maxLength": MAX_ID}
_NAME = {"type": "string", "minLength": 1, "maxLength": MAX_NAME}
_EVENT = {
    "type": "object",
    "required": ["message_id", "profile_id", "name", "ts"],
    "properties": {
        "message_id": _ID,
        "profile_id": _ID,
        "name": _NAME,
        "ts": _TIME,
        "sent_at": _TIME,
        "source": {"type": "string", "enum": list(SOURCES)},
        "properties": {"type": "object", "description": "at most 32 KB as JSON"},
    },
}
_OBJECT = {"type": "object", "description": "at most 32 KB as JSON"}
_SDK_ID = {"oneOf": [_ID, {"type": "integer"}], "description": "a number counts by its digits"}
_SEGMENT_MESSAGE = {
    "type": "object",
    "required": ["type", "messageId"],
    "anyOf": [{"required": ["userId"]}, {"required": ["anonymousId"]}],
    "properties": {
        "type": {"type": "string", "enum": sorted(segment.TYPES)},
        "messageId": _SDK_ID,
        "userId": _SDK_ID,
        "anonymousId": _SDK_ID,
        "previousId": _SDK_ID,
        "event": {**_NAME, "description": "track calls: the event's name"},
        "timestamp": _TIME,
        "sentAt": _TIME,
        "properties": _OBJECT,
        "traits": _OBJECT,
    },
}
_POSTHOG_EVENT = {
    "type": "object",
    "required": ["event", "distinct_id"],
    "properties": {
        "event": _NAME,
        "distinct_id": _SDK_ID,
        "uuid": _ID,
        "timestamp": _TIME,
        "offset": {"type": "integer", "description": "ms before the request was sent"},
        "properties": _OBJECT,
    },
}
_AMPLITUDE_EVENT = {
    "type": "object",
    "required": ["event_type"],
    "anyOf": [{"required": ["user_id"]}, {"required": ["device_id"]}],
    "properties": {
        "event_type": _NAME,
        "user_id": _SDK_ID,
        "device_id": _SDK_ID,
        "insert_id": _SDK_ID,
        "time": {"type": "integer", "minimum": MIN_EPOCH_MS, "maximum": MAX_EPOCH_MS},
        "event_properties": _OBJECT,
        "user_properties": {"type": "object"},
        "session_id": {"type": "integer"},
    },
}
_CLEVERTAP_RECORD = {
    "type": "object",
    "required": ["type", "ts"],
    "anyOf": [{"required": ["identity"]}, {"required": ["objectId"]}],
    "properties": {
        "type": {"type": "string", "enum": ["event", "profile"]},
        "identity": _SDK_ID,
        "objectId": _SDK_ID,
        "ts": {"type": "integer", "minimum": 0, "maximum": MAX_EPOCH_MS // 1000},
        "evtName": _NAME,
        "evtData": _OBJECT,
        "profileData": {"type": "object"},
    },
}
_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
_INT = {"type": "integer"}
_STR = {"type": "string"}
_NULLABLE_STR = {"type": "string", "nullable": True}
_REJECTED = {
    "type": "array",
    "maxItems": 100,
    "items": {
        "type": "object",
        "required": ["index", "error", "status"],
        "properties": {"index": _INT, "error": _STR, "status": _INT},
    },
}
_STORED = {  # the native API's answer (400 or 413 when none was stored)
    "type": "object",
    "required": ["accepted", "duplicates", "rejected"],
    "properties": {
        "accepted": _INT,
        "duplicates": _INT,
        "rejected": _REJECTED,
        "rejected_count": _INT,
    },
}
_SEGMENT = {
    "type": "object",
    "required": ["success", "rejected"],
    "properties": {
        "success": {"type": "boolean"},
        "accepted": _INT,
        "rejected": _REJECTED,
        "rejected_count": _INT,
    },
}
_POSTHOG = {
    "type": "object",
    "required": ["status", "rejected"],
    "properties": {
        "status": {"type": "integer", "enum": [0, 1]},
        "error": _STR,
        "rejected": _REJECTED,
        "rejected_count": _INT,
    },
}
_CLEVERTAP = {
    "type": "object",
    "required": ["status", "processed", "unprocessed"],
    "properties": {
        "status": {"type": "string", "enum": ["success", "fail"]},
        "processed": _INT,
        "unprocessed": {"type": "array", "maxItems": 100, "items": {"type": "object"}},
    },
}
_AMPLITUDE = {
    "type": "object",
    "required": ["code", "events_ingested", "payload_size_bytes", "server_upload_time"],
    "properties": {
        "code": {"type": "integer", "enum": [200]},
        "events_ingested": _INT,
        "payload_size_bytes": _INT,
        "server_upload_time": _INT,
    },
}
_HEALTH = {
    "type": "object",
    "required": ["status"],
    "properties": {"status": {"type": "string", "enum": ["ok", "unavailable"]}, "error": _STR},
}
_TIME_OUT = {"type": "string", "format": "date-time"}
_EVENT_OUT = {
    "type": "object",
    "required": ["message_id", "profile_id", "name", "ts", "source", "received_at",
                 "properties", "session_id", "late"],
    "properties": {
        "message_id": _STR,
        "profile_id": _STR,
        "name": _STR,
        "ts": _TIME_OUT,
        "source": {"type": "string", "enum": list(SOURCES)},
        "received_at": _TIME_OUT,
        "properties": {"type": "object"},
        "session_id": _NULLABLE_STR,
        "late": {"type": "boolean"},
    },
}  # fmt: skip
_SESSION_OUT = {
    "type": "object",
    "required": ["session_id", "profile_id", "first_ts", "last_ts", "length_s", "events",
                 "source", "concluded"],
    "properties": {
        "session_id": _STR,
        "profile_id": _STR,
        "first_ts": _TIME_OUT,
        "last_ts": _TIME_OUT,
        "length_s": _INT,
        "events": _INT,
        "source": {"type": "string", "enum": list(SOURCES)},
        "concluded": {"type": "boolean"},
    },
}  # fmt: skip
_PROFILE = {
    "type": "object",
    "required": ["profile_id", "latest_session_id", "first_seen", "last_seen", "properties"],
    "properties": {
        "profile_id": _STR,
        "latest_session_id": _NULLABLE_STR,
        "first_seen": {**_TIME_OUT, "nullable": True},
        "last_seen": {**_TIME_OUT, "nullable": True},
        "properties": {"type": "object"},
    },
}
_DATE = {"type": "string", "format": "date"}
_SPAN = {"from": _DATE, "until": _DATE, "timezone": _STR, "source": _NULLABLE_STR}
_BOARD = {
    "type": "object",
    "required": ["from", "until", "timezone", "length_distribution", "per_day"],
    "properties": {
        **_SPAN,
        "length_distribution": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["from_s", "to_s", "sessions"],
                "properties": {
                    "from_s": _INT,
                    "to_s": {"type": "integer", "nullable": True},
                    "sessions": _INT,
                },
            },
        },
        "per_day": {"type": "array", "items": {"type": "object"}},
        "settings_changes": {
            "type": "array",
            "description": "changes of the timeout or the excluded events made in the range "
            "with no rebuild after them: the sessions before each follow other settings",
            "items": {
                "type": "object",
                "required": ["at", "day", "hour", "old_timeout", "timeout", "label"],
                "properties": {
                    "at": _STR,
                    "day": _STR,
                    "hour": _STR,
                    "local_time": _STR,
                    "old_timeout": _STR,
                    "timeout": _STR,
                    "excluded_changed": {"type": "boolean"},
                    "label": _STR,
                },
            },
        },
    },
}
_WHATIF = {
    "type": "object",
    "required": ["from", "until", "timezone", "timeout_ms", "per_day"],
    "properties": {
        **_SPAN,
        "timeout_ms": {
            "type": "object",
            "required": ["current", "proposed"],
            "properties": {"current": _INT, "proposed": _INT},
        },
        "per_day": {"type": "array", "items": {"type": "object"}},
    },
}
# More of the board (figures.py): each with the period of the same length before it.
_NULLABLE_INT = {"type": "integer", "nullable": True}
_NULLABLE_NUM = {"type": "number", "nullable": True}
_PERIODS = {**_SPAN, "previous_from": _DATE, "previous_until": _DATE}


def _figure(required: list[str], **fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["from", "until", "previous_from", "previous_until", *required],
        "properties": {**_PERIODS, **fields},
    }


_TOTALS = {"type": "object", "required": ["sessions"], "properties": {"sessions": _INT}}
_SPREAD = {
    "type": "object",
    "required": ["count", "mean", "median", "without"],
    "properties": {"count": _INT, "mean": _NULLABLE_NUM, "median": _NULLABLE_INT,
                   "without": _INT},
}  # fmt: skip
_BUCKETS = {"type": "array", "items": {"type": "object"}}
_RANKED = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["name", "sessions", "share", "previous_sessions"],
        "properties": {"name": _STR, "sessions": _INT, "share": _NULLABLE_NUM,
                       "previous_sessions": _INT, "previous_share": _NULLABLE_NUM},
    },
}  # fmt: skip
_GROUP = {"type": "object", "required": ["value", "sessions", "median_length_s", "total_length_s"]}
_FIGURES = {
    "bounce": (
        "bounce rate (sessions of one eligible event) and its trend, with the period before",
        _figure(["current", "previous", "trend", "previous_trend"], grain=_STR,
                current=_TOTALS, previous=_TOTALS, trend=_BUCKETS, previous_trend=_BUCKETS),
    ),
    "events_per_session": (
        "sessions by their number of events, with the period before",
        _figure(["current", "previous", "distribution"], current=_SPREAD, previous=_SPREAD,
                distribution=_BUCKETS),
    ),
    "sessions_per_user": (
        "users by their number of sessions, with the period before",
        _figure(["current", "previous", "distribution"], current=_SPREAD, previous=_SPREAD,
                distribution=_BUCKETS),
    ),
    "interval": (
        "the session interval (previous session's end to this one's start), with the "
        "period before",
        _figure(["current", "previous", "distribution"], current=_SPREAD, previous=_SPREAD,
                distribution=_BUCKETS),
    ),
    "entry_exit": (
        "the most frequent first and last events of sessions, with the period before",
        _figure(["entry", "exit"], current=_TOTALS, previous=_TOTALS, entry=_RANKED,
                exit=_RANKED),
    ),
    "breakdown": (
        "sessions, median length and total time by a property of the first event "
        "(`property`, required), with the period before",
        _figure(["property", "values", "other", "missing"], property=_STR,
                values={"type": "array", "items": _GROUP}, other=_GROUP, missing=_GROUP),
    ),
    "properties": (
        "the properties of the sessions' first events (what a breakdown can be by)",
        _figure(["properties"], properties={"type": "array", "items": {"type": "object"}}),
    ),
}  # fmt: skip
_SETTINGS = {
    "type": "object",
    "required": ["sessions", "timeout", "timeout_ms", "timezone", "excluded", "allowed_origins"],
    "properties": {
        "sessions": {"type": "string", "enum": ["on", "off"]},
        "timeout": _STR,
        "timeout_ms": _INT,
        "timezone": _STR,
        "excluded": {"type": "array", "items": _STR},
        "allowed_origins": {"type": "array", "items": _STR},
    },
}
_SETTINGS_CHANGE = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "sessions_enabled": {"type": "boolean"},
        "timeout": {"type": "string", "description": "90s, 20m, 1h (1m to 24h)"},
        "timezone": {"type": "string", "description": "IANA zone, e.g. Europe/Paris"},
        "excluded": {"type": "array", "items": {"type": "string"}},
        "allowed_origins": {
            "type": "array",
            "items": {"type": "string"},
            "description": 'pages that may send (CORS): "https://example.com", or "*"',
        },
        "rebuild": {"type": "boolean", "description": "re-sessionize history (default false)"},
    },
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    """A required JSON request body."""
    return {"required": True, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "400": _json(_ERROR, "bad input, with what and where"),
    "401": _json(_ERROR, "missing or wrong key"),
    "403": _json(_ERROR, "a web page on an origin the project does not allow (CORS)"),
    "413": _json(_ERROR, "body over 500 KB (or an event over 32 KB)"),
    "503": _json(_ERROR, "not stored now: retry"),
}


def _sent(answer: dict[str, Any], description: str) -> dict[str, Any]:
    """The answers of an ingestion endpoint: `answer` when some event was stored, and when
    none was (400, 413) either it or an error about the whole request."""
    refused = {"anyOf": [answer, _ERROR]}
    return {
        **_ERRORS,
        "200": _json(answer, description),
        "400": _json(refused, "nothing stored: the request, or each of its events, was bad"),
        "413": _json(refused, "body over 500 KB, or each event over 32 KB"),
    }


def _read(summary: str, params: list[str], answer: dict[str, Any]) -> dict[str, Any]:
    """A GET of the read API; `answer` is the schema of its 200 answer."""
    return {
        "get": {
            "summary": summary,
            "security": [{"read": []}],
            "parameters": [
                {"name": p, "in": "query", "required": False, "schema": {"type": "string"}}
                for p in params
            ],
            "responses": {"200": _json(answer, "results"), **_ERRORS},
        }
    }


OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "lull", "version": "0.1.0", "description": "Session analytics API"},
    "components": {
        "securitySchemes": {
            "write": {"type": "http", "scheme": "bearer"},
            "read": {"type": "http", "scheme": "bearer"},
            "admin": {"type": "http", "scheme": "bearer"},
            "segment": {"type": "http", "scheme": "basic"},
        }
    },
    "paths": {
        "/healthz": {
            "get": {
                "summary": "ready",
                "responses": {
                    "200": _json(_HEALTH, "ok"),
                    "503": _json(_HEALTH, "the ingest log cannot be written now"),
                },
            }
        },
        "/api/v1/events": {
            "post": {
                "summary": "send canonical events (a JSON array, or NDJSON)",
                "security": [{"write": []}],
                "requestBody": _body({"type": "array", "items": _EVENT}),
                "responses": _sent(_STORED, "stored (some events may be refused)"),
            },
            **_read(
                "events, newest first",
                ["profile_id", "session_id", "name", "from", "to", "limit"],
                {"type": "array", "items": _EVENT_OUT},
            ),
        },
        "/api/v1/sessions": _read(
            "sessions, newest first",
            ["profile_id", "from", "to", "limit"],
            {"type": "array", "items": _SESSION_OUT},
        ),
        "/api/v1/profiles/{profile_id}": {
            "get": {
                "summary": "a profile with its latest CT Session ID",
                "security": [{"read": []}],
                "parameters": [
                    {
                        "name": "profile_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": _json(_PROFILE, "the profile"),
                    "404": _json(_ERROR, "no such profile"),
                    **_ERRORS,
                },
            }
        },
        "/api/v1/board": _read("the session board", ["days", "until", "source"], _BOARD),
        "/api/v1/whatif": _read(
            "sessions and median length under the current and a proposed timeout",
            ["timeout", "days", "until", "source"],
            _WHATIF,
        ),
        **{
            f"/api/v1/figures/{name}": _read(
                summary,
                ["days", "until", "source", *(["property"] if name == "breakdown" else [])],
                answer,
            )
            for name, (summary, answer) in _FIGURES.items()
        },
        "/api/v1/settings": {
            **_read("the project's session settings", [], _SETTINGS),
            "put": {
                "summary": "change the session settings (and rebuild history if asked)",
                "security": [{"admin": []}],
                "requestBody": _body(_SETTINGS_CHANGE),
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["settings", "rebuilt"],
                            "properties": {
                                "settings": _SETTINGS,
                                "rebuilt": {"type": "object", "nullable": True},
                            },
                        },
                        "the settings, and what was rebuilt",
                    ),
                    **_ERRORS,
                },
            },
        },
        "/v1/batch": {
            "post": {
                "summary": "Segment-compatible batch",
                "security": [{"segment": []}],
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["batch"],
                        "properties": {
                            "batch": {"type": "array", "items": _SEGMENT_MESSAGE},
                            "writeKey": {"type": "string"},
                            "sentAt": {"type": "string"},
                        },
                    }
                ),
                "responses": _sent(_SEGMENT, "stored (some messages may be refused)"),
            }
        },
        "/batch/": {
            "post": {
                "summary": "PostHog-compatible capture (also /e/, /i/v0/e/, /capture/)",
                "requestBody": _body(
                    {
                        "type": "object",
                        "properties": {
                            "api_key": {"type": "string"},
                            "batch": {"type": "array", "items": _POSTHOG_EVENT},
                            "sent_at": {"type": "string"},
                        },
                    }
                ),
                "responses": _sent(_POSTHOG, "stored (some events may be refused)"),
            }
        },
        "/2/httpapi": {
            "post": {
                "summary": "Amplitude-compatible HTTP V2 API (also /batch)",
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["api_key", "events"],
                        "properties": {
                            "api_key": {"type": "string"},
                            "events": {
                                "type": "array",
                                "maxItems": 2000,
                                "items": _AMPLITUDE_EVENT,
                            },
                        },
                    }
                ),
                "responses": {
                    "200": _json(_AMPLITUDE, "all stored"),
                    "400": _json(
                        _ERROR, "code, error, events_with_invalid_fields (none stored); a bad key"
                    ),
                    "413": _json(_ERROR, "body over 500 KB, or an event over 32 KB"),
                    "503": _json(_ERROR, "not stored now: retry"),
                },
            }
        },
        "/1/upload": {
            "post": {
                "summary": "CleverTap-compatible upload (API events: never sessionized)",
                "parameters": [
                    {
                        "name": "X-CleverTap-Account-Id",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "X-CleverTap-Passcode",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                ],
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["d"],
                        "properties": {
                            "d": {"type": "array", "maxItems": 1000, "items": _CLEVERTAP_RECORD}
                        },
                    }
                ),
                "responses": _sent(_CLEVERTAP, "processed (some records may be refused)"),
            }
        },
    },
}

OPENAPI["paths"].update(segment_paths(_json, _body, _ERRORS))  # segments/openapi.py
