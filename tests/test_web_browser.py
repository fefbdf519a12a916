"""The web pages end to end: a real `lull serve`, real Chromium, events sent through the
HTTP API. Each test saves a screenshot of its page to docs/screenshots/."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Error, Page, Route, expect

from browser import (
    PASSWORD,
    Watched,
    music_month,
    populate,
    recent,
    send_late,
    send_month,
    shot,
    sign_in,
)
from lull.model import format_time
from lull.web.format import length
from serverproc import LullServer, bearer

MIN = 60_000
SENT: dict[str, int] = {}  # events sent to a project of the site


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LullServer]:
    """`music`: a month of a music app (sessions on); `fresh`: sessions never activated.
    ann is admin of both, vic a viewer of music."""
    db = tmp_path_factory.mktemp("web") / "lull.duckdb"
    with LullServer(db) as server:
        populate(
            server,
            {"music": "on", "fresh": None},
            [("ann", "music", "admin"), ("vic", "music", "viewer"), ("ann", "fresh", "admin")],
        )
        server.start()
        month = music_month(7, 60, recent(3))
        SENT["music"] = send_month(server, "music", month)
        SENT["music"] += send_late(server, "music", month[:6], days_ago=9)
        SENT["music"] += len(month)  # each profile's identify call is an Identity Set event
        yield server


def api_board(server: LullServer, project: str, **params: str) -> dict[str, Any]:
    got = server.http.get(
        "/api/v1/board", params=params, headers=bearer(server.projects[project].read_token)
    )
    assert got.status_code == 200, got.text
    result: dict[str, Any] = got.json()
    return result


def headline(page: Page) -> dict[str, str]:
    expect(page.locator("#charts")).to_have_attribute("data-state", "ready")
    ids = ("sessions", "users", "median", "p90", "spu", "eps", "late")
    expect(page.locator("#figures")).to_have_attribute("data-state", "ready")
    return {k: page.locator(f"#hl-{k}").inner_text() for k in ids}


def tooltip(page: Page, chart: str, index: int) -> list[str]:
    """The pointer over point `index` of a chart: its tooltip's title and first line."""
    page.locator(f"#{chart}").scroll_into_view_if_needed()
    box = page.locator(f"#{chart}").bounding_box()
    assert box is not None
    x, y = page.evaluate(
        f"(() => {{ const p = Chart.getChart('{chart}').getDatasetMeta(0).data[{index}];"
        " return [p.x, p.y]; })()"
    )
    page.mouse.move(box["x"] + x, box["y"] + max(y, 5))
    # (wait_for_function would eval a string, which the pages' CSP forbids)
    for _ in range(50):
        if page.evaluate(f"Chart.getChart('{chart}').tooltip.opacity") == 1:
            break
        page.wait_for_timeout(50)
    shown: list[str] = page.evaluate(
        f"(() => {{ const t = Chart.getChart('{chart}').tooltip;"
        " return [t.title[0], t.body[0].lines[0]]; })()"
    )
    return shown


def number(n: int) -> str:
    return f"{n:,}"


def weekday(iso: str) -> str:
    return date.fromisoformat(iso[:10]).strftime("%a")


def test_a_stranger_reaches_only_the_sign_in_page(site: LullServer, tab: Watched) -> None:
    page = tab.page
    for path in ("/", "/p/music/board", "/p/music/settings", "/p/music/events",
                 "/p/music/profile?id=u-1000", "/p/nothing/board"):  # fmt: skip
        page.goto(site.base + path)
        assert page.url.startswith(f"{site.base}/signin?next="), path
        expect(page.get_by_role("heading", name="Sign in to lull")).to_be_visible()
    got = page.request.get(f"{site.base}/web/api/p/music/board")
    assert got.status == 401
    shot(page, "signin")


def test_a_wrong_password_is_refused(site: LullServer, tab: Watched) -> None:
    sign_in(tab.page, site.base, "ann", "not the password")
    expect(tab.page.get_by_role("alert")).to_have_text("wrong name or password")
    assert "/signin" in tab.page.url


