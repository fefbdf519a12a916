"""The web app's routes, mounted into the server's Starlette app (server/app.py)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from lull.store.db import transaction
from lull.store.users import first_admin, session_secret
from lull.web.data import Data
from lull.web.pages import HERE, Page, Pages
from lull.web.segments import SegmentPages

if TYPE_CHECKING:
    from lull.server.app import Server

SESSION_HOURS = 12


def web_routes(server: Server) -> list[BaseRoute]:
    """Every page and its JSON, each with the signed session cookie (routes of their own,
    not a mount at the root, so the server's other paths keep their 404s and 405s)."""
    pages, data = Pages(server), Data(server)
    cookie = [_cookie(server)]
    g = pages.guarded

    def page(path: str, endpoint: Page, method: str = "GET") -> Route:
        return Route(path, endpoint, methods=[method], middleware=cookie)

    # `{project:path}`: a project named before names were restricted may hold a `/`;
    # its links carry it as %2F, which the server decodes before routing.
    seg = SegmentPages(pages)
    return [
        # segments first: `{project:path}` would take "demo/segments" for a segment "board"
        page("/p/{project:path}/segments", g(seg.listing)),
        page("/p/{project:path}/segments", g(seg.create), "POST"),
        page("/p/{project:path}/segments/{name}", g(seg.show)),
        page("/p/{project:path}/segments/{name}/profiles.csv", g(seg.download)),
        page("/p/{project:path}/segments/{name}/delete", g(seg.delete), "POST"),
        page("/web/api/p/{project:path}/segments/count", seg.preview),
        page("/", g(pages.home)),
        page("/signin", g(pages.signin_page)),
        page("/signin", g(pages.signin), "POST"),
        page("/signout", g(pages.signout), "POST"),
        page("/p/{project:path}/board", g(pages.board)),
        page("/p/{project:path}/settings", g(pages.settings_page)),
        page("/p/{project:path}/settings", g(pages.settings_save), "POST"),
        page("/p/{project:path}/profile", g(pages.profile)),
        page("/p/{project:path}/events", g(pages.events)),
        page("/web/api/p/{project:path}/board", data.board),
        page("/web/api/p/{project:path}/whatif", data.whatif),
        page("/web/api/p/{project:path}/figures/{figure}", data.figure),
        Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
    ]


def _cookie(server: Server) -> Middleware:
    """The session cookie, signed with the store's secret (made, with the first admin
    of a store without accounts, on the first start)."""
    cursor = server.con.cursor()
    try:
        with transaction(cursor):
            secret = session_secret(cursor)
            password = first_admin(cursor)
    finally:
        cursor.close()
    if password is not None:
        print(
            f"lull: made user 'admin' (admin of every project) to sign in at /; its "
            f"password, shown once: {password}",
            file=sys.stderr,
            flush=True,
        )
    return Middleware(
        SessionMiddleware,
        secret_key=secret,
        session_cookie="lull_session",
        max_age=SESSION_HOURS * 3600,
        same_site="lax",
    )
