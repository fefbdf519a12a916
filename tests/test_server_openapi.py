"""The API as its /openapi.json describes it, fuzzed by schemathesis against a real `lull
serve`: never a 5xx; every answer of a declared status, content type and schema; and
whatever was accepted is exported and imported again unchanged.

Requests carry the right keys (each operation's own), so that bodies get past the door and
are judged; the settings are changed in a project of their own, so that the events sent
stay without sessions and their export holds them alone.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from lull.server.openapi import OPENAPI
from lullrun import assert_reimported_unchanged
from serverproc import Keys, LullServer, bearer

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LullServer]:
    with LullServer(tmp_path_factory.mktemp("openapi") / "lull.duckdb") as srv:
        srv.create_project("api")  # sessions off: its export holds what clients sent
        srv.create_project("knobs", sessions="on")  # where the settings are fuzzed
        srv.start()
        yield srv


@pytest.fixture(scope="module")
def api_schema(server: LullServer) -> Any:
    """The document as the server serves it (what a client of the API reads)."""
    return schemathesis.openapi.from_url(f"{server.base}/openapi.json")


# Every operation the document declares, with data that fits it and data that does not.
OPERATIONS = [
    pytest.param(path, method.upper(), mode, id=f"{method.upper()} {path} {mode.value}")
    for path, item in OPENAPI["paths"].items()
    for method, operation in item.items()
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE or {"parameters", "requestBody"} & operation.keys()
]


def credentials(case: Any, api: Keys, knobs: Keys) -> dict[str, str]:
    """The headers (and body key) a client of this operation sends."""
    path, method = case.operation.path, case.operation.method.upper()
    if isinstance(case.body, dict) and "api_key" in case.body:  # PostHog, Amplitude
        case.body["api_key"] = api.web
    if path == "/1/upload":
        return {"X-CleverTap-Account-Id": api.account_id, "X-CleverTap-Passcode": api.passcode}
    if path == "/v1/batch":
        return {"Authorization": "Basic " + base64.b64encode(f"{api.web}:".encode()).decode()}
    if path == "/api/v1/settings":
        return bearer(knobs.admin_key if method == "PUT" else knobs.read_token)
    if path.startswith("/api/v1/") and method == "GET":
        return bearer(api.read_token)
    return bearer(api.web)


@pytest.mark.parametrize(("path", "method", "mode"), OPERATIONS)
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_every_answer_is_as_the_openapi_document_says(
    server: LullServer,
    api_schema: Any,
    path: str,
    method: str,
    mode: GenerationMode,
    data: st.DataObject,
) -> None:
    case = data.draw(api_schema[path][method].as_strategy(generation_mode=mode))
    headers = credentials(case, server.projects["api"], server.projects["knobs"])
    case.call_and_validate(headers=headers, checks=CHECKS)


def test_what_the_fuzz_stored_is_exported_and_imported_unchanged(server: LullServer) -> None:
    server.stop()
    try:
        stored = assert_reimported_unchanged(server.db, "api")
    finally:
        server.start()
    # fitting requests got past the checks, on the native path and the SDK paths alike
    assert {e["source"] for e in stored} == {"web", "api"}, stored[:3]
