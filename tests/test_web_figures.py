"""More of the board in real Chromium (templates/_figures.html, figures.js): each figure
shows what the read API answers for the filters on screen, follows the source filter,
is defined one click away, and fits a 390-px phone. Screenshots: docs/screenshots/
figures*.png."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from browser import (
    Watched,
    chromium,
    music_month,
    populate,
    recent,
    send_month,
    shot,
    sign_in,
    watched,
)
from lull.web.format import length
from serverproc import LullServer, bearer

VERSIONS = ("3.1.0", "3.2.0", "3.2.1")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LullServer]:
    """`music`: a month of a music app whose launches carry the app's version, the
    listener's country and plan. ann is its admin."""
    db = tmp_path_factory.mktemp("figures") / "lull.duckdb"
    with LullServer(db) as server:
        populate(server, {"music": "on"}, [("ann", "music", "admin")])
        server.start()
        month = music_month(11, 40, recent(3))
        for i, p in enumerate(month):
            for e in p.events:
                if e["name"] == "App Launched":
                    e["properties"] = {
                        "app_version": VERSIONS[i % 3],
                        "country": p.traits["country"],
                        "plan": p.traits["plan"],
                    }
        send_month(server, "music", month)
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture
def tab(browser: Browser) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    w = watched(context.new_page())
    yield w
    context.close()
    assert w.errors == []


def api(server: LullServer, name: str, **params: str) -> dict[str, Any]:
    got = server.http.get(
        f"/api/v1/figures/{name}", params=params,
        headers=bearer(server.projects["music"].read_token),
    )  # fmt: skip
    assert got.status_code == 200, got.text
    result: dict[str, Any] = got.json()
    return result


def ready(page: Page) -> None:
    expect(page.locator("#more")).to_have_attribute("data-state", "ready", timeout=20_000)


def cells(page: Page, table: str) -> list[list[str]]:
    rows: list[list[str]] = page.evaluate(
        f"Array.from(document.querySelectorAll('#{table} tbody tr'))"
        ".map(r => Array.from(r.cells).map(c => c.textContent))"
    )
    return rows


def pct(r: float | None) -> str:
    return "\u2013" if r is None else f"{100 * r:.1f}%"  # an en dash, as the page writes none


def n(v: int) -> str:
    return f"{v:,}"


def test_the_figures_show_what_the_read_api_answers(site: LullServer, tab: Watched) -> None:
    page = tab.page
    sign_in(page, site.base, "ann")
    page.goto(f"{site.base}/p/music/board")
    ready(page)
    bounce = api(site, "bounce")
    assert bounce["current"]["sessions"] > 300
    expect(page.locator("#v-bounce strong")).to_have_text(pct(bounce["current"]["bounce_rate"]))
    expect(page.locator("#v-bounce")).to_contain_text(
        f"{pct(bounce['previous']['bounce_rate'])} the 30 days before"
    )
    rows = cells(page, "t-bounce")
    assert [r[0] for r in rows] == [p["date"] for p in bounce["trend"]]
    assert [r[1:4] for r in rows] == [
        [n(p["sessions"]), n(p["bounces"]), pct(p["bounce_rate"])] for p in bounce["trend"]
    ]
    assert [r[4] for r in rows] == [pct(p["bounce_rate"]) for p in bounce["previous_trend"]]
    for key, name, what in (("eps", "events_per_session", "sessions"),
                            ("spu", "sessions_per_user", "users"),
                            ("interval", "interval", "sessions")):  # fmt: skip
        f = api(site, name)
        assert f["current"]["count"] > 0, name
        shown = cells(page, f"t-{key}")
        assert [r[1:] for r in shown] == [
            [n(b[what]), n(b[f"previous_{what}"])] for b in f["distribution"]
        ], name
        median = f["current"]["median"]
        expect(page.locator(f"#v-{key} strong")).to_have_text(
            "median " + (length(median) if key == "interval" else str(median))
        )
    ends = api(site, "entry_exit")
    for kind in ("entry", "exit"):
        assert [r[:3] for r in cells(page, f"t-{kind}")] == [
            [e["name"], n(e["sessions"]), pct(e["share"])] for e in ends[kind]
        ], kind
    assert ends["entry"][0]["name"] == "App Launched"
    # the breakdown offers the properties of the first events, and follows the pick
    props = [p["name"] for p in api(site, "properties")["properties"]]
    assert sorted(props) == ["app_version", "country", "plan"]
    options = page.locator("#bd-property option").all_text_contents()
    assert options == props
    page.get_by_label("Property").select_option("app_version")
    ready(page)
    by_version = api(site, "breakdown", property="app_version")
    shown = cells(page, "t-breakdown")
    assert [r[:4] for r in shown] == [
        [v["value"], n(v["sessions"]), length(v["median_length_s"]), length(v["total_length_s"])]
        for v in by_version["values"]
    ]
    assert sorted(r[0] for r in shown) == list(VERSIONS)
    page.locator("#f-breakdown").scroll_into_view_if_needed()
    shot(page, "figures")
    # the source filter narrows every figure
    page.get_by_label("Source", exact=True).select_option("ios")
    page.wait_for_url("**source=ios**")
    ios = api(site, "bounce", source="ios")
    assert 0 < ios["current"]["sessions"] < bounce["current"]["sessions"]
    expect(page.locator("#more")).to_have_attribute(
        "data-for",
        "from=" + bounce["from"] + "&until=" + bounce["until"] + "&source=ios",
        timeout=20_000,
    )
    ready(page)
    expect(page.locator("#v-bounce strong")).to_have_text(pct(ios["current"]["bounce_rate"]))
    rows = cells(page, "t-bounce")
    assert [r[1] for r in rows] == [n(p["sessions"]) for p in ios["trend"]]
    ios_version = api(site, "breakdown", property="app_version", source="ios")
    assert [r[1] for r in cells(page, "t-breakdown")] == [
        n(v["sessions"]) for v in ios_version["values"]
    ]


