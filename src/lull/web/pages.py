"""The HTML pages: thin handlers that check who asks, read, and render a template."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

import duckdb
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from lull.board import check_source
from lull.errors import BadInput, LullError
from lull.model import SESSION_CONCLUDED, Settings, parse_time
from lull.server import reads
from lull.store.events import latest, names, of_sessions
from lull.store.projects import get_settings
from lull.store.users import end_sessions, password_hash, verify_password
from lull.web import format as fmt
from lull.web.auth import (
    Access,
    SignedOut,
    Throttle,
    check_csrf,
    csrf_token,
    on_project,
    signed_in,
    start_session,
)
from lull.web.data import span
from lull.web.forms import settings_from_form

if TYPE_CHECKING:
    from lull.server.app import Server

HERE = Path(__file__).parent
CHART_JS = HERE / "static" / "vendor" / "chart.umd.min.js"
Page = Callable[[Request], Awaitable[Response]]
# Scripts only from this site (no inline ones), no framing, no caching of private pages.
HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}
T = TypeVar("T")
MAX_TIMELINE = 300  # events drawn a session on the profile page
EVENTS_A_PAGE = 100
PROFILES_A_PAGE = 50
PROFILE_SESSIONS = 20  # a profile's sessions a page
MAX_PAGE = 1000  # past it, a narrower filter (events: at most 100,000 newest skipped)
# Events a rebuild gets through in a second, for its estimate: docs/benchmarks.md
# measured 760,000 on two idle cores; a busy machine may do half as well.
REBUILD_PER_SECOND = 300_000


class Pages:
    """Every page of the web app, sharing the server, the templates and the brake."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.templates.env.filters["duration"] = fmt.length
        self.templates.env.filters["q"] = lambda v: quote(str(v), safe="")
        # Guessing one account's password is stopped after a few tries; one address
        # trying many accounts (or many people behind one proxy) after more.
        self.by_name = Throttle(limit=5)
        self.by_address = Throttle(limit=30)

    # -- helpers ---------------------------------------------------------------------

    async def read(self, query: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        return await run_in_threadpool(lambda: query(self.server.reader()))

    def render(
        self,
        request: Request,
        name: str,
        context: dict[str, Any],
        status: int = 200,
        who: Access | None = None,
    ) -> Response:
        flash = request.session.pop("flash", None) if "user" in request.session else None
        base = {"csrf": csrf_token(request), "who": who, "flash": flash}
        return self.templates.TemplateResponse(
            request,
            name,
            {**base, **context},
            status_code=status,
            headers=HEADERS,
        )

    def guarded(self, handler: Page) -> Page:
        """Signed-out visitors go to the sign-in page; other errors become an error page
        with their status and message (never a bare 500 for bad input)."""

        async def page(request: Request) -> Response:
            try:
                return await handler(request)
            except SignedOut:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/signin?next={quote(target, safe='')}", 303)
            except LullError as e:
                who = None
                if isinstance(request.session.get("user"), str):
                    try:
                        who = await self.read(lambda con: signed_in(request, con))
                    except LullError:
                        who = None
                return self.render(
                    request, "error.html", {"message": e.message}, status=e.status, who=who
                )

        return page

    async def form(self, request: Request) -> FormData:
        try:
            form = await request.form(max_files=0, max_fields=50, max_part_size=64 * 1024)
        except (MultiPartException, HTTPException, ValueError) as e:
            raise BadInput(f"the form could not be read: {e}") from None
        check_csrf(request, form.get("csrf"))
        return form

    def read_only(self) -> str | None:
        """Why the settings cannot be changed here, if they cannot (`lull serve --lake`:
        server/lake.py's engine says why)."""
        why = getattr(self.server.engine, "read_only", None)
        return why if isinstance(why, str) else None

    async def access(self, request: Request, admin: bool = False) -> Access:
        project = request.path_params["project"]
        return await self.read(lambda con: on_project(request, con, project, admin=admin))

    # -- sign-in ---------------------------------------------------------------------

    async def signin_page(self, request: Request) -> Response:
        if isinstance(request.session.get("user"), str):  # signed in already
            return RedirectResponse(_next(request), 303)
        return self.render(request, "signin.html", {"next": _next(request), "name": ""})

    async def signin(self, request: Request) -> Response:
        form = await self.form(request)
        name = str(form.get("name", "")).strip()
        password = str(form.get("password", ""))
        address = request.client.host if request.client else "?"
        self.by_name.check(name)
        self.by_address.check(address)
        stored = await self.read(lambda con: password_hash(con, name))
        ok = await run_in_threadpool(
            lambda: verify_password(password, stored or _DUMMY) and stored is not None
        )
        if not ok:
            self.by_name.failed(name)
            self.by_address.failed(address)
            context = {"next": _next(request), "name": name, "error": "wrong name or password"}
            return self.render(request, "signin.html", context, status=401)
        self.by_name.succeeded(name)
        start_session(request, name)
        return RedirectResponse(_next(request, form.get("next")), 303)

    async def signout(self, request: Request) -> Response:
        await self.form(request)
        name = request.session.get("user")
        if isinstance(name, str):  # a copy of this cookie must not open anything either
            await self.read(lambda con: end_sessions(con, name))
        request.session.clear()
        return RedirectResponse("/signin", 303)

    # -- home and the project picker -------------------------------------------------

    async def home(self, request: Request) -> Response:
        who = await self.read(lambda con: signed_in(request, con))
        if len(who.projects) == 1:
            return RedirectResponse(f"/p/{quote(who.projects[0].project, safe='')}/board", 303)
        return self.render(request, "projects.html", {}, who=who)

    # -- a project's pages -----------------------------------------------------------

    async def board(self, request: Request) -> Response:
        who = await self.access(request)
        assert who.project is not None
        pid = who.project.project_id

        def look(con: duckdb.DuckDBPyConnection) -> tuple[Any, Any, Any]:
            made = con.execute("SELECT board_created_at FROM projects WHERE id = ?", [pid])
            row = made.fetchone()  # read to the end before the next statement
            return row, get_settings(con, pid), _last_session(con, pid)

        created, settings, last = await self.read(look)
        params = dict(request.query_params)
        note = None
        try:
            until, days = span(params, settings)
            source = check_source(params.get("source") or None)
        except BadInput as e:
            # A bad range in a link: the board with the filters as given and the reason,
            # so they can be mended here (not a dead-end page).
            context = {
                "error": e.message,
                "first": params.get("from", ""),
                "until": params.get("until", ""),
                "source": params.get("source") or None,
            }
            return self.render(request, "board.html", {**context, **_board(created, settings)},
                               status=e.status, who=who)  # fmt: skip
        moved = _latest_day(last, settings, until, days)
        if not (params.get("until") or params.get("from")) and moved is not None:
            until = moved
            note = f"No sessions in the last {days} days: the {days} days up to the latest."
        context = {
            "note": note,
            "first": (until - timedelta(days=days - 1)).isoformat(),
            "until": until.isoformat(),
            "source": source,
            **_board(created, settings),
        }
        return self.render(request, "board.html", context, who=who)

    async def settings_page(self, request: Request) -> Response:
        who = await self.access(request, admin=True)
        assert who.project is not None
        pid = who.project.project_id
        settings = await self.read(lambda con: get_settings(con, pid))
        values = {
            "sessions": settings.sessions_enabled,
            "timeout": settings.as_json()["timeout"],
            "timezone": settings.timezone,
            "excluded": "\n".join(settings.excluded),
            "allowed_origins": "\n".join(settings.allowed_origins),
        }
        more = await self.read(lambda con: _settings_facts(con, pid, settings))
        more["read_only"] = self.read_only()
        context = {"page": "settings", "values": values, "current": settings, **more}
        return self.render(request, "settings.html", context, who=who)

    async def settings_save(self, request: Request) -> Response:
        who = await self.access(request, admin=True)
        assert who.project is not None
        pid = who.project.project_id
        form = await self.form(request)
        current = await self.read(lambda con: get_settings(con, pid))
        try:
            new, rebuild = settings_from_form(form, current)
            report = await asyncio.wrap_future(
                self.server.engine.change_settings(pid, new, rebuild=rebuild)
            )
        except BadInput as e:  # the form's, or the writer's (a rebuild with sessions off)
            values: dict[str, object] = {
                k: form.get(k, "") for k in ("timeout", "timezone", "excluded", "allowed_origins")
            }
            values["sessions"] = form.get("sessions") == "on"
            more = await self.read(lambda con: _settings_facts(con, pid, current))
            more["read_only"] = self.read_only()
            context = {"page": "settings", "values": values, "current": current,
                       "error": e.message, **more}  # fmt: skip
            return self.render(request, "settings.html", context, status=400, who=who)
        request.session["flash"] = _saved(rebuild, report)
        return RedirectResponse(f"/p/{quote(who.project.project, safe='')}/settings", 303)

    async def profile(self, request: Request) -> Response:
        who = await self.access(request)
        assert who.project is not None
        pid, wanted = who.project.project_id, request.query_params.get("id", "").strip()
        context: dict[str, Any] = {"page": "profile", "wanted": wanted}
        status = 200
        try:
            page = _page_number(request.query_params.get("page"))
            if wanted:
                context.update(await self.read(lambda con: _profile(con, pid, wanted, page)))
                context["pager"] = _pager(request, page, context.pop("more"),
                                          PROFILE_SESSIONS, len(context["sessions"]))  # fmt: skip
            else:
                search = request.query_params.get("q", "").strip()
                found = await self.read(lambda con: _profile_list(con, pid, search, page))
                context.update(found, search=search)
                context["pager"] = _pager(request, page, context.pop("more"),
                                          PROFILES_A_PAGE, len(context["profiles"]))  # fmt: skip
        except LullError as e:  # NotFound, or a bad page: the search stays on the page
            context["error"], status = e.message, e.status
        return self.render(request, "profile.html", context, status=status, who=who)

    async def events(self, request: Request) -> Response:
        who = await self.access(request)
        assert who.project is not None
        pid = who.project.project_id
        keys = ("name", "profile_id", "session_id", "from", "until")
        filters = {k: request.query_params.get(k, "").strip() for k in keys}
        given = {k: v or None for k, v in filters.items()}

        def look(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
            tz = get_settings(con, pid).timezone
            out: dict[str, Any] = {"timezone": tz, "names": names(con, pid), "rows": []}
            try:
                page = _page_number(request.query_params.get("page"))
                lo, hi = _day_bounds(given["from"], given["until"], tz)
                found = latest(con, pid, given["name"], given["profile_id"], given["session_id"],
                               EVENTS_A_PAGE + 1, lo, hi, prefix=True,
                               offset=(page - 1) * EVENTS_A_PAGE)  # fmt: skip
            except BadInput as e:  # a bad date or page: the filters stay, with the reason
                return out | {"error": e.message}
            for event in found:
                event["local"] = fmt.local_time(event["ts"], tz)
            rows = found[:EVENTS_A_PAGE]
            return out | {"rows": rows,
                          "pager": _pager(request, page, len(found) > EVENTS_A_PAGE,
                                          EVENTS_A_PAGE, len(rows))}  # fmt: skip

        context = {"page": "events", "filters": filters, **await self.read(look)}
        status = 400 if "error" in context else 200
        return self.render(request, "events.html", context, status=status, who=who)


# A hash to check a password against when the name is unknown, so a wrong name takes
# as long as a wrong password.
_DUMMY = "$".join(["scrypt", "16384", "8", "1", "A" * 22 + "==", "A" * 43 + "="])


def _next(request: Request, sent: object = None) -> str:
    """Where to go after signing in: a path on this site only."""
    target = sent if isinstance(sent, str) else request.query_params.get("next", "/")
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _last_session(con: duckdb.DuckDBPyConnection, pid: int) -> int | None:
    """The last event time of the project's latest concluded session (ms), if any."""
    row = con.execute(
        "SELECT max(last_ts) FROM sessions WHERE project_id = ? AND concluded", [pid]
    ).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def _latest_day(last: int | None, settings: Settings, until: date, days: int) -> date | None:
    """The day of the latest session when it lies before the `days` days up to `until`:
    history imported long ago would leave those days empty, so the board (and the
    what-if) open on the days up to it instead."""
    if last is None:
        return None
    latest = datetime.fromtimestamp(last / 1000, ZoneInfo(settings.timezone)).date()
    return latest if latest < until - timedelta(days=days - 1) else None


def _board(created: Any, settings: Settings) -> dict[str, Any]:
    """What the board page shows whatever its range."""
    return {
        "page": "board",
        "made": bool(created and created[0] is not None),
        "settings": settings,
        "chart_js": CHART_JS.is_file(),
    }


def _settings_facts(con: duckdb.DuckDBPyConnection, pid: int, settings: Settings) -> dict[str, Any]:
    """What the Settings page says besides the settings: the rebuild's cost (the events
    it reads, about how long) and the days the what-if previews (those the board opens
    on)."""
    events = reads.stored_events(con, pid)
    today = datetime.now(ZoneInfo(settings.timezone)).date()
    until = _latest_day(_last_session(con, pid), settings, today, 30) or today
    seconds = events / REBUILD_PER_SECOND
    estimate = (
        "under a second" if seconds < 1
        else f"about {math.ceil(seconds)} seconds" if seconds < 90
        else f"about {math.ceil(seconds / 60)} minutes"
    )  # fmt: skip
    return {"events": events, "estimate": estimate, "whatif_until": until.isoformat()}


def _saved(rebuild: bool, report: dict[str, Any]) -> str:
    rebuilt = report.get("rebuilt")
    if not rebuild or not isinstance(rebuilt, dict):
        return "Settings saved."
    return (
        f"Settings saved and history rebuilt: {rebuilt['sessions']:,} sessions from "
        f"{rebuilt['events']:,} events in {rebuilt['seconds']:.1f} s."
    )


def _page_number(raw: str | None) -> int:
    """A `page` parameter: 1 (the newest) to MAX_PAGE."""
    if raw is None or raw == "":
        return 1
    n = reads.whole(raw)
    if n is None or not 1 <= n <= MAX_PAGE:
        raise BadInput(f"'page' must be a whole number from 1 to {MAX_PAGE}")
    return n


def _pager(request: Request, page: int, more: bool, size: int, shown: int) -> dict[str, Any]:
    """Links to the newer and older pages, with the request's other parameters."""

    def to(n: int) -> str:
        params = {k: v for k, v in request.query_params.items() if k != "page" and v}
        return "?" + urlencode({**params, **({"page": str(n)} if n > 1 else {})})

    first = (page - 1) * size + 1
    return {
        "newer": to(page - 1) if page > 1 else None,
        "older": to(page + 1) if more and page < MAX_PAGE else None,
        "first": first,
        "last": first + shown - 1,
    }


def _day_bounds(first: str | None, last: str | None, tz: str) -> tuple[int | None, int | None]:
    """The days `first` to `last` (YYYY-MM-DD, either may be missing) in zone `tz` as
    epoch ms: from the first's midnight to just before the midnight after the last."""
    zone = ZoneInfo(tz)

    def midnight(text: str, what: str, after: int) -> int:
        try:
            day = date.fromisoformat(text) + timedelta(days=after)
        except (ValueError, OverflowError):
            raise BadInput(f"{what} {text!r}: expected a date YYYY-MM-DD") from None
        if not 1970 <= day.year <= 9999:
            raise BadInput(f"{what} {text!r}: pick a day from 1970 to 9999")
        return int(datetime.combine(day, time(), zone).timestamp() * 1000)

    lo = None if first is None else midnight(first, "'from'", 0)
    hi = None if last is None else midnight(last, "'until'", 1) - 1
    if lo is not None and hi is not None and lo > hi:
        raise BadInput("the first day comes after the last day")
    return lo, hi


def _profile_list(
    con: duckdb.DuckDBPyConnection, pid: int, search: str, page: int
) -> dict[str, Any]:
    """A page of the profiles whose id starts with `search`, latest seen first."""
    tz = get_settings(con, pid).timezone
    found = reads.profiles(con, pid, search, PROFILES_A_PAGE + 1, (page - 1) * PROFILES_A_PAGE)
    for p in found:
        p["local_first_seen"] = fmt.local_time(p["first_seen"], tz)
        p["local_last_seen"] = fmt.local_time(p["last_seen"], tz)
    return {"profiles": found[:PROFILES_A_PAGE], "more": len(found) > PROFILES_A_PAGE,
            "timezone": tz}  # fmt: skip


def _profile(con: duckdb.DuckDBPyConnection, pid: int, wanted: str, page: int) -> dict[str, Any]:
    """A profile, a summary of its sessions, and a page of them, each one's events
    placed on a time line."""
    found = reads.profile(con, pid, wanted)
    tz = get_settings(con, pid).timezone
    params = {"profile_id": wanted, "limit": str(PROFILE_SESSIONS + 1)}
    sessions = reads.sessions(con, pid, params, offset=(page - 1) * PROFILE_SESSIONS)
    more, sessions = len(sessions) > PROFILE_SESSIONS, sessions[:PROFILE_SESSIONS]
    summary = reads.profile_summary(con, pid, wanted)
    for k in ("first_ts", "last_ts"):
        summary["local_" + k] = summary[k] and fmt.local_time(summary[k], tz)
    events_of = of_sessions(con, pid, wanted, [s["session_id"] for s in sessions])
    for s in sessions:
        first, last = parse_time(s["first_ts"], "first"), parse_time(s["last_ts"], "last")
        span = max(last - first, 1)
        events = events_of[s["session_id"]][:MAX_TIMELINE]
        for e in events:
            e["at"] = round(100 * (parse_time(e["ts"], "ts") - first) / span, 2)
            e["local"] = fmt.local_time(e["ts"], tz)
        s["events_list"] = events
        # the session's own events, and its Session Concluded, said apart
        s["shown"] = sum(1 for e in events if e["name"] != SESSION_CONCLUDED)
        s["local_first"] = fmt.local_time(s["first_ts"], tz)
        s["local_last"] = fmt.local_time(s["last_ts"], tz)
    found["local_first_seen"] = fmt.local_time(found["first_seen"], tz)
    found["local_last_seen"] = fmt.local_time(found["last_seen"], tz)
    return {"profile": found, "sessions": sessions, "timezone": tz, "summary": summary,
            "more": more}  # fmt: skip
