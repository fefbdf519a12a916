"""The page templates on their own: what the board says when Chart.js was not installed."""

from __future__ import annotations

from starlette.templating import Jinja2Templates

from lull.model import Settings
from lull.store.users import Membership
from lull.web.auth import Access
from lull.web.pages import CHART_JS, HERE


def board(chart_js: bool) -> str:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["q"] = str
    music = Membership("music", 1, "viewer")
    context = {
        "who": Access("vic", [music], music),
        "settings": Settings(sessions_enabled=True),
        "made": True,
        "chart_js": chart_js,
        "first": "2026-10-29",
        "until": "2026-11-27",
        "source": None,
        "page": "board",
        "csrf": "t",
        "flash": None,
    }
    return templates.env.get_template("board.html").render(context)


def test_without_chart_js_the_board_says_to_run_the_set_up() -> None:
    page = board(chart_js=False)
    assert "the set-up was not run" in page and "make setup" in page
    assert "chart.umd.min.js" not in page.split("</main>")[1]  # no script that would 404
    assert 'id="t-count"' in page  # the figures are still there as tables


def test_with_chart_js_the_board_loads_it_from_this_server() -> None:
    page = board(chart_js=True)
    assert '<script src="/static/vendor/chart.umd.min.js"></script>' in page
    assert "make setup" not in page
    assert CHART_JS.is_file(), "run make setup: Chart.js is installed from npm"


def test_board_and_what_if_open_on_the_days_up_to_old_history() -> None:
    from datetime import date

    from lull.model import parse_time
    from lull.web.pages import _latest_day

    old = parse_time("2020-01-10T23:30:00Z", "t")
    paris = Settings(sessions_enabled=True, timezone="Europe/Paris")
    assert _latest_day(old, paris, date(2026, 11, 30), 30) == date(2020, 1, 11)  # local day
    recent = parse_time("2026-11-01T12:00:00Z", "t")
    assert _latest_day(recent, paris, date(2026, 11, 30), 30) is None  # in the 30 days
    assert _latest_day(None, paris, date(2026, 11, 30), 30) is None
