"""The segments' part of /openapi.json (server/openapi.py adds it to its paths)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_STR = {"type": "string"}
_TIME = {"type": "string", "format": "date-time"}
_ERROR = {"type": "object", "required": ["error"], "properties": {"error": _STR}}
SEGMENT = {
    "type": "object",
    "required": ["name", "kind", "definition", "created_at"],
    "properties": {
        "name": _STR,
        "kind": {"type": "string", "enum": ["past", "live"]},
        "definition": {"type": "object", "description": "docs/segments.md"},
        "created_at": _TIME,
        "webhook": _STR,
        "secret": {"type": "string", "description": "only when made: signs each delivery"},
        "deliveries": {"type": "array", "items": {"type": "object"}},
    },
}
COUNT = {
    "type": "object",
    "required": ["count", "from", "until", "timezone"],
    "properties": {"count": {"type": "integer"}, "from": _TIME, "until": _TIME, "timezone": _STR},
}
PROFILE = {
    "type": "object",
    "required": ["profile_id", "first_seen", "last_seen", "properties"],
    "properties": {"profile_id": _STR, "first_seen": _TIME, "last_seen": _TIME,
                   "properties": {"type": "object"}},
}  # fmt: skip
_NAME = {"name": "name", "in": "path", "required": True, "schema": _STR}


def paths(
    json_: Callable[[dict[str, Any], str], dict[str, Any]],
    body: Callable[[dict[str, Any]], dict[str, Any]],
    errors: dict[str, Any],
) -> dict[str, Any]:
    """The paths, built with server/openapi.py's helpers (an answer, a body, the errors)."""
    missing = {"404": json_(_ERROR, "no segment of that name"), **errors}

    def op(summary: str, who: str, answers: dict[str, Any], **more: Any) -> dict[str, Any]:
        return {"summary": summary, "security": [{who: []}], "responses": answers, **more}

    query = [
        {"name": p, "in": "query", "required": False, "schema": _STR}
        for p in ("limit", "offset", "format")
    ]
    return {
        "/api/v1/segments": {
            "get": op("the project's segments", "read",
                      {"200": json_({"type": "array", "items": SEGMENT}, "by name"), **errors}),
            "post": op("save a segment (a live one's answer holds its signing secret)", "admin",
                       {"201": json_(SEGMENT, "saved"), **errors},
                       requestBody=body({"type": "object", "required": ["name", "definition"],
                                         "properties": {"name": _STR,
                                                        "definition": {"type": "object"}}})),
        },
        "/api/v1/segments/count": {
            "post": op("count the profiles of an unsaved past-behaviour definition", "read",
                       {"200": json_(COUNT, "how many, over which range"), **errors},
                       requestBody=body({"type": "object"})),
        },
        "/api/v1/segments/{name}": {
            "get": op("a segment (a live one with its latest deliveries)", "read",
                      {"200": json_(SEGMENT, "the segment"), **missing}, parameters=[_NAME]),
            "delete": op("delete a segment", "admin",
                         {"200": json_({"type": "object"}, "deleted"), **missing},
                         parameters=[_NAME]),
        },
        "/api/v1/segments/{name}/count": {
            "get": op("how many profiles a past-behaviour segment holds now", "read",
                      {"200": json_(COUNT, "how many"), **missing}, parameters=[_NAME]),
        },
        "/api/v1/segments/{name}/profiles": {
            "get": op("a past-behaviour segment's profiles by id (format=csv: a CSV download)",
                      "read",
                      {"200": {"description": "the profiles",
                               "content": {"application/json": {"schema": {"type": "array",
                                                                           "items": PROFILE}},
                                           "text/csv": {"schema": _STR}}},
                       **missing},
                      parameters=[_NAME, *query]),
        },
    }  # fmt: skip
