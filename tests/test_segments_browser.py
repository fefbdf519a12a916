"""The Segments pages in Chromium against a real `lull serve` with a month of a music app:
build a segment, preview its count, save it, read its profiles and download them; a live
segment on Session Concluded refused on the page. Counts are compared with the read API
(itself compared with the CLI and a reference: test_segments*.py). Screenshots go to
docs/screenshots/segments*.png."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from browser import Watched, chromium, music_month, populate, recent, send_month, shot, sign_in
from browser import watched as watching
from serverproc import LullServer, bearer, now_ms
from test_segments_live import signed_by
from webhook import receiver


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LullServer]:
    """`music`: a month of a music app; ann is its admin, vic a viewer."""
    db = tmp_path_factory.mktemp("segweb") / "lull.duckdb"
    with LullServer(db) as server:
        populate(server, {"music": "on"}, [("ann", "music", "admin"), ("vic", "music", "viewer")])
        server.start()
        send_month(server, "music", music_month(11, 40, recent(3)))
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture
def tab(browser: Browser) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
    w = watching(context.new_page())
    yield w
    context.close()
    assert w.errors == []


def api_count(server: LullServer, definition: Any) -> int:
    keys = server.projects["music"]
    got = server.http.post(
        "/api/v1/segments/count", json=definition, headers=bearer(keys.read_token)
    )
    assert got.status_code == 200, got.text
    return int(got.json()["count"])


def test_build_preview_save_and_download(site: LullServer, tab: Watched, tmp_path: Path) -> None:
    page = tab.page
    sign_in(page, site.base, "ann")
    page.goto(f"{site.base}/p/music/segments")
    expect(page.get_by_role("link", name="Segments")).to_have_attribute("aria-current", "page")
    page.get_by_label("Days").fill("30")
    first = page.locator("li.condition").first
    first.get_by_label("Event", exact=True).fill("Song Played")
    first.get_by_label("at least").fill("3")
    first.get_by_label("where").fill("genre")
    first.get_by_label("value", exact=True).fill("jazz")
    page.get_by_role("button", name="Add a condition").click()
    second = page.locator("li.condition").nth(1)
    second.get_by_label("Condition", exact=True).select_option("session_time")
    second.get_by_label("at least").fill("10")
    definition = json.loads(page.get_by_label("Definition (JSON)").input_value())
    assert definition["days"] == 30 and definition["conditions"] == [
        {"type": "event", "event": "Song Played", "at_least": 3,
         "where": [{"property": "genre", "op": "=", "value": "jazz"}]},
        {"type": "session_time", "at_least": 600},
    ]  # fmt: skip
    want = api_count(site, definition)
    assert want > 0
    page.get_by_role("button", name="Preview the count").click()
    expect(page.locator("#preview-result")).to_contain_text(f"{want:,} profiles")
    page.get_by_label("Name").fill("jazz-fans")
    shot(page, "segments")
    page.get_by_role("button", name="Save segment").click()
    expect(page.locator("h1")).to_contain_text("jazz-fans")
    expect(page.locator("#segment-count")).to_have_text(f"{want:,}")
    expect(page.locator("#segment-profiles tbody tr")).to_have_count(want)
    shot(page, "segment")
    with page.expect_download() as got:
        page.get_by_role("link", name="Download CSV").click()
    rows = list(csv.DictReader(io.StringIO(Path(got.value.path()).read_text())))
    api = site.http.get("/api/v1/segments/jazz-fans/profiles",
                        headers=bearer(site.projects["music"].read_token)).json()  # fmt: skip
    assert [r["profile_id"] for r in rows] == [p["profile_id"] for p in api] and len(rows) == want
    page.get_by_role("link", name="Segments").first.click()
    expect(page.locator("#segments-table")).to_contain_text("jazz-fans")


def test_bad_definitions_and_live_refusals_on_the_page(site: LullServer, tab: Watched) -> None:
    page = tab.page
    sign_in(page, site.base, "ann")
    page.goto(f"{site.base}/p/music/segments")
    page.get_by_label("Definition (JSON)").fill('{"conditions": [{"type": "sessions"}]}')
    page.get_by_role("button", name="Preview the count").click()
    expect(page.locator("#preview-result")).to_have_text(
        "conditions[0]: give 'at_least' or 'at_most' (or both)"
    )
    page.get_by_label("Live (webhook)").check()
    page.get_by_label("When a profile does").fill("Session Concluded")
    page.get_by_label("POST to (webhook)").fill("http://127.0.0.1:9/hook")
    page.get_by_label("Name").fill("ends")
    page.get_by_role("button", name="Save segment").click()
    expect(page.locator("#segment-error")).to_contain_text(
        "'Session Concluded' cannot be used in a live segment"
    )
    expect(page.get_by_label("Live (webhook)")).to_be_checked()  # the form as it was sent
    expect(page.get_by_label("Definition (JSON)")).to_have_value(re.compile("Session Concluded"))
    shot(page, "segments-live-refused")
    keys = site.projects["music"]
    listed = site.http.get("/api/v1/segments", headers=bearer(keys.read_token)).json()
    assert "ends" not in [s["name"] for s in listed]


def test_a_viewer_previews_but_does_not_save(site: LullServer, tab: Watched) -> None:
    page = tab.page
    sign_in(page, site.base, "vic")
    page.goto(f"{site.base}/p/music/segments")
    page.get_by_label("Range").select_option("dates")
    page.get_by_label("From").fill("2026-01-01")
    page.get_by_label("Until").fill(datetime.now(UTC).date().isoformat())  # the project is UTC
    page.get_by_label("Event", exact=True).fill("App Launched")
    page.get_by_role("button", name="Preview the count").click()
    definition = json.loads(page.get_by_label("Definition (JSON)").input_value())
    assert definition["from"] == "2026-01-01" and "days" not in definition
    expect(page.locator("#preview-result")).to_contain_text(
        f"{api_count(site, definition):,} profiles"
    )
    expect(page.get_by_role("button", name="Save segment")).to_have_count(0)


def test_a_live_segment_made_on_the_page_shows_its_deliveries(
    site: LullServer, tab: Watched
) -> None:
    page = tab.page
    sign_in(page, site.base, "ann")
    with receiver() as hook:
        hook.failing = 1
        page.goto(f"{site.base}/p/music/segments")
        page.get_by_label("Live (webhook)").check()
        page.get_by_label("When a profile does").fill("Purchase Completed")
        live = page.locator("#live-builder")
        live.get_by_label("where property").fill("plan")
        live.get_by_label("value").fill("premium")
        page.get_by_label("the first time only").check()
        page.get_by_label("POST to (webhook)").fill(hook.url)
        page.get_by_label("Name").fill("new-premium")
        page.get_by_role("button", name="Save segment").click()
        expect(page.locator("h1")).to_contain_text("new-premium")
        secret = page.locator("#segment-secret").text_content() or ""
        keys = site.projects["music"]
        sent = [{"message_id": "live-1", "profile_id": "u-new", "name": "Purchase Completed",
                 "ts": now_ms(), "properties": {"plan": "premium", "amount": 9.99}}]  # fmt: skip
        assert site.post_events(keys.web, sent).status_code == 200
        (got,) = hook.wait_for(1)
        assert got.json()["event"]["message_id"] == "live-1" and signed_by(secret, got)
        for _ in range(50):  # the log is written just after the attempt
            page.reload()
            if page.locator("#deliveries tbody tr").count() == 2:
                break
            page.wait_for_timeout(100)
        rows = page.locator("#deliveries tbody tr")
        expect(rows).to_have_count(2)
        expect(rows.nth(0)).to_contain_text("delivered")
        expect(rows.nth(1)).to_contain_text("retrying")
        expect(rows.nth(1)).to_contain_text("500")
        shot(page, "segment-live")
