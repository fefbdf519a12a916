"""CORS for the ingestion endpoints, so that SDKs in web pages on other origins can send.

Only the ingestion paths are ever answered cross-origin (their POSTs, and the GETs with
which an SDK reads its settings: PostHog's flags and remote config). Which pages may send is
a project setting (`allowed_origins`), but a preflight (`OPTIONS`) carries no key, so it
cannot name the project: it is allowed when some project allows the origin. The request
that follows carries its key, and its handler refuses it (403, nothing stored) when the
key's project does not allow the page's origin (`check_origin`). Answers never carry
`Access-Control-Allow-Credentials`, so a browser never sends cookies with them, and the
read API, the admin API and the web pages answer no cross-origin request at all.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lull.errors import Forbidden
from lull.model import Settings

# The paths that take events (POST): lull's own, Segment's, PostHog's and Amplitude's; and
# those an SDK reads its settings from (GET): PostHog's flags and remote config (/array/).
INGEST_PREFIXES = (
    "/v1/", "/e/", "/i/v0/e/", "/s/", "/capture/", "/batch/", "/flags", "/decide", "/array/"
)  # fmt: skip
INGEST_PATHS = frozenset({"/api/v1/events", "/b", "/batch", "/2/httpapi", "/e", "/capture"})
MAX_AGE = "86400"  # a day: browsers cap it lower anyway
# Headers a preflight may ask for when it names none we can echo (SDKs ask for a few).
ALLOWED_HEADERS = "content-type, authorization, content-encoding, x-requested-with"


def is_ingest(path: str) -> bool:
    return path in INGEST_PATHS or path.startswith(INGEST_PREFIXES)


def check_origin(request: Request, settings: Settings) -> None:
    """Refuse a browser request from a page the project does not allow (403)."""
    origin = request.headers.get("origin")
    if origin is not None and not settings.allows_origin(origin):
        raise Forbidden(
            f"origin {origin[:100]!r} may not send to this project: add it to the project's "
            "allowed origins (Settings, or lull settings --allowed-origins)"
        )


class IngestCors:
    """ASGI middleware: answers preflights of the ingestion paths and marks their answers
    readable by the sending page. `allowed(origin)`: does any project allow it?"""

    def __init__(self, app: ASGIApp, allowed: Callable[[str], bool]) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_ingest(scope["path"]):
            await self.app(scope, receive, send)
            return
        origin = _header(scope, b"origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            await self._preflight(origin, scope, send)
            return
        if scope["method"] not in ("POST", "GET") or (
            scope["path"] == "/api/v1/events" and scope["method"] != "POST"
        ):  # GET /api/v1/events is the read API
            await self.app(scope, receive, send)
            return

        async def send_marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"access-control-allow-origin", origin.encode("latin-1")),
                    (b"vary", b"Origin"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_marked)

    async def _preflight(self, origin: str, scope: Scope, send: Send) -> None:
        method = (_header(scope, b"access-control-request-method") or "").upper()
        ok = method in ("POST", "GET") and self.allowed(origin)
        # No cookies ever ride along (no Allow-Credentials), so the headers an SDK asks
        # for (its content type, encoding, key) can be allowed as asked.
        asked = (_header(scope, b"access-control-request-headers") or ALLOWED_HEADERS)[:1000]
        if scope["path"] == "/api/v1/events" and method != "POST":
            ok = False
        headers = [(b"vary", b"Origin"), (b"content-length", b"0")]
        if ok:
            headers += [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"access-control-allow-methods", b"POST, GET, OPTIONS"),
                (b"access-control-allow-headers", asked.encode("latin-1")),
                (b"access-control-max-age", MAX_AGE.encode()),
            ]
        status = 204 if ok else 403
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None