def test_the_board_shows_the_same_figures_as_the_read_api(site: LullServer, tab: Watched) -> None:
    page = tab.page
    sign_in(page, site.base, "ann")
    expect(page.get_by_role("heading", name="Your projects")).to_be_visible()
    shot(page, "projects")
    page.get_by_role("link", name="music").click()
    expected = api_board(site, "music")["headline"]
    shown = headline(page)
    assert shown["sessions"] == number(expected["sessions"])
    assert shown["users"] == number(expected["users"])
    assert shown["late"] == number(expected["late_events"]) == "6"
    assert shown["median"] == length(expected["median_length_s"])
    assert shown["p90"] == length(expected["p90_length_s"])
    assert shown["spu"] == f"{expected['sessions_per_user']:,.2f}".rstrip("0").rstrip(".")
    assert shown["eps"] == f"{expected['events_per_session']:,.2f}".rstrip("0").rstrip(".")
    assert expected["sessions"] > 500
    # the table behind the chart of sessions per day holds the read API's days
    per_day = api_board(site, "music")["per_day"]
    rows = page.locator("#t-count tbody tr")
    expect(rows).to_have_count(30)
    assert rows.nth(29).locator("td").text_content() == number(per_day[29]["sessions"])
    shot(page, "board")
    assert tooltip(page, "c-count", 20) == [
        f"{weekday(per_day[20]['date'])} {per_day[20]['date']}",
        f" {number(per_day[20]['sessions'])} sessions",
    ]
    assert (
        tooltip(page, "c-total", 20)[1]
        == f" {length(per_day[20]['total_length_s'])} in all sessions"
    )
    page.get_by_label("Source", exact=True).select_option("ios")
    page.wait_for_url(re.compile(r"source=ios"))
    ios = api_board(site, "music", source="ios")["headline"]
    expect(page.locator("#hl-sessions")).to_have_text(number(ios["sessions"]))
    assert 0 < ios["sessions"] < expected["sessions"]


def test_every_page_fits_a_390_px_phone(site: LullServer, tab: Watched) -> None:
    page = tab.page
    page.set_viewport_size({"width": 390, "height": 844})

    def fits(what: str) -> None:
        width = page.evaluate("document.documentElement.scrollWidth")
        wide = page.evaluate(
            "Array.from(document.querySelectorAll('body *')).filter(e =>"
            " e.getBoundingClientRect().right > 390).slice(0, 5)"
            ".map(e => e.tagName + '#' + e.id + '.' + e.className)"
        )
        assert width <= 390, f"{what} scrolls sideways ({width} px): {wide}"

    page.goto(f"{site.base}/signin")
    fits("sign-in")
    sign_in(page, site.base, "ann")
    fits("projects")
    page.goto(f"{site.base}/p/music/board")
    headline(page)
    fits("board")
    # the filters take less than a third of the first screen
    box = page.locator("#board-filters").bounding_box()
    assert box is not None and box["height"] < 844 / 3, box
    shot(page, "board-narrow")
    page.get_by_label("Definition of Events per session").click()
    fits("board with a definition open")
    page.keyboard.press("Escape")
    page.goto(f"{site.base}/p/music/board?from=2026-11-20&until=2026-11-10")
    fits("board refusing a range")
    for path in ("/p/music/events", "/p/music/events?name=song&page=2", "/p/music/profile",
                 "/p/music/profile?id=u-1001", "/p/nothing/board"):  # fmt: skip
        page.goto(site.base + path)
        fits(path)
    page.goto(f"{site.base}/p/music/settings")
    fits("settings")
    page.get_by_label("Session timeout").fill("45m")
    expect(page.locator("#whatif")).to_have_attribute("data-state", "ready")
    fits("settings with the what-if preview")
    save = page.get_by_role("button", name="Save settings")
    save.scroll_into_view_if_needed()
    box = save.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, box
    shot(page, "settings-narrow")
    page.get_by_label("Rebuild history").check()
    save.click()
    dialog = page.get_by_role("dialog", name="Rebuild the whole history?")
    expect(dialog).to_be_visible()
    fits("the rebuild dialog")
    box = dialog.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, box
    dialog.get_by_role("button", name="Cancel").click()


def test_the_project_menu_closes_on_esc_and_outside_clicks(site: LullServer, tab: Watched) -> None:
    page = tab.page
    sign_in(page, site.base, "ann")  # two projects: a menu to switch
    page.goto(f"{site.base}/p/music/events")
    menu = page.get_by_label("Switch project")
    fresh = page.get_by_role("link", name=re.compile("^fresh"))
    menu.click()
    expect(fresh).to_be_visible()
    page.keyboard.press("Escape")
    expect(fresh).to_be_hidden()
    expect(menu).to_be_focused()
    menu.click()
    expect(fresh).to_be_visible()
    page.locator("h1").click()
    expect(fresh).to_be_hidden()
    menu.click()
    fresh.click()
    assert page.url.endswith("/p/fresh/board")


