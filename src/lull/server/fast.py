"""The busiest request answered in a few steps: `POST /api/v1/events` from a server.

A plain ASGI layer in front of the app. A request to the native API with a bearer key, no
`Origin` (not from a page: no CORS to apply) and no `Content-Encoding`, whose body the
native fast path takes whole (`ingest.native.columns`), is made durable and answered here,
without Starlette's routing, request object and middleware; its answer carries the same
headers and body the app's handler gives. Anything else (another path, a page, gzip, a
wrong key, a body the exact path must judge) goes to the app with its body replayed, so
there is one place that says what is wrong.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import msgspec

from lull.errors import LullError, Unavailable
from lull.ingest.native import columns
from lull.server.bodies import MAX_REQUEST
from lull.server.door import RETRY_AFTER_S
from lull.server.headers import EVERY_ANSWER
from lull.store.keys import WRITE_KINDS

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

PATH = "/api/v1/events"
TRIED = "lull.native_fast_tried"  # scope key: this lane found the body not for it
_encode = msgspec.json.Encoder().encode
_JSON = (b"content-type", b"application/json")


class FastIngest:
    """ASGI: the native API's common case here, everything else to `app`."""

    def __init__(self, app: App, server: Any) -> None:
        self.app = app
        self.server = server  # app.Server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        secret = _plain_bearer(scope["headers"])
        if secret is None:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # gone: the app says so
                await self.app(scope, _replay(b"".join(chunks), True, receive, message), send)
                return
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            more = message.get("more_body", False)
            if size > MAX_REQUEST and more:  # the app reads on and says it is too large
                await self.app(scope, _replay(b"".join(chunks), True, receive), send)
                return
        body = b"".join(chunks)
        server = self.server
        try:
            grant = server.grant(secret, WRITE_KINDS)
        except LullError:
            grant = None
        arrived = server.engine.clock()
        fast = None
        if grant is not None and size <= MAX_REQUEST and body[:2] != b"\x1f\x8b":
            fast = columns(body, grant.source, arrived)
        if grant is None or fast is None:
            if grant is not None:  # judged here already: the app goes to the exact path
                scope[TRIED] = True
            await self.app(scope, _replay(body, False, receive), send)
            return
        try:
            outcome = await server.store(grant.project_id, arrived, fast)
        except Unavailable as e:
            await _answer(send, 503, {"error": e.message}, retry=True)
            return
        answer = {"accepted": outcome.accepted, "duplicates": outcome.duplicates, "rejected": []}
        await _answer(send, 200, answer)


def _plain_bearer(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The bearer key of a request with no Origin and no Content-Encoding, else None."""
    secret = None
    for key, value in headers:
        if key == b"authorization":
            scheme, _, rest = value.partition(b" ")
            if scheme.lower() != b"bearer":
                return None
            secret = rest.strip().decode("latin-1")
        elif key == b"origin" or key == b"content-encoding":
            return None
    return secret or None


def _replay(body: bytes, more: bool, receive: Receive, last: Message | None = None) -> Receive:
    """A `receive` that gives the body read so far as one message (`more`: the rest is
    still to come), then `last` (the disconnect that cut it short) or reads on."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": more}]
    if last is not None:
        pending.append(last)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


async def _answer(send: Send, status: int, answer: dict[str, Any], retry: bool = False) -> None:
    body = _encode(answer)
    headers = [_JSON, (b"content-length", b"%d" % len(body)), *EVERY_ANSWER]
    if retry:
        headers.append((b"retry-after", b"%d" % RETRY_AFTER_S))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
