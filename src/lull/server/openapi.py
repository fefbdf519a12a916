"""The OpenAPI description served at /openapi.json."""

from __future__ import annotations

from typing import Any

from lull.model import SOURCES

_TIME = {"oneOf": [{"type": "string", "format": "date-time"}, {"type": "integer"}]}
_EVENT = {
    "type": "object",
    "required": ["message_id", "profile_id", "name", "ts"],
    "properties": {
        "message_id": {"type": "string", "minLength": 1, "maxLength": 256},
        "profile_id": {"type": "string", "minLength": 1, "maxLength": 256},
        "name": {"type": "string", "minLength": 1, "maxLength": 512},
        "ts": _TIME,
        "sent_at": _TIME,
        "source": {"type": "string", "enum": list(SOURCES)},
        "properties": {"type": "object"},
    },
}
_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}}
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
    "413": _json(_ERROR, "body over 500 KB (or an event over 32 KB)"),
    "503": _json(_ERROR, "not stored now: retry"),
}


def _read(summary: str, params: list[str], answer: str = "array") -> dict[str, Any]:
    """A GET of the read API; `answer` is the JSON type of its 200 answer."""
    return {
        "get": {
            "summary": summary,
            "security": [{"read": []}],
            "parameters": [
                {"name": p, "in": "query", "required": False, "schema": {"type": "string"}}
                for p in params
            ],
            "responses": {"200": _json({"type": answer}, "results"), **_ERRORS},
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
        "/healthz": {"get": {"summary": "ready", "responses": {"200": {"description": "ok"}}}},
        "/api/v1/events": {
            "post": {
                "summary": "send canonical events (a JSON array, or NDJSON)",
                "security": [{"write": []}],
                "requestBody": _body({"type": "array", "items": _EVENT}),
                "responses": {"200": _json({"type": "object"}, "stored"), **_ERRORS},
            },
            **_read(
                "events, newest first", ["profile_id", "session_id", "name", "from", "to", "limit"]
            ),
        },
        "/api/v1/sessions": _read("sessions, newest first", ["profile_id", "from", "to", "limit"]),
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
                "responses": {"200": _json({"type": "object"}, "the profile"), **_ERRORS},
            }
        },
        "/api/v1/board": _read("the session board", ["days", "until", "source"], "object"),
        "/api/v1/whatif": _read(
            "sessions and median length under the current and a proposed timeout",
            ["timeout", "days", "until", "source"],
            "object",
        ),
        "/api/v1/settings": {
            **_read("the project's session settings", [], "object"),
            "put": {
                "summary": "change the session settings (and rebuild history if asked)",
                "security": [{"admin": []}],
                "requestBody": _body(_SETTINGS_CHANGE),
                "responses": {
                    "200": _json({"type": "object"}, "the settings, and what was rebuilt"),
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
                            "batch": {"type": "array", "items": {"type": "object"}},
                            "writeKey": {"type": "string"},
                            "sentAt": {"type": "string"},
                        },
                    }
                ),
                "responses": {"200": _json({"type": "object"}, "stored"), **_ERRORS},
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
                            "batch": {"type": "array", "items": {"type": "object"}},
                            "sent_at": {"type": "string"},
                        },
                    }
                ),
                "responses": {"200": _json({"type": "object"}, "stored"), **_ERRORS},
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
                                "items": {"type": "object"},
                            },
                        },
                    }
                ),
                "responses": {
                    "200": _json({"type": "object"}, "code, events_ingested"),
                    "400": _json(
                        {"type": "object"}, "code, error, events_with_invalid_fields (none stored)"
                    ),
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
                            "d": {"type": "array", "maxItems": 1000, "items": {"type": "object"}}
                        },
                    }
                ),
                "responses": {"200": _json({"type": "object"}, "processed"), **_ERRORS},
            }
        },
    },
}
