"""A change of the session's definition without a rebuild, marked on the board (the web
Settings page and the settings API write the history; a rebuild clears the marks), and
days written one way on every page (YYYY-MM-DD, with the format named when one is not).
Real `lull serve`, real Chromium."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from playwright.sync_api import Page, Request, expect

from browser import Watched, music_month, populate, recent, send_month, shot, sign_in
from serverproc import LullServer, bearer

MARK_RGB = (0xB4, 0x53, 0x09)  # board.js's markColor


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LullServer]:
    """`tunes`: a month of a music app, sessions on (20m, the default); ann its admin."""
    db = tmp_path_factory.mktemp("history") / "lull.duckdb"
    with LullServer(db) as server:
        populate(server, {"tunes": "on"}, [("ann", "tunes", "admin")])
        server.start()
        send_month(server, "tunes", music_month(11, 25, recent(2)))
        settled(server)
        yield server


def settled(server: LullServer) -> None:
    """Wait until the events sent are in sessions (the board's count stops changing): a
    change made before they are applied would hold for them too, and is not marked."""
    before = -1
    for _ in range(240):
        now = board_api(server)["headline"]["sessions"]
        if now == before and now > 0:
            return
        before = now
        time.sleep(0.5)
    raise AssertionError("the server did not apply the events sent")


def board_api(server: LullServer, **params: str) -> dict[str, Any]:
    got = server.http.get(
        "/api/v1/board", params=params, headers=bearer(server.projects["tunes"].read_token)
    )
    assert got.status_code == 200, got.text
    result: dict[str, Any] = got.json()
    return result


def ready(page: Page) -> None:
    expect(page.locator("#figures")).to_have_attribute("data-state", "ready")


def marks(page: Page, chart: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = page.evaluate(
        f"Chart.getChart('{chart}').$marks.map((m) => ({{index: m.index, label: m.label}}))"
    )
    return found


def marked_pixels(page: Page, chart: str, index: int) -> int:
    """Pixels of the mark's colour in the chart's canvas, on the column of point `index`."""
    count: int = page.evaluate(
        f"""(() => {{
          const c = Chart.getChart('{chart}');
          const ratio = c.canvas.width / c.width;
          const x = Math.round(c.scales.x.getPixelForValue({index}) * ratio);
          const data = c.ctx.getImageData(x - 1, 0, 3, c.canvas.height).data;
          let n = 0;
          for (let i = 0; i < data.length; i += 4) {{
            if (Math.abs(data[i] - {MARK_RGB[0]}) < 24 && Math.abs(data[i + 1] - {MARK_RGB[1]}) < 24
                && Math.abs(data[i + 2] - {MARK_RGB[2]}) < 24) n++;
          }}
          return n;
        }})()"""
    )
    return count


def test_a_timeout_change_without_a_rebuild_is_marked_until_history_is_rebuilt(
    site: LullServer, tab: Watched
) -> None:
    page = tab.page
    sign_in(page, site.base, "ann")
    page.goto(f"{site.base}/p/tunes/board")
    ready(page)
    days = board_api(site)["per_day"]
    last = len(days) - 1
    assert marks(page, "c-count") == [] and marked_pixels(page, "c-count", last) == 0
    expect(page.locator("#t-count")).not_to_contain_text("history not rebuilt")

    # the Settings page, without a rebuild; then the settings API, without one either
    page.goto(f"{site.base}/p/tunes/settings")
    page.get_by_label("Session timeout").fill("30m")
    page.get_by_role("button", name="Save settings").click()
    expect(page.locator(".flash")).to_have_text("Settings saved.")
    put = site.http.put(
        "/api/v1/settings",
        json={"timeout": "45m"},
        headers=bearer(site.projects["tunes"].admin_key),
    )
    assert put.status_code == 200, put.text
    today = datetime.now(UTC).date().isoformat()  # the project's zone is UTC

    changes = board_api(site)["settings_changes"]
    labels = ["timeout 20m → 30m, history not rebuilt", "timeout 30m → 45m, history not rebuilt"]
    assert [c["label"] for c in changes] == labels
    assert {c["day"] for c in changes} == {today} and days[last]["date"] == today
    assert changes[0]["at"] <= changes[1]["at"]
    # a range that ends before the change has none
    assert board_api(site, until=days[last - 1]["date"], days="7")["settings_changes"] == []

    page.get_by_role("link", name="Session board").click()
    ready(page)
    for chart in ("c-count", "c-total"):
        assert marks(page, chart) == [{"index": last, "label": f"{today}: {x}"} for x in labels]
        assert marked_pixels(page, chart, last) > 20  # the dashed line is drawn
        assert marked_pixels(page, chart, 0) == 0  # and only there
    # the table behind each chart says the same, with the time in the project's zone
    for table in ("t-count", "t-total"):
        notes = page.locator(f"#{table}").locator("xpath=..").locator("ul.marks li")
        expect(notes).to_have_count(2)
        expect(notes.first).to_have_text(
            re.compile(rf"^Settings changed {today} \d\d:\d\d UTC: {labels[0]}\.$")
        )
    page.locator("#t-count").locator("xpath=..").locator("summary").click()
    row = page.locator("#t-count tbody tr").filter(has_text=today)
    expect(row.locator(".mark")).to_have_count(2)
    shot(page, "board-settings-change", full=False)
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: the short label
    page.reload()
    ready(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert marked_pixels(page, "c-count", last) > 20
    page.set_viewport_size({"width": 1280, "height": 900})

    # one day: the mark on the hour of the change
    page.goto(f"{site.base}/p/tunes/board?from={today}&until={today}")
    ready(page)
    hour = int(changes[0]["hour"][11:13])
    got = marks(page, "c-count")
    assert [m["index"] for m in got] == [hour, int(changes[1]["hour"][11:13])]
    assert got[0]["label"] == f"{changes[0]['local_time'][11:]} UTC: {labels[0]}"
    assert marked_pixels(page, "c-count", hour) > 20

    # a rebuild puts the whole history under one definition: no marks left
    page.goto(f"{site.base}/p/tunes/settings")
    page.get_by_label("Rebuild history").check()
    page.get_by_role("button", name="Save settings").click()
    page.get_by_role("dialog").get_by_role("button", name="Rebuild and save").click()
    expect(page.locator(".flash")).to_contain_text("history rebuilt")
    assert board_api(site)["settings_changes"] == []
    page.get_by_role("link", name="Session board").click()
    ready(page)
    assert marks(page, "c-count") == [] and marked_pixels(page, "c-count", last) == 0
    expect(page.locator("#t-count").locator("xpath=..").locator("ul.marks")).to_be_hidden()


def test_days_are_typed_and_shown_as_yyyy_mm_dd_and_a_wrong_one_names_the_format(
    site: LullServer, tab: Watched
) -> None:
    page = tab.page
    sign_in(page, site.base, "ann")
    page.goto(f"{site.base}/p/tunes/board")
    ready(page)
    for field in ("#from", "#until"):  # not the browser's locale format of type=date
        assert page.locator(field).get_attribute("type") in (None, "text")
        assert re.fullmatch(r"\d{4}-\d\d-\d\d", page.locator(field).input_value())
        assert page.locator(field).get_attribute("placeholder") == "YYYY-MM-DD"
    asked: list[str] = []

    def seen(r: Request) -> None:
        if "/web/api/" in r.url:  # the board's and its other figures' (figures.js)
            asked.append(r.url)

    page.on("request", seen)
    for typed, message in (
        ("11/20/2026", "From “11/20/2026”: expected a date YYYY-MM-DD"),
        ("2026-02-30", "From “2026-02-30”: expected a date YYYY-MM-DD"),
        ("", "From is empty: expected a date YYYY-MM-DD"),
    ):
        page.locator("#from").fill(typed)
        page.get_by_role("button", name="Show").click()
        expect(page.locator("#board-error")).to_have_text(message)
        expect(page.locator("#figures")).to_have_attribute("data-state", "error")
        expect(page.locator("#from")).to_have_attribute("aria-invalid", "true")
    assert asked == []  # refused on the page, not sent
    today = page.locator("#until").input_value()
    page.locator("#from").fill(today)
    page.get_by_role("button", name="Show").click()
    ready(page)
    expect(page.locator("#from")).to_have_attribute("aria-invalid", "false")
    assert [u for u in asked if "/web/api/p/tunes/board?" in u] == [
        f"{site.base}/web/api/p/tunes/board?from={today}&until={today}"
    ]

    # the server says the same of a link's bad day, and keeps it in the field
    got = page.goto(f"{site.base}/p/tunes/board?from=20.11.2026&until=2026-11-30")
    assert got is not None and got.status == 400
    expect(page.locator("#board-error")).to_have_text(
        "'from' '20.11.2026': expected a date YYYY-MM-DD"
    )
    # the Events page: the same fields, the same message
    got = page.goto(f"{site.base}/p/tunes/events?from=11/20/2026")
    assert got is not None and got.status == 400
    expect(page.locator("#events-error")).to_have_text(
        "'from' '11/20/2026': expected a date YYYY-MM-DD"
    )
    assert page.locator("#f-from").input_value() == "11/20/2026"
    assert page.locator("#f-from").get_attribute("type") in (None, "text")
    # every time on the Events page is YYYY-MM-DD HH:MM:SS under a heading that names the zone
    page.goto(f"{site.base}/p/tunes/events")
    expect(page.locator("#events-table thead th").first).to_have_text("Time (UTC)")
    times = page.locator("#events-table tbody time").all_inner_texts()
    assert times and all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", t) for t in times)
