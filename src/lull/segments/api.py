"""The segments' endpoints of the read API (docs/api.md): list, show, count, profiles
(JSON or CSV), a count of an unsaved definition; admins also create and delete."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import duckdb
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lull.errors import BadInput
from lull.model import format_time
from lull.segments import service
from lull.segments.definition import parse_past
from lull.server import reads
from lull.server.bodies import parse_json, read_body
from lull.store import segments as store

if TYPE_CHECKING:
    from lull.server.app import Server

Bearer = Callable[[Request], str | None]
# an endpoint's work: (a reader, the project, the request, its JSON body) -> the answer
Work = Callable[[duckdb.DuckDBPyConnection, int, Request, Any], Any]
MAX_PROFILES = 100_000  # in one answer; past it, pages (limit and offset)


def csv_response(rows: list[dict[str, Any]], name: str) -> Response:
    """Profiles as a CSV download named after the segment."""
    return Response(
        service.as_csv(rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="segment-{name}.csv"'},
    )


def page_of(params: dict[str, str]) -> tuple[int, int]:
    """`limit` (default and at most MAX_PROFILES) and `offset` of a profiles request."""
    limit = reads.whole(params.get("limit", str(MAX_PROFILES)))
    offset = reads.whole(params.get("offset", "0"))
    if limit is None or not 1 <= limit <= MAX_PROFILES:
        raise BadInput(f"'limit' must be a whole number from 1 to {MAX_PROFILES}")
    if offset is None:
        raise BadInput("'offset' must be a whole number")
    return limit, offset


def routes(server: Server, bearer: Bearer) -> list[Route]:
    """The routes, for server/app.py's list."""

    def call(kinds: tuple[str, ...], work: Work, body: bool = False) -> Callable[[Request], Any]:
        async def handler(request: Request) -> Response:
            grant = server.grant(bearer(request), kinds)
            payload = parse_json(await read_body(request)) if body else None
            await server.caught_up()
            result = await run_in_threadpool(
                lambda: work(server.reader(), grant.project_id, request, payload)
            )
            return result if isinstance(result, Response) else JSONResponse(result)

        return handler

    def name(request: Request) -> str:
        return str(request.path_params["name"])

    def listing(con: duckdb.DuckDBPyConnection, pid: int, r: Request, _: Any) -> Any:
        return [s.as_json() for s in store.listed(con, pid)]

    def show(con: duckdb.DuckDBPyConnection, pid: int, r: Request, _: Any) -> Any:
        saved = store.get(con, pid, name(r))
        out = saved.as_json()
        if saved.kind == "live":
            out["deliveries"] = store.deliveries(con, pid, saved.name)
        return out

    def count(con: duckdb.DuckDBPyConnection, pid: int, r: Request, _: Any) -> Any:
        d = service.past(store.get(con, pid, name(r)))
        return service.count(con, pid, server.engine.settings(pid), d)

    def preview(con: duckdb.DuckDBPyConnection, pid: int, r: Request, body: Any) -> Any:
        return service.count(con, pid, server.engine.settings(pid), parse_past(body))

    def members(con: duckdb.DuckDBPyConnection, pid: int, r: Request, _: Any) -> Any:
        params = dict(r.query_params)
        fmt = params.get("format", "json")
        if fmt not in ("json", "csv"):
            raise BadInput("'format' must be json or csv")
        limit, offset = page_of(params)
        d = service.past(store.get(con, pid, name(r)))
        rows = service.profiles(con, pid, server.engine.settings(pid), d, limit, offset)
        if fmt == "csv":
            return csv_response(rows, name(r))
        for row in rows:
            row["first_seen"] = format_time(row["first_seen"])
            row["last_seen"] = format_time(row["last_seen"])
        return rows

    def create(con: duckdb.DuckDBPyConnection, pid: int, r: Request, body: Any) -> Any:
        if not isinstance(body, dict):
            raise BadInput("body must be a JSON object with 'name' and 'definition'")
        made = service.create(
            con, pid, server.engine.settings(pid), body.get("name"), body.get("definition")
        )
        server.live_segments.reload()
        return JSONResponse(made.as_json(secret=True), status_code=201)

    def delete(con: duckdb.DuckDBPyConnection, pid: int, r: Request, _: Any) -> Any:
        service.delete(con, pid, name(r))
        server.live_segments.reload()
        return {"deleted": name(r)}

    read, admin = ("read", "admin"), ("admin",)
    base = "/api/v1/segments"
    return [
        Route(base, call(read, listing), methods=["GET"]),
        Route(base, call(admin, create, body=True), methods=["POST"]),
        Route(f"{base}/count", call(read, preview, body=True), methods=["POST"]),
        # any name (a line feed, a slash) reaches a handler and gets a JSON 404
        Route(base + "/{name:any_text}/count", call(read, count), methods=["GET"]),
        Route(base + "/{name:any_text}/profiles", call(read, members), methods=["GET"]),
        Route(base + "/{name:any_text}", call(read, show), methods=["GET"]),
        Route(base + "/{name:any_text}", call(admin, delete), methods=["DELETE"]),
    ]
