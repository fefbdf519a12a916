"""CORS: pages on the origins a project allows can send events from a browser; no other
page can, and nothing but ingestion ever answers another origin."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from lull.store.db import connect
from lullrun import lull
from serverproc import LullServer, bearer, now_ms

SHOP = "https://shop.example"
OTHER = "https://evil.example"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LullServer]:
    db = tmp_path_factory.mktemp("cors") / "lull.duckdb"
    with LullServer(db) as srv:
        srv.create_project("shop", sessions="on")
        changed = lull(db, "--project", "shop", "settings", "--allowed-origins", SHOP)
        assert changed.code == 0, changed.err
        srv.create_project("open", sessions="on")  # the default: any page
        srv.start()
        yield srv


def _event(mid: str) -> dict[str, object]:
    return {"message_id": mid, "profile_id": "u-1", "name": "Viewed", "ts": now_ms()}


def _preflight(server: LullServer, path: str, origin: str, method: str = "POST") -> dict[str, str]:
    got = server.http.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "content-type, authorization",
        },
    )
    return {"status": str(got.status_code), **{k.lower(): v for k, v in got.headers.items()}}


@pytest.mark.parametrize(
    "path", ["/api/v1/events", "/v1/batch", "/v1/t", "/e/", "/i/v0/e/", "/batch/", "/2/httpapi"]
)
def test_a_preflight_from_an_allowed_origin_is_answered(server: LullServer, path: str) -> None:
    got = _preflight(server, path, SHOP)
    assert got["status"] == "204"
    assert got["access-control-allow-origin"] == SHOP
    assert "POST" in got["access-control-allow-methods"]
    assert "authorization" in got["access-control-allow-headers"]
    assert "access-control-allow-credentials" not in got


def test_a_preflight_for_the_read_api_is_refused(server: LullServer) -> None:
    got = _preflight(server, "/api/v1/events", SHOP, method="GET")
    assert got["status"] == "403" and "access-control-allow-origin" not in got
    for path in ("/api/v1/sessions", "/api/v1/settings", "/p/shop/board", "/signin"):
        answer = server.http.options(
            path, headers={"Origin": SHOP, "Access-Control-Request-Method": "GET"}
        )
        assert "access-control-allow-origin" not in answer.headers, path


def test_events_from_an_allowed_page_are_stored_and_readable(server: LullServer) -> None:
    keys = server.projects["shop"]
    got = server.http.post(
        "/api/v1/events", json=[_event("cors-ok")], headers={**bearer(keys.web), "Origin": SHOP}
    )
    assert got.status_code == 200, got.text
    assert got.headers["access-control-allow-origin"] == SHOP
    assert "access-control-allow-credentials" not in got.headers
    assert [e["message_id"] for e in server.events(keys)] == ["cors-ok"]


def test_events_from_a_page_the_project_does_not_allow_are_refused(server: LullServer) -> None:
    keys = server.projects["shop"]
    got = server.http.post(
        "/api/v1/events",
        json=[_event("cors-refused")],
        headers={**bearer(keys.web), "Origin": OTHER},
    )
    assert got.status_code == 403
    assert "origin 'https://evil.example' may not send" in got.json()["error"]
    assert "cors-refused" not in [e["message_id"] for e in server.events(keys)]
    # the same page may send to the project that allows any page
    open_keys = server.projects["open"]
    fine = server.http.post(
        "/api/v1/events",
        json=[_event("cors-open")],
        headers={**bearer(open_keys.web), "Origin": OTHER},
    )
    assert fine.status_code == 200 and fine.headers["access-control-allow-origin"] == OTHER


def test_a_preflight_from_an_origin_no_project_allows_is_refused(server: LullServer) -> None:
    change = server.http.put(
        "/api/v1/settings",
        json={"allowed_origins": ["http://127.0.0.1:9"]},
        headers=bearer(_admin(server)),
    )
    assert change.status_code == 200, change.text
    assert change.json()["settings"]["allowed_origins"] == ["http://127.0.0.1:9"]
    try:
        got = _preflight(server, "/v1/batch", OTHER)
        assert got["status"] == "403" and "access-control-allow-origin" not in got
        assert _preflight(server, "/v1/batch", "http://127.0.0.1:9")["status"] == "204"
    finally:
        server.http.put(
            "/api/v1/settings", json={"allowed_origins": ["*"]}, headers=bearer(_admin(server))
        )


def test_reads_never_answer_another_origin(server: LullServer) -> None:
    keys = server.projects["shop"]
    got = server.http.get("/api/v1/events", headers={**bearer(keys.read_token), "Origin": SHOP})
    assert got.status_code == 200 and "access-control-allow-origin" not in got.headers


def test_every_answer_carries_the_security_headers(server: LullServer) -> None:
    keys = server.projects["shop"]
    for got in (
        server.http.get("/healthz"),
        server.http.get("/openapi.json"),
        server.http.get("/static/format.js"),
        server.http.get("/api/v1/events", headers=bearer(keys.read_token)),
        server.http.post("/api/v1/events", json=[_event("sec-1")], headers=bearer(keys.web)),
        server.http.get("/no/such/page"),
    ):
        assert got.headers["x-content-type-options"] == "nosniff", got.request.url
        assert got.headers["x-frame-options"] == "DENY"
        assert got.headers["referrer-policy"] == "same-origin"


def test_settings_refuse_a_bad_origin(server: LullServer) -> None:
    got = server.http.put(
        "/api/v1/settings",
        json={"allowed_origins": ["https://shop.example/path"]},
        headers=bearer(_admin(server)),
    )
    assert got.status_code == 400
    assert got.json()["error"].startswith("field 'allowed_origins': bad origin")


def _admin(server: LullServer) -> str:
    return server.projects["open"].admin_key


def test_a_store_made_before_allowed_origins_allows_any_page(tmp_path: Path) -> None:
    db = tmp_path / "old.duckdb"
    assert lull(db, "--project", "p", "settings", "--sessions", "on").code == 0
    con = duckdb.connect(str(db))  # as lull 0.1 left it: schema 1, no column
    con.execute("ALTER TABLE projects DROP COLUMN allowed_origins")
    con.execute("UPDATE lull_meta SET value = '1' WHERE key = 'schema_version'")
    con.close()
    connect(str(db)).close()  # migrates
    shown = lull(db, "--project", "p", "settings").json()
    assert shown["allowed_origins"] == ["*"] and shown["sessions"] == "on"
