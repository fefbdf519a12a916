"""More of the board in real Chromium (templates/_figures.html, figures.js): each figure
shows what the read API answers for the filters on screen, follows the source filter,
is defined one click away, and fits a 390-px phone. Screenshots: docs/screenshots/
figures*.png."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from playwright.sync_api import Error, Page, Route, expect

from browser import (
    Watched,
    music_month,
    populate,
    recent,
    send_month,
    shot,
    sign_in,
)
from lull.web.format import length
from serverproc import LullServer, bearer

VERSIONS = ("3.1.0", "3.2.0", "3.2.1")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LullServer]:
    """`music`: a month of a music app whose launches carry the app's version, the
    listener's country and plan, and some of whose visits end at the launch (bounces).
    ann is its admin."""
    db = tmp_path_factory.mktemp("figures") / "lull.duckdb"
    with LullServer(db) as server:
        populate(server, {"music": "on"}, [("ann", "music", "admin")])
        server.start()
        month = music_month(11, 40, recent(3), days=50)  # the range and most of the one before
        for p in month:  # some visits end at the launch (bounces), more of them on iOS
            bounce_every = {"ios": 3, "web": 5, "android": 9}[p.source]
            kept, launches, cut = [], 0, False
            for e in p.events:
                if e["name"] == "App Launched":
                    launches += 1
                    cut = launches % bounce_every == 0
                elif cut and e["name"] != "Notification Sent":
                    continue
                kept.append(e)
            p.events = kept
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
    """As the page writes a share: JavaScript's toFixed(1) takes a tie up (6.25 -> 6.3),
    where Python's format takes it to even; an en dash for none."""
    if r is None:
        return "\u2013"
    return f"{Decimal(100 * r).quantize(Decimal('0.1'), ROUND_HALF_UP)}%"


def n(v: int) -> str:
    return f"{v:,}"


def test_the_figures_show_what_the_read_api_answers(site: LullServer, tab: Watched) -> None:
    page = tab.page
    sign_in(page, site.base, "ann")
    page.goto(f"{site.base}/p/music/board")
    ready(page)
    bounce = api(site, "bounce")
    assert bounce["current"]["sessions"] > 300
    assert 0.1 < bounce["current"]["bounce_rate"] < 0.5
    expect(page.locator("#v-bounce strong")).to_have_text(pct(bounce["current"]["bounce_rate"]))
    now, then = bounce["current"]["bounce_rate"], bounce["previous"]["bounce_rate"]
    assert then is not None and bounce["previous"]["sessions"] > 300
    points = pct(abs(now - then))[:-1] + " pts"
    sign = "+" if now > then else "\u2212" if now < then else "\u00b1"
    expect(page.locator("#v-bounce")).to_contain_text(
        f"{pct(then)} the 30 days before ({sign}{points})"
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
        median, before = f["current"]["median"], f["previous"]["median"]
        write = length if key == "interval" else str
        expect(page.locator(f"#v-{key} strong")).to_have_text(f"median {write(median)}")
        assert before is not None, name
        sign = "+" if median > before else "\u2212" if median < before else "\u00b1"
        expect(page.locator(f"#v-{key}")).to_contain_text(
            f"median {write(before)} the 30 days before ({sign}{write(abs(median - before))})"
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


FIGURES_API = re.compile(r"/web/api/p/music/figures/bounce\?")


def test_a_slow_answer_for_old_filters_never_replaces_a_newer_one(
    site: LullServer, tab: Watched
) -> None:
    """The bounce rate for web asked first and answered last (held in the browser until
    iOS is shown): its answer is dropped, and the figures say iOS."""
    page = tab.page
    sign_in(page, site.base, "ann")
    page.goto(f"{site.base}/p/music/board")
    ready(page)
    held: list[Route] = []
    failed: list[str] = []
    page.on("requestfailed", lambda r: failed.append(r.url) if "source=web" in r.url else None)

    def slow_web(route: Route) -> None:
        if "source=web" in route.request.url:
            held.append(route)  # answered below, after iOS's
        else:
            route.continue_()

    page.route(FIGURES_API, slow_web)
    source = page.get_by_label("Source", exact=True)
    source.select_option("web")
    for _ in range(200):
        if held:
            break
        page.wait_for_timeout(20)
    assert len(held) == 1, "the bounce rate for web was not asked for"
    expect(page.locator("#more")).to_have_attribute("data-state", "loading")
    source.select_option("ios")
    ios = api(site, "bounce", source="ios")["current"]["bounce_rate"]
    web = api(site, "bounce", source="web")["current"]["bounce_rate"]
    assert ios != web
    ready(page)
    expect(page.locator("#v-bounce strong")).to_have_text(pct(ios))
    with contextlib.suppress(Error):  # the browser may have dropped the request already
        held[0].continue_()  # web's answer, late
    page.wait_for_timeout(500)
    expect(page.locator("#v-bounce strong")).to_have_text(pct(ios))
    assert page.locator("#more").get_attribute("data-for") == page.url.split("?", 1)[1]
    assert failed, "the requests for web were not aborted"


def test_a_refused_range_hides_the_figures(site: LullServer, tab: Watched) -> None:
    page = tab.page
    sign_in(page, site.base, "ann")
    page.goto(f"{site.base}/p/music/board?from=2026-11-20&until=2026-11-10")
    expect(page.locator("#more")).to_have_attribute("data-state", "error")
    expect(page.locator("#f-bounce")).to_be_hidden()