def test_activating_sessions_makes_the_board_and_it_counts_new_events(
    site: LullServer, tab: Watched
) -> None:
    page = tab.page
    sign_in(page, site.base, "ann", PASSWORD)
    page.goto(f"{site.base}/p/fresh/board")
    expect(page.get_by_role("heading", name="No session board yet")).to_be_visible()
    page.get_by_role("link", name="Activate sessions in Settings").click()
    page.get_by_label("Activate sessions").check()
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_role("status")).to_have_text("Settings saved.")
    page.get_by_role("link", name="Session board").click()
    assert headline(page)["sessions"] == "0"
    # three visits of one listener two hours ago: 0 s, 90 s, and 4 min long
    start = recent(2)
    times = [start, start + 30 * MIN, start + 30 * MIN + 90_000, start + 60 * MIN,
             start + 62 * MIN, start + 64 * MIN]  # fmt: skip
    events = [
        {"message_id": f"f-{i}", "profile_id": "fresh-1", "name": "Song Played",
         "ts": format_time(t)}
        for i, t in enumerate(times)
    ]  # fmt: skip
    assert site.post_events(site.projects["fresh"].ios, events).status_code == 200
    for _ in range(50):
        page.get_by_role("button", name="Show").click()
        if headline(page)["sessions"] == "3":
            break
        page.wait_for_timeout(200)
    assert headline(page) == {"sessions": "3", "users": "1", "median": "1m 30s",
                              "p90": "4m 0s", "spu": "3", "eps": "2", "late": "0"}  # fmt: skip


def test_a_profile_shows_its_latest_ct_session_id(site: LullServer, tab: Watched) -> None:
    page = tab.page
    sign_in(page, site.base, "vic")
    page.get_by_role("link", name="Profiles").click()
    page.get_by_label("Profile id starts with").fill("U-1003")  # any case
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="u-1003", exact=True).click()
    found = site.profile(site.projects["music"], "u-1003", lambda p: bool(p["latest_session_id"]))
    expect(page.locator("#latest-session")).to_have_text(found["latest_session_id"])
    expect(page.get_by_role("row", name=re.compile("plan"))).to_be_visible()
    sessions = page.locator("ol.sessions > li")
    assert sessions.count() >= 1
    assert found["latest_session_id"] in sessions.first.inner_text()
    shot(page, "profile")


def test_the_events_page_filters_and_shows_session_lengths(site: LullServer, tab: Watched) -> None:
    page = tab.page
    sign_in(page, site.base, "vic")
    page.get_by_role("link", name="Events").click()
    expect(page.locator("#events-table tbody tr")).to_have_count(100)
    shot(page, "events", full=False)
    page.get_by_label("Event name").fill("Session Concluded")
    page.get_by_role("button", name="Filter").click()
    first = page.locator("#events-table tbody tr").first
    concluded = site.events(site.projects["music"], name="Session Concluded", limit=1)[0]
    length = concluded["properties"]["Session Length"]
    assert concluded["profile_id"] in first.inner_text()
    shown = first.locator("td").nth(5).inner_text()
    assert shown == (f"{length}s" if length < 60 else f"{length // 60}m {length % 60}s")
    # by CT Session ID: that session's events only, all carrying it
    first.locator("td").nth(4).get_by_role("link").click()
    ids = page.locator("#events-table tbody td:nth-child(5) a")
    assert ids.count() == len(
        site.events(site.projects["music"], session_id=concluded["session_id"])
    )
    assert all(a.get_attribute("title") == concluded["session_id"] for a in ids.all())