def test_a_short_range_shows_the_bounce_rate_by_the_hour(site: LullServer, tab: Watched) -> None:
    page = tab.page
    sign_in(page, site.base, "ann")
    bounce = api(site, "bounce", days="2")
    page.goto(f"{site.base}/p/music/board?from={bounce['from']}&until={bounce['until']}")
    ready(page)
    expect(page.locator("#c-bounce-t")).to_have_text("Bounce rate per hour")
    assert [r[0] for r in cells(page, "t-bounce")] == [p["hour"] for p in bounce["trend"]]
    assert len(bounce["trend"]) == 48
    expect(page.locator("#more-vs")).to_contain_text("2 days before the range")


def test_each_new_figure_is_defined_one_click_away(site: LullServer, tab: Watched) -> None:
    page = tab.page
    sign_in(page, site.base, "ann")
    page.goto(f"{site.base}/p/music/board")
    ready(page)
    for label, text in (
        ("Definition of Bounce rate", "exactly one event"),
        ("Definition of the events per session distribution", "how many events"),
        ("Definition of the sessions per user distribution", "how many of those sessions"),
        ("Definition of Session interval", "previous session"),
        ("Definition of Entry and exit events", "first event (entry)"),
        ("Definition of the breakdown", "one property of their first event"),
    ):
        summary = page.get_by_label(label)
        summary.scroll_into_view_if_needed()
        summary.click()
        card = summary.locator("xpath=..").locator("p")
        expect(card).to_be_visible()
        expect(card).to_contain_text(text)
        page.keyboard.press("Escape")
        expect(card).to_be_hidden()


def test_the_figures_fit_a_390_px_phone(site: LullServer, tab: Watched) -> None:
    page = tab.page
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, site.base, "ann")
    page.goto(f"{site.base}/p/music/board")
    ready(page)
    page.get_by_label("Property").select_option("country")
    ready(page)

    def fits(what: str) -> None:
        width = page.evaluate("document.documentElement.scrollWidth")
        wide = page.evaluate(
            "Array.from(document.querySelectorAll('#more, #more *')).filter(e =>"
            " e.checkVisibility() && e.getBoundingClientRect().right > 390)"
            ".slice(0, 5).map(e => e.tagName + '#' + e.id + '.' + e.className)"
        )
        assert width <= 390 and not wide, f"{what} is wider than the phone ({width} px): {wide}"

    fits("the figures")
    for table in ("t-bounce", "t-breakdown"):
        opened = page.locator(f"#{table}").locator("xpath=ancestor::details[1]")
        if opened.count():
            opened.locator("summary").click()
    fits("the figures with their tables open")
    page.get_by_label("Definition of Session interval").scroll_into_view_if_needed()
    page.wait_for_timeout(200)  # (an open card closes when the page scrolls)
    page.get_by_label("Definition of Session interval").click()
    # (ui.js places the card under its "?" when it opens)
    expect(page.locator("#def-interval-dist")).to_have_attribute("style", re.compile("left"))
    fits("a definition open")
    page.keyboard.press("Escape")
    page.locator("#f-bounce").scroll_into_view_if_needed()
    shot(page, "figures-narrow")
