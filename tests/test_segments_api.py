"""Segments through the read API of a real `lull serve`: the same answers as
`lull segment` on the same store (itself tested against a reference: test_segments.py),
CSV downloads, admin-only changes, and clear errors."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from lullrun import lull
from serverproc import LullServer, bearer
from test_segments import LONG, _demo_store


def test_read_api_answers_as_the_cli(tmp_path: Path) -> None:
    db = tmp_path / "lull.duckdb"
    with LullServer(db) as srv:
        keys = srv.create_project("shop", sessions="on")
        _demo_store(db, tmp_path, "shop")
        shop = ("--project", "shop", "segment")
        assert lull(db, *shop, "create", "long", "--definition", json.dumps(LONG)).code == 0
        want = lull(db, *shop, "profiles", "long").json()
        srv.start()
        read, admin = bearer(keys.read_token), bearer(keys.admin_key)
        listed = srv.http.get("/api/v1/segments", headers=read).json()
        assert [s["name"] for s in listed] == ["long"]
        assert srv.http.get("/api/v1/segments/long/count", headers=read).json()["count"] == 1
        got = srv.http.get("/api/v1/segments/long/profiles", headers=read).json()
        assert got == want
        text = srv.http.get("/api/v1/segments/long/profiles?format=csv", headers=read)
        assert text.headers["content-type"].startswith("text/csv")
        assert "attachment" in text.headers["content-disposition"]
        assert [r["profile_id"] for r in csv.DictReader(io.StringIO(text.text))] == ["u1"]
        preview = {**LONG, "conditions": [{**LONG["conditions"][0], "at_least": 1}]}
        counted = srv.http.post("/api/v1/segments/count", json=preview, headers=read)
        assert counted.json()["count"] == 2  # u1 and u2
        # changes: admins only; errors name the field
        body = {"name": "some", "definition": preview}
        assert srv.http.post("/api/v1/segments", json=body, headers=read).status_code == 401
        assert srv.http.post("/api/v1/segments", json=body, headers=admin).status_code == 201
        assert srv.http.get("/api/v1/segments/some/count", headers=read).json()["count"] == 2
        bad = {"name": "bad", "definition": {"conditions": [{"type": "event", "event": "A",
                                                              "at_least": -1}]}}  # fmt: skip
        refused = srv.http.post("/api/v1/segments", json=bad, headers=admin)
        assert refused.status_code == 400
        assert refused.json()["error"].startswith("conditions[0].at_least: must be a whole")
        assert srv.http.get("/api/v1/segments/nope", headers=read).status_code == 404
        paged = srv.http.get("/api/v1/segments/some/profiles?limit=1&offset=1", headers=read)
        assert [p["profile_id"] for p in paged.json()] == ["u2"]
        assert (
            srv.http.get("/api/v1/segments/some/profiles?limit=0", headers=read).status_code == 400
        )
        assert srv.http.delete("/api/v1/segments/some", headers=admin).status_code == 200
        assert srv.http.get("/api/v1/segments/some", headers=read).status_code == 404