def test_a_new_timeout_is_previewed_then_applied_with_a_rebuild(
    site: LullServer, tab: Watched
) -> None:
    page = tab.page
    sign_in(page, site.base, "ann")
    page.goto(f"{site.base}/p/music/settings")
    page.get_by_label("Session timeout").fill("2m")
    preview = page.locator("#whatif")
    expect(preview).to_have_attribute("data-state", "ready")
    total = preview.locator("tfoot tr td")
    current, proposed = (
        int(total.nth(0).inner_text().replace(",", "")),
        int(total.nth(1).inner_text().replace(",", "")),
    )
    assert proposed > current == api_board(site, "music")["headline"]["sessions"]
    expect(page.locator("#whatif-why")).to_contain_text("Why “now” may differ from the board")
    until = preview.locator("tbody tr").last.locator("th").inner_text()
    board = api_board(site, "music", until=until, days="30")["headline"]
    diff = current - board["sessions"]
    expect(page.locator("#whatif-board")).to_have_text(
        f"The board counts {number(board['sessions'])} sessions over these days"
        + (", as “now” does." if diff == 0 else
           f" ({number(abs(diff))} {'fewer' if diff > 0 else 'more'} than “now”; "
           f"{board['late_events']} late events in them).")
    )  # fmt: skip
    shot(page, "settings")
    page.get_by_label("Rebuild history").check()
    page.get_by_role("button", name="Save settings").click()
    dialog = page.get_by_role("dialog", name="Rebuild the whole history?")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(f"All {number(SENT['music'])} stored events of music")
    for change in ("CT Session IDs change", "Late marks are cleared",
                   "Every Session Concluded event is replaced", "cannot be undone"):  # fmt: skip
        expect(dialog).to_contain_text(change)
    expect(dialog.locator("#rebuild-estimate")).to_have_text("under a second")
    shot(page, "settings-rebuild", full=False)
    dialog.get_by_role("button", name="Cancel").click()  # nothing is saved
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("status")).to_have_count(1)  # the preview's, no flash
    assert api_board(site, "music")["headline"]["sessions"] == current
    page.keyboard.press("Escape")
    page.get_by_role("button", name="Save settings").click()
    page.keyboard.press("Escape")  # Esc cancels too
    expect(dialog).to_be_hidden()
    page.get_by_role("button", name="Save settings").click()
    dialog.get_by_role("button", name="Rebuild and save").click()
    expect(page.locator(".flash")).to_contain_text("history rebuilt")
    assert api_board(site, "music")["headline"]["sessions"] == proposed
    page.get_by_role("link", name="Session board").click()
    assert headline(page)["sessions"] == number(proposed)


def test_a_viewer_cannot_reach_settings(site: LullServer, tab: Watched) -> None:
    page = tab.page
    sign_in(page, site.base, "vic")
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    expect(page.get_by_role("link", name="Settings")).to_have_count(0)
    got = page.goto(f"{site.base}/p/music/settings")
    assert got is not None and got.status == 403
    expect(page.get_by_role("alert")).to_contain_text("only an admin")
    got = page.goto(f"{site.base}/p/fresh/board")
    assert got is not None and got.status == 403


def test_keyboard_reaches_the_board_controls(site: LullServer, tab: Watched) -> None:
    page = tab.page
    sign_in(page, site.base, "vic")
    headline(page)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    seen: list[str] = []
    for _ in range(12):  # a date field takes three stops (month, day, year)
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.id || document.activeElement.textContent")
        if not seen or seen[-1] != focused:
            seen.append(focused)
    assert seen[:6] == ["from", "until", "source", "1 day", "7 days", "30 days"]
    page.get_by_role("button", name="7 days").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#from")).to_have_value(re.compile(r"\d{4}-\d{2}-\d{2}"))
    expect(page.locator("#t-count tbody tr")).to_have_count(7)
    until = page.locator("#until").input_value()
    week = api_board(site, "music", until=until, days="7")["headline"]
    expect(page.locator("#hl-sessions")).to_have_text(number(week["sessions"]))
    assert page.url.endswith(f"until={until}") and "from=" in page.url


# -- the board's figures always answer the filters on screen ---------------------------

BOARD_API = re.compile(r"/web/api/p/music/board\?")


