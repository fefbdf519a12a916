"""The JSON the pages' scripts fetch (cookie-authenticated, under /web/api/): the board
and the what-if preview, from the same functions as `lull board` and the read API."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

import duckdb
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from lull.board import board, check_range
from lull.errors import BadInput
from lull.figures import figure
from lull.model import Settings
from lull.server import reads
from lull.store.projects import get_settings
from lull.web.auth import on_project

if TYPE_CHECKING:
    from lull.server.app import Server

MAX_DAYS = 3660


def span(params: dict[str, str], settings: Settings) -> tuple[date, int]:
    """`until` and `days` as the read API takes them (reads.board_range), or `from` and
    `until`, as the last day and the number of days."""
    first = params.get("from")
    ask = {"until": params.get("until", ""), "days": "1" if first else params.get("days", "30")}
    until, days, _ = reads.board_range(ask, settings)
    if first:
        try:
            start = date.fromisoformat(first)
        except ValueError:
            raise BadInput(f"'from' {first!r}: expected a date YYYY-MM-DD") from None
        if start > until:
            raise BadInput("the first day comes after the last day")
        days = (until - start).days + 1
        if days > MAX_DAYS:
            raise BadInput(f"pick at most {MAX_DAYS} days")
    check_range(until, days)  # as board() will: both ends inside the calendar
    return until, days


class Data:
    def __init__(self, server: Server) -> None:
        self.server = server

    async def _answer(self, request: Request, query: Any) -> Response:
        project = request.path_params["project"]
        params = dict(request.query_params)

        def run(con: duckdb.DuckDBPyConnection) -> Any:
            who = on_project(request, con, project)
            assert who.project is not None
            pid = who.project.project_id
            return query(con, pid, get_settings(con, pid), params)

        result = await run_in_threadpool(lambda: run(self.server.reader()))
        return JSONResponse(result, headers={"Cache-Control": "no-store"})

    async def board(self, request: Request) -> Response:
        def query(con: duckdb.DuckDBPyConnection, pid: int, s: Settings, p: dict[str, str]) -> Any:
            until, days = span(p, s)
            return board(con, pid, s, until, days, source=p.get("source") or None)

        return await self._answer(request, query)

    async def figure(self, request: Request) -> Response:
        name = request.path_params["figure"]

        def query(con: duckdb.DuckDBPyConnection, pid: int, s: Settings, p: dict[str, str]) -> Any:
            until, days = span(p, s)
            source, prop = p.get("source") or None, p.get("property")
            return figure(con, name, pid, s, until, days, source, prop)

        return await self._answer(request, query)

    async def whatif(self, request: Request) -> Response:
        from lull.whatif import preview

        def query(con: duckdb.DuckDBPyConnection, pid: int, s: Settings, p: dict[str, str]) -> Any:
            timeout = reads.proposed_timeout(p)
            until, days = span(p, s)
            return preview(con, pid, s, timeout, until, days, source=p.get("source") or None)

        return await self._answer(request, query)
