"""The HTML pages: thin handlers that check who asks, read, and render a template."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote
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
from lull.errors import BadInput, LullError, NotFound
from lull.model import Settings, parse_time
from lull.server import reads
from lull.store.events import latest, of_sessions
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
            last = con.execute(
                "SELECT max(last_ts) FROM sessions WHERE project_id = ? AND concluded", [pid]
            ).fetchone()
            return row, get_settings(con, pid), last

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
        if not (params.get("until") or params.get("from")) and last and last[0] is not None:
            # History imported long ago would leave the last 30 days empty: show the 30
            # days up to the latest session instead, and say so.
            latest = datetime.fromtimestamp(last[0] / 1000, ZoneInfo(settings.timezone)).date()
            if latest < until - timedelta(days=days - 1):
                until = latest
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
        settings, events = await self.read(
            lambda con: (get_settings(con, pid), reads.stored_events(con, pid))
        )
        values = {
            "sessions": settings.sessions_enabled,
            "timeout": settings.as_json()["timeout"],
            "timezone": settings.timezone,
            "excluded": "\n".join(settings.excluded),
            "allowed_origins": "\n".join(settings.allowed_origins),
        }
        context = {"page": "settings", "values": values, "current": settings,
                   **_rebuild(events)}  # fmt: skip
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
            events = await self.read(lambda con: reads.stored_events(con, pid))
            context = {"page": "settings", "values": values, "current": current,
                       "error": e.message, **_rebuild(events)}  # fmt: skip
            return self.render(request, "settings.html", context, status=400, who=who)
        request.session["flash"] = _saved(rebuild, report)
        return RedirectResponse(f"/p/{quote(who.project.project, safe='')}/settings", 303)

    async def profile(self, request: Request) -> Response:
        who = await self.access(request)
        assert who.project is not None
        pid, wanted = who.project.project_id, request.query_params.get("id", "").strip()
        context: dict[str, Any] = {"page": "profile", "wanted": wanted}
        status = 200
        if wanted:
            try:
                context.update(await self.read(lambda con: _profile(con, pid, wanted)))
            except NotFound as e:
                context["error"], status = e.message, 404
        return self.render(request, "profile.html", context, status=status, who=who)

    async def events(self, request: Request) -> Response:
        who = await self.access(request)
        assert who.project is not None
        pid = who.project.project_id
        filters = {
            k: request.query_params.get(k, "").strip() for k in ("name", "profile_id", "session_id")
        }
        given = {k: v or None for k, v in filters.items()}

        def look(con: duckdb.DuckDBPyConnection) -> tuple[list[Any], str]:
            found = latest(con, pid, given["name"], given["profile_id"], given["session_id"])
            return found, get_settings(con, pid).timezone

        rows, tz = await self.read(look)
        for e in rows:
            e["local"] = fmt.local_time(e["ts"], tz)
        context = {"page": "events", "rows": rows, "filters": filters, "timezone": tz}
        return self.render(request, "events.html", context, who=who)


# A hash to check a password against when the name is unknown, so a wrong name takes
# as long as a wrong password.
_DUMMY = "$".join(["scrypt", "16384", "8", "1", "A" * 22 + "==", "A" * 43 + "="])


def _next(request: Request, sent: object = None) -> str:
    """Where to go after signing in: a path on this site only."""
    target = sent if isinstance(sent, str) else request.query_params.get("next", "/")
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _board(created: Any, settings: Settings) -> dict[str, Any]:
    """What the board page shows whatever its range."""
    return {
        "page": "board",
        "made": bool(created and created[0] is not None),
        "settings": settings,
        "chart_js": CHART_JS.is_file(),
    }


def _rebuild(events: int) -> dict[str, Any]:
    """What the rebuild dialog says of its cost: the events it reads and about how long."""
    seconds = events / REBUILD_PER_SECOND
    estimate = (
        "under a second" if seconds < 1
        else f"about {math.ceil(seconds)} seconds" if seconds < 90
        else f"about {math.ceil(seconds / 60)} minutes"
    )  # fmt: skip
    return {"events": events, "estimate": estimate}


def _saved(rebuild: bool, report: dict[str, Any]) -> str:
    rebuilt = report.get("rebuilt")
    if not rebuild or not isinstance(rebuilt, dict):
        return "Settings saved."
    return (
        f"Settings saved and history rebuilt: {rebuilt['sessions']:,} sessions from "
        f"{rebuilt['events']:,} events in {rebuilt['seconds']:.1f} s."
    )


def _profile(con: duckdb.DuckDBPyConnection, pid: int, wanted: str) -> dict[str, Any]:
    """A profile, its recent sessions and each one's events placed on a time line."""
    found = reads.profile(con, pid, wanted)
    tz = get_settings(con, pid).timezone
    sessions = reads.sessions(con, pid, {"profile_id": wanted, "limit": "8"})
    events_of = of_sessions(con, pid, wanted, [s["session_id"] for s in sessions])
    for s in sessions:
        first, last = parse_time(s["first_ts"], "first"), parse_time(s["last_ts"], "last")
        span = max(last - first, 1)
        events = events_of[s["session_id"]][:MAX_TIMELINE]
        for e in events:
            e["at"] = round(100 * (parse_time(e["ts"], "ts") - first) / span, 2)
            e["local"] = fmt.local_time(e["ts"], tz)
        s["events_list"] = events
        s["local_first"] = fmt.local_time(s["first_ts"], tz)
        s["local_last"] = fmt.local_time(s["last_ts"], tz)
    found["local_first_seen"] = fmt.local_time(found["first_seen"], tz)
    found["local_last_seen"] = fmt.local_time(found["last_seen"], tz)
    return {"profile": found, "sessions": sessions, "timezone": tz}