def test_a_slow_answer_for_old_filters_never_replaces_a_newer_one(
    site: LullServer, tab: Watched
) -> None:
    """Web asked first and answered last (held in the browser until iOS is shown):
    its answer is dropped, and the menu, the address and the figures all say iOS."""
    page = tab.page
    sign_in(page, site.base, "vic")
    headline(page)
    held: list[Route] = []
    failed: list[str] = []
    page.on("requestfailed", lambda r: failed.append(r.url) if BOARD_API.search(r.url) else None)

    def slow_web(route: Route) -> None:
        if "source=web" in route.request.url:
            held.append(route)  # answered below, after iOS's
        else:
            route.continue_()

    page.route(BOARD_API, slow_web)
    source = page.get_by_label("Source", exact=True)
    source.select_option("web")
    for _ in range(100):
        if held:
            break
        page.wait_for_timeout(20)
    assert len(held) == 1, "the request for web was not sent"
    expect(page.locator("#figures")).to_have_attribute("data-state", "loading")
    source.select_option("ios")
    ios = api_board(site, "music", source="ios")["headline"]
    web = api_board(site, "music", source="web")["headline"]
    assert ios["sessions"] != web["sessions"]
    expect(page.locator("#hl-sessions")).to_have_text(number(ios["sessions"]))
    expect(page.locator("#figures")).to_have_attribute("data-state", "ready")
    with contextlib.suppress(Error):  # the browser may have dropped the request already
        held[0].continue_()  # web's answer, late
    page.wait_for_timeout(500)
    expect(page.locator("#hl-sessions")).to_have_text(number(ios["sessions"]))
    assert source.input_value() == "ios" and "source=ios" in page.url
    assert page.locator("#figures").get_attribute("data-for") == page.url.split("?", 1)[1]
    assert [u for u in failed if "source=web" in u], "web's request was not aborted"


def test_arrowing_through_the_source_menu_sends_one_request(site: LullServer, tab: Watched) -> None:
    page = tab.page
    sign_in(page, site.base, "vic")
    headline(page)
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if BOARD_API.search(r.url) else None)
    page.get_by_label("Source", exact=True).focus()
    for _ in range(3):  # all -> web -> iOS -> Android
        page.keyboard.press("ArrowDown")
    assert "source=android" in page.url  # the address follows at once
    expect(page.locator("#figures")).to_have_attribute("data-state", "loading")
    android = api_board(site, "music", source="android")["headline"]
    expect(page.locator("#hl-sessions")).to_have_text(number(android["sessions"]))
    expect(page.locator("#figures")).to_have_attribute("data-state", "ready")
    assert len(sent) == 1 and "source=android" in sent[0], sent


def test_a_refused_range_hides_the_figures_and_a_bad_link_keeps_its_filters(
    site: LullServer, tab: Watched
) -> None:
    page = tab.page
    sign_in(page, site.base, "vic")
    headline(page)
    expect(page.locator("#board-updated")).to_have_text(re.compile(r"^Updated \d\d:\d\d:\d\d UTC$"))
    page.locator("#from").fill("2026-11-20")
    page.locator("#until").fill("2026-11-10")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#board-error")).to_have_text("the first day comes after the last day")
    expect(page.locator("#figures")).to_have_attribute("data-state", "error")
    expect(page.locator("#hl-sessions")).to_be_hidden()
    expect(page.locator("#board-updated")).to_have_text("")
    assert "from=2026-11-20&until=2026-11-10" in page.url
    # the same filters in a link: the board with them and the reason, not a dead end
    got = page.goto(f"{site.base}/p/music/board?from=2026-11-20&until=2026-11-10&source=ios")
    assert got is not None and got.status == 400
    expect(page.locator("#board-error")).to_have_text("the first day comes after the last day")
    assert page.locator("#from").input_value() == "2026-11-20"
    assert page.get_by_label("Source", exact=True).input_value() == "ios"
    expect(page.locator("#hl-sessions")).to_be_hidden()
    page.locator("#from").fill("2026-11-01")
    page.get_by_role("button", name="Show").click()
    want = api_board(site, "music", until="2026-11-10", days="10", source="ios")["headline"]
    expect(page.locator("#hl-sessions")).to_have_text(number(want["sessions"]))
    expect(page.locator("#board-error")).to_be_hidden()
    shot(page, "board-error-mended", full=False)


