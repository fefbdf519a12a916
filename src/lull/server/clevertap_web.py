"""`GET /a`: the endpoint of CleverTap's web SDK (clevertap-web-sdk), initialised with
lull's host as its target domain (`clevertap.init(accountId, "", "lull-host:port")`).

The SDK sends every request as a `<script>` tag (JSONP) and holds its later requests
until the script that answers one has called back into it: `$WZRK_WR.s(guid, session,
resume, rn)` gives the device its guid and session id and acknowledges request `rn`
(the SDK drops it from its backup; unacknowledged requests are sent again later). So
every request the SDK sends is answered with that call once what it carries is stored,
an event lull refuses too (with the reason on the browser's console: sending it again
would not help). Requests that cannot be read at all get a 4xx with a JavaScript comment,
and a 503 when the store cannot take events now (the SDK sends them again later: the
same message ids, stored once).
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lull.errors import BadInput, LullError, TooLarge, Unauthorized
from lull.ingest import clevertap_web
from lull.ingest.clevertap_web import Hit
from lull.server.identity import Link, Target, news

if TYPE_CHECKING:
    from lull.server.app import Server

MAX_QUERY = 500 * 1024
_JS = "application/javascript; charset=utf-8"


def _js(body: str, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type=_JS, headers={"Cache-Control": "no-store"})


def _comment(message: str) -> str:
    return "/* lull: " + message.replace("*/", "* /") + " */\n"


def _callback(guid: str, session: int, resume: bool, rn: str | None) -> str:
    """The call that gives the SDK its guid and session and acknowledges request `rn`."""
    args = [json.dumps(guid), str(session), "true" if resume else "false"]
    if rn is not None and clevertap_web.NUMBER.fullmatch(rn):
        args.append(rn)
    return f"window.$WZRK_WR && window.$WZRK_WR.s({', '.join(args)});\n"


def routes(server: Server) -> list[Route]:
    async def collect(request: Request) -> Response:
        try:
            return await _collect(request)
        except LullError as e:  # a 503 included: the SDK keeps the request and resends it
            return _js(_comment(e.message), e.status)

    async def _collect(request: Request) -> Response:
        if len(request.url.query) > MAX_QUERY:
            raise TooLarge("request is over 500 KB")
        hit = Hit.of(request.query_params)
        pid = server.accounts.get(hit.account)
        if pid is None:
            raise Unauthorized(f"unknown account id {hit.account!r}")
        received = server.engine.clock()

        def resolve(anonymous: str, at: int | None) -> str:
            return server.engine.resolve(pid, anonymous, at)

        guid = clevertap_web.answer_guid(hit, lambda g: resolve(g, None), lambda: uuid.uuid4().hex)
        session = hit.session or received // 1000
        answer = _callback(guid, session, hit.login, hit.rn)
        try:
            mapped = clevertap_web.to_event(hit, guid, session, resolve, received)
        except (BadInput, TooLarge) as e:  # refused for good: acknowledged, not resent
            warning = f"window.console && console.error({json.dumps('lull: ' + e.message)});\n"
            return _js(warning + answer)
        links: list[Link] | None = None
        if mapped.link is not None:  # tied from the login's time on (if news: it repeats)
            anonymous, user = mapped.link
            tie = Target(user, mapped.event.ts if mapped.event is not None else received)
            links = [(anonymous, tie)] if news(resolve, anonymous, tie) else None
        if mapped.event is not None or links:
            events = [mapped.event] if mapped.event is not None else []
            traits: list[tuple[str, dict[str, Any], int]] | None = (
                [mapped.traits] if mapped.traits is not None else None
            )
            await server.store(pid, received, events, links, traits)
        return _js(answer)

    return [Route("/a", collect, methods=["GET"])]
