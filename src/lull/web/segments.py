"""The Segments pages: the list and the builder (preview a count, save), one segment's
page (its count, a page of its profiles, a CSV download; a live one's delivery log), and
the count of an unsaved definition for the builder's script."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import duckdb
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from lull.errors import BadInput, LullError
from lull.segments import service
from lull.segments.api import csv_response
from lull.segments.definition import parse_past
from lull.store import segments as store
from lull.store.events import names
from lull.store.projects import get_settings
from lull.web import format as fmt
from lull.web.auth import Access

if TYPE_CHECKING:
    from lull.web.pages import Pages

PROFILES_SHOWN = 50
MAX_DEFINITION = 64 * 1024  # characters of a definition sent to the page


class SegmentPages:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages

    async def _project(self, request: Request, admin: bool = False) -> tuple[Access, int]:
        who = await self.pages.access(request, admin=admin)
        assert who.project is not None
        return who, who.project.project_id

    def _base(self, who: Access) -> str:
        assert who.project is not None
        return f"/p/{quote(who.project.project, safe='')}/segments"

    async def listing(self, request: Request) -> Response:
        who, pid = await self._project(request)
        context = await self.pages.read(lambda con: _list_context(con, pid))
        return self.pages.render(request, "segments.html", context, who=who)

    async def create(self, request: Request) -> Response:
        who, pid = await self._project(request, admin=True)
        form = await self.pages.form(request)
        name, text = str(form.get("name", "")).strip(), str(form.get("definition", ""))
        try:
            raw = _json(text)
            made = await self.pages.read(
                lambda con: service.create(con, pid, get_settings(con, pid), name, raw)
            )
        except BadInput as e:
            context = await self.pages.read(lambda con: _list_context(con, pid))
            context |= {"error": e.message, "name": name, "definition": text}
            return self.pages.render(request, "segments.html", context, status=400, who=who)
        self.pages.server.live_segments.reload()
        note = "Segment saved."
        if made.kind == "live":
            note = "Live segment saved: it fires from now on. Its signing secret is on this page."
        request.session["flash"] = note
        return RedirectResponse(f"{self._base(who)}/{quote(made.name, safe='')}", 303)

    async def show(self, request: Request) -> Response:
        who, pid = await self._project(request)
        name = request.path_params["name"]

        def look(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
            saved = store.get(con, pid, name)
            settings = get_settings(con, pid)
            out: dict[str, Any] = {
                "page": "segments",
                "segment": saved,
                "pretty": json.dumps(saved.definition, indent=2),
                "timezone": settings.timezone,
            }
            if saved.kind == "live":
                out["deliveries"] = store.deliveries(con, pid, name)
                return out
            d = service.past(saved)
            out["counted"] = service.count(con, pid, settings, d)
            rows = service.profiles(con, pid, settings, d, PROFILES_SHOWN)
            for r in rows:
                r["local_last_seen"] = fmt.local_time(r["last_seen"], settings.timezone)
            out["profiles"] = rows
            return out

        context = await self.pages.read(look)
        return self.pages.render(request, "segment.html", context, who=who)

    async def download(self, request: Request) -> Response:
        _, pid = await self._project(request)
        name = request.path_params["name"]

        def rows(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
            d = service.past(store.get(con, pid, name))
            return service.profiles(con, pid, get_settings(con, pid), d)

        return csv_response(await self.pages.read(rows), name)

    async def delete(self, request: Request) -> Response:
        who, pid = await self._project(request, admin=True)
        await self.pages.form(request)
        name = request.path_params["name"]
        await self.pages.read(lambda con: service.delete(con, pid, name))
        self.pages.server.live_segments.reload()
        request.session["flash"] = f"Segment {name!r} deleted."
        return RedirectResponse(self._base(who), 303)

    async def preview(self, request: Request) -> Response:
        """The builder's count of an unsaved definition (`?definition=JSON`)."""
        _, pid = await self._project(request)
        text = request.query_params.get("definition", "")
        try:
            d = parse_past(_json(text))
            result = await self.pages.read(
                lambda con: service.count(con, pid, get_settings(con, pid), d)
            )
        except LullError as e:
            return JSONResponse({"error": e.message}, status_code=e.status)
        return JSONResponse(result, headers={"Cache-Control": "no-store"})


def _json(text: str) -> object:
    if len(text) > MAX_DEFINITION:
        raise BadInput(f"the definition is over {MAX_DEFINITION:,} characters")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise BadInput(f"the definition is not JSON: {e.msg} at line {e.lineno}") from None


def _list_context(con: duckdb.DuckDBPyConnection, pid: int) -> dict[str, Any]:
    return {
        "page": "segments",
        "segments": store.listed(con, pid),
        "names": names(con, pid),
        "excluded": get_settings(con, pid).excluded,
        "name": "",
        "definition": "",
    }