def test_a_short_range_is_drawn_by_the_hour(site: LullServer, tab: Watched) -> None:
    page = tab.page
    sign_in(page, site.base, "vic")
    day = api_board(site, "music")["per_day"][-5]["date"]
    page.goto(f"{site.base}/p/music/board?from={day}&until={day}")
    headline(page)
    want = api_board(site, "music", until=day, days="1")
    assert want["grain"] == "hour" and len(want["per_hour"]) == 24
    expect(page.locator("#c-count-t")).to_have_text("Sessions per hour")
    rows = page.locator("#t-count tbody tr")
    expect(rows).to_have_count(24)
    busiest = max(range(24), key=lambda h: want["per_hour"][h]["sessions"])
    hour = want["per_hour"][busiest]
    assert rows.nth(busiest).locator("th").text_content() == (
        f"{weekday(day)} {day} {hour['hour'][11:]} UTC"
    )
    assert rows.nth(busiest).locator("td").text_content() == number(hour["sessions"])
    assert sum(h["sessions"] for h in want["per_hour"]) == want["headline"]["sessions"]
    mean = want["headline"]["sessions"] / 24
    shown = page.evaluate(
        f"(() => {{ const c = Chart.getChart('c-count'); c.tooltip.setActiveElements("
        f"[{{datasetIndex: 0, index: {busiest}}}], {{x: 0, y: 0}}); c.update();"
        " return c.tooltip.body[0].after[0]; })()"
    )
    # as the page writes them (a whole percent, the mean to two decimals): the browser
    # rounds a half up where Python rounds it to even, so compare numbers, not digits
    got = re.fullmatch(r" \+(\d+)% on the range's mean of ([\d,.]+)", shown)
    assert got is not None, shown
    assert abs(int(got[1]) - 100 * (hour["sessions"] - mean) / mean) <= 0.5 + 1e-9, shown
    assert abs(float(got[2].replace(",", "")) - mean) <= 0.005 + 1e-9, shown
    shot(page, "board-hourly", full=False)


def test_tables_sort_and_download_as_csv(site: LullServer, tab: Watched) -> None:
    page = tab.page
    sign_in(page, site.base, "vic")
    headline(page)
    per_day = api_board(site, "music")["per_day"]
    figure = page.locator("figure", has=page.locator("#t-count"))
    figure.get_by_text("Show as a table").click()
    figure.get_by_role("button", name="Sessions").click()
    cells = page.locator("#t-count tbody td")
    counts = sorted(d["sessions"] for d in per_day)
    expect(cells.first).to_have_text(number(counts[0]))
    expect(page.locator("#t-count thead th").nth(1)).to_have_attribute("aria-sort", "ascending")
    figure.get_by_role("button", name="Sessions").click()
    expect(cells.first).to_have_text(number(counts[-1]))
    with page.expect_download() as got:
        figure.get_by_role("button", name="Download CSV").click()
    download = got.value
    assert download.suggested_filename == (
        f"count-{per_day[0]['date']}-to-{per_day[-1]['date']}.csv"
    )
    lines = Path(download.path()).read_text().splitlines()
    assert lines[0] == "Day,Sessions"
    rows = [line.split(",") for line in lines[1:]]
    assert sorted(rows) == sorted([d["date"], str(d["sessions"])] for d in per_day)
    assert [int(n) for _, n in rows] == sorted((d["sessions"] for d in per_day), reverse=True)


def test_each_figure_is_defined_one_click_away(site: LullServer, tab: Watched) -> None:
    page = tab.page
    sign_in(page, site.base, "vic")
    headline(page)
    late = page.get_by_label("Definition of Late events")
    definition = page.locator("#def-late")
    expect(definition).to_be_hidden()
    late.click()
    expect(definition).to_be_visible()
    expect(definition).to_contain_text("arrived after the session")
    page.keyboard.press("Escape")
    expect(definition).to_be_hidden()
    late.click()
    expect(definition).to_be_visible()
    page.locator("h1").click()  # a click elsewhere closes it
    expect(definition).to_be_hidden()
    page.get_by_label("How are lengths bucketed?").click()
    expect(page.get_by_text("sessions of one event")).to_be_visible()


def test_an_empty_range_says_where_the_sessions_are(site: LullServer, tab: Watched) -> None:
    page = tab.page
    sign_in(page, site.base, "vic")
    page.goto(f"{site.base}/p/music/board?from=2020-01-01&until=2020-01-30")
    assert headline(page)["sessions"] == "0"
    where = api_board(site, "music", until="2020-01-30")["data_range"]
    note = page.locator("#board-empty")
    expect(note).to_contain_text(
        f"No session ended from 2020-01-01 to 2020-01-30. Sessions run from {where['first']} "
        f"to {where['last']}."
    )
    note.get_by_role("button", name="Show the last 30 days with sessions").click()
    expect(page.locator("#until")).to_have_value(where["last"])
    headline(page)
    expect(note).to_be_hidden()
    assert f"until={where['last']}" in page.url


# -- Events and Profiles: searches, pages, date ranges ---------------------------------


