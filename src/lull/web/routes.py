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
from lull.web.pages import HERE, Pages

if TYPE_CHECKING:
    from lull.server.app import Server

SESSION_HOURS = 12


def web_routes(server: Server) -> list[BaseRoute]:
    """Every page and its JSON under one mount, the signed session cookie on them only."""
    pages, data = Pages(server), Data(server)
    g = pages.guarded
    routes = [
        Route("/", g(pages.home)),
        Route("/signin", g(pages.signin_page), methods=["GET"]),
        Route("/signin", g(pages.signin), methods=["POST"]),
        Route("/signout", g(pages.signout), methods=["POST"]),
        Route("/p/{project}/board", g(pages.board)),
        Route("/p/{project}/settings", g(pages.settings_page), methods=["GET"]),
        Route("/p/{project}/settings", g(pages.settings_save), methods=["POST"]),
        Route("/p/{project}/profile", g(pages.profile)),
        Route("/p/{project}/events", g(pages.events)),
        Route("/web/api/p/{project}/board", data.board),
        Route("/web/api/p/{project}/whatif", data.whatif),
        Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
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
    cookie = Middleware(
        SessionMiddleware,
        secret_key=secret,
        session_cookie="lull_session",
        max_age=SESSION_HOURS * 3600,
        same_site="lax",
    )
    return [Mount("", routes=routes, middleware=[cookie])]