def test_events_are_searched_by_a_prefix_a_page_at_a_time(site: LullServer, tab: Watched) -> None:
    page = tab.page
    music = site.projects["music"]
    sign_in(page, site.base, "vic")
    page.get_by_role("link", name="Events").click()
    options = page.locator("#event-names option")
    picked = [o.get_attribute("value") for o in options.all()]
    assert {"Session Concluded", "Song Played", "Song Liked", "App Launched"} <= set(picked)
    assert len(picked) == len(set(picked))
    # a page at a time: the second page starts with the read API's 101st event
    newest = site.events(music, limit=200)
    page.get_by_role("link", name="Older →").click()
    assert "page=2" in page.url
    expect(page.get_by_role("navigation", name="Pages of events")).to_contain_text("101\u2013200")
    rows = page.locator("#events-table tbody tr")
    expect(rows).to_have_count(100)
    first = rows.first.locator("time")
    assert first.get_attribute("datetime") == newest[100]["ts"]
    page.get_by_role("link", name="← Newer").click()
    assert rows.first.locator("time").get_attribute("datetime") == newest[0]["ts"]
    # a prefix in any case: "song" finds Song Played and Song Liked
    page.get_by_label("Event name").fill("song")
    page.get_by_role("button", name="Filter").click()
    names = set(page.locator("#events-table tbody td:nth-child(2)").all_inner_texts())
    assert names == {"Song Played", "Song Liked"}, names
    # one day, in the project's zone (UTC here)
    day = newest[150]["ts"][:10]
    page.get_by_label("Event name").fill("")
    page.locator("#f-from").fill(day)
    page.locator("#f-until").fill(day)
    page.get_by_role("button", name="Filter").click()
    times = page.locator("#events-table tbody time").evaluate_all(
        "ts => ts.map(t => t.getAttribute('datetime'))"
    )
    assert times and all(t.startswith(day) for t in times)
    want = site.events(music, **{"from": f"{day}T00:00:00Z", "to": f"{day}T23:59:59.999Z"})
    assert times == [e["ts"] for e in want][: len(times)]
    shot(page, "events", full=False)
    # a bad date in a link keeps the filters and says why
    got = page.goto(f"{site.base}/p/music/events?name=Song&from=2026-13-01")
    assert got is not None and got.status == 400
    expect(page.get_by_role("alert")).to_contain_text("'from' '2026-13-01': expected a date")
    expect(page.get_by_label("Event name")).to_have_value("Song")


def test_profiles_are_listed_searched_and_every_session_reached(
    site: LullServer, tab: Watched
) -> None:
    page = tab.page
    music = site.projects["music"]
    sign_in(page, site.base, "vic")
    page.get_by_role("link", name="Profiles").click()
    rows = page.locator("#profiles-table tbody tr")
    expect(rows).to_have_count(50)  # 60 listeners, 50 a page
    page.get_by_role("link", name="Older →").click()
    expect(rows).to_have_count(10)
    page.get_by_label("Profile id starts with").fill("U-102")
    page.get_by_role("button", name="Search").click()
    expect(rows).to_have_count(10)  # u-1020 to u-1029
    assert all(t.startswith("u-102") for t in rows.locator("td:first-child").all_inner_texts())
    # the profile with the most sessions: all of them, 20 a page, and a summary
    counts = {p: len(site.sessions(music, profile_id=p)) for p in ("u-1000", "u-1001", "u-1002")}
    busiest = max(counts, key=lambda p: counts[p])
    sessions = site.sessions(music, profile_id=busiest)
    assert len(sessions) > 20
    page.goto(f"{site.base}/p/music/profile?id={busiest}")
    summary = page.locator("#profile-summary")
    expect(summary).to_contain_text(f"Sessions{number(len(sessions))}")
    total = sum(s["length_s"] for s in sessions)
    expect(summary).to_contain_text(length(total))
    shown = page.locator("ol.sessions > li")
    expect(shown).to_have_count(20)
    seen = []
    while True:
        seen += [c.inner_text() for c in shown.locator(".session-head code").all()]
        older = page.get_by_role("link", name="Older →")
        if older.count() == 0:
            break
        older.click()
    assert seen == [s["session_id"] for s in sessions]
    # a session's header and its list agree on its events
    page.goto(f"{site.base}/p/music/profile?id={busiest}")
    first = sessions[0]
    head = shown.first.locator(".session-head")
    expect(head).to_contain_text(f"{first['events']} event")
    expect(shown.first.locator("summary")).to_have_text(
        f"{first['events']} event{'s' if first['events'] != 1 else ''}"
        + (" and its Session Concluded" if first["concluded"] else "")
    )
    shot(page, "profile", full=False)
