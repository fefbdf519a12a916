"""The HTTP app: thin handlers that authenticate, validate, hand over, and answer."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import duckdb
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from lull.board import board
from lull.errors import (
    BadInput,
    Forbidden,
    LullError,
    NotFound,
    TooLarge,
    Unauthorized,
    Unavailable,
)
from lull.figures import figure
from lull.ingest import amplitude, clevertap, posthog, segment
from lull.ingest.columns import EventColumns
from lull.ingest.native import columns as native_columns
from lull.ingest.records import Event, to_record
from lull.segments import api as segments_api
from lull.segments.live import Watcher
from lull.server import clevertap_web, reads
from lull.server.bodies import parse_events, parse_json, read_body, too_big
from lull.server.control import parse_change
from lull.server.cors import IngestCors, check_origin
from lull.server.door import RETRY_AFTER_S, Door, Outcome
from lull.server.fast import TRIED as FAST_TRIED
from lull.server.fast import FastIngest
from lull.server.headers import SecurityHeaders
from lull.server.identity import Link, Resolve, Target, follow, news
from lull.server.live import LiveEngine
from lull.server.openapi import OPENAPI
from lull.store.keys import WRITE_KINDS, Grant, account_ids, digest, load_grants
from lull.web.routes import web_routes
from lull.whatif import preview

Handler = Callable[[Request], Awaitable[Response]]
# What an app answers: everything; ingestion only (the front of `lull serve`, which passes
# the rest to its store process); reads only; or ingestion only with a 404 saying so for
# the rest (`lull serve --ingest-only`).
Serves = Literal["all", "ingest", "reads", "ingest-only"]


class _AnyText(Convertor[str]):
    """A path parameter of any text, slashes and line feeds included (Starlette's `path`
    stops at a line feed, and its `$` would let a final one go unmatched)."""

    regex = r"[\s\S]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("any_text", _AnyText())


class Server:
    """Everything the handlers share: the live engine, the keys, a reader per thread."""

    def __init__(self, con: duckdb.DuckDBPyConnection, engine: LiveEngine, door: Door) -> None:
        self.con = con
        self.engine = engine
        self.door = door
        self.grants: dict[str, Grant] = load_grants(con)
        self.accounts: dict[str, int] = account_ids(con)
        self._local = threading.local()
        self._digests: dict[str, str] = {}
        self.live_segments = Watcher(con)  # fires live segments' webhooks (segments/live.py)
        if isinstance(engine, LiveEngine):
            engine.on_stored = self.live_segments.stored

    def reader(self) -> duckdb.DuckDBPyConnection:
        cursor: duckdb.DuckDBPyConnection | None = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self._local.cursor = self.con.cursor()
        return cursor

    def writer(self, request: Request, secret: str | None) -> Grant:
        """The grant of a write key, from a page the key's project allows (CORS)."""
        found = self.grant(secret, WRITE_KINDS)
        check_origin(request, self.engine.settings(found.project_id))
        return found

    def _digest(self, secret: str) -> str:
        """A key's SHA-256, remembered for the keys seen lately (a hash a request)."""
        known = self._digests.get(secret)
        if known is None:
            if len(self._digests) >= 4096:  # wrong keys by the thousand: start again
                self._digests.clear()
            known = self._digests[secret] = digest(secret)
        return known

    def origin_allowed(self, origin: str) -> bool:
        """Does some project allow pages of `origin` to send? (A preflight names none.)"""
        return any(p.settings.allows_origin(origin) for p in self.engine.projects.values())

    def grant(self, secret: str | None, kinds: tuple[str, ...]) -> Grant:
        found = self.grants.get(self._digest(secret)) if secret else None
        if found is None or found.kind not in kinds:
            raise Unauthorized("missing or wrong key")
        return found

    async def store(
        self,
        pid: int,
        received_at: int,
        events: list[Event] | EventColumns,
        links: list[Link] | None = None,
        traits: list[tuple[str, dict[str, Any], int]] | None = None,
    ) -> Outcome:
        """Make the events durable (the ingest log); returns once they are. `received_at`
        is the request's arrival instant, the one its handler checked the events with."""
        if isinstance(events, list):
            events = EventColumns.of(events)
        return await self.door.take(pid, received_at, events, links, traits)

    async def caught_up(self, wait: float = 2.0) -> None:
        """Wait (a little) until the store holds what was acknowledged before now, so a
        client reads what it has just sent."""
        target = self.door.acked
        deadline = time.monotonic() + wait
        while self.engine.applied < target and time.monotonic() < deadline:
            await asyncio.sleep(0.005)


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def _basic_user(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        return base64.b64decode(value.strip(), validate=True).decode().partition(":")[0]
    except (ValueError, UnicodeDecodeError):
        return None


def _amplitude_shaped(body: bytes) -> bool:
    """Is this `/batch` body Amplitude's (an object with `events`) rather than PostHog's
    (`batch`, or a form, or gzip)? Anything unreadable is left to Amplitude's errors."""
    try:
        payload = parse_json(body)
    except BadInput:
        return not body.startswith(b"data=")
    return not (isinstance(payload, dict) and "batch" in payload and "events" not in payload)


def _error(index: int, e: LullError) -> dict[str, object]:
    return {"index": index, "error": e.message, "status": e.status}


# An SDK message as lull takes it: the event, an (anonymous id, profile) link it makes,
# and the profile properties it sets.
Converted = tuple[Event, tuple[str, str] | None, dict[str, Any] | None]


@dataclass(slots=True)
class Gathered:
    """A request's messages, converted: what to store, and what was wrong with the rest."""

    events: list[Event] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    traits: list[tuple[str, dict[str, Any], int]] = field(default_factory=list)
    faults: list[tuple[int, Any]] = field(default_factory=list)

    def errors(self) -> list[dict[str, object]]:
        """The first MAX_ERRORS faults (an answer never grows much past its request)."""
        return [_error(i, e) for i, e in self.faults[:MAX_ERRORS]]

    def refused(self) -> int:
        """The status of a request none of whose events was taken: 413 when each was too
        big, else 400."""
        faults = self.faults
        return 413 if faults and all(e.status == 413 for _, e in faults) else 400

    def counted(self, answer: dict[str, object]) -> dict[str, object]:
        """`answer`, with how many were refused when not all of them are listed."""
        if len(self.faults) > MAX_ERRORS:
            answer["rejected_count"] = len(self.faults)
        return answer


def gather(
    server: Server,
    pid: int,
    messages: list[Any],
    body: bytes,
    convert: Callable[[object, Resolve], Converted],
) -> Gathered:
    """Convert each message of a request; a bad one is noted by its index, the others
    go on. A link made by a message ties its anonymous id from the message's time on
    (server/identity.py), for the request's later messages too."""
    got = Gathered()
    linked: dict[str, Target] = {}

    def resolve(anonymous: str, at: int | None) -> str:
        if anonymous in linked:
            return follow(linked, anonymous, at)
        return server.engine.resolve(pid, anonymous, at)

    for i, msg in enumerate(messages):
        try:
            if too_big(msg, body):
                raise TooLarge("event is over 32 KB")
            event, link, traits = convert(msg, resolve)
        except (BadInput, TooLarge) as e:
            got.faults.append((i, e))
            continue
        got.events.append(event)
        if link and news(resolve, link[0], tie := Target(link[1], event.ts)):
            got.links.append((link[0], tie))
            linked[link[0]] = tie
        if traits:
            got.traits.append((event.profile_id, traits, event.ts))
    return got


MAX_ERRORS = 100  # refused events listed in an answer; `rejected_count` says how many


_ANY = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


async def _not_served(request: Request) -> Response:
    message = ("not served by an ingestion-only server (lull serve --ingest-only): "
               "sessions are made by lull spark stream; read its output")  # fmt: skip
    return JSONResponse({"error": message}, status_code=404)


def build(server: Server, serves: Serves = "all") -> Starlette:
    """The app: its ingestion endpoints, its reads (the read API, settings, the web
    pages), or both (`Serves`); /healthz and /openapi.json always."""

    async def healthz(request: Request) -> Response:
        if server.door.failing is not None:  # the ingest log cannot be written now
            return JSONResponse(
                {"status": "unavailable", "error": server.door.failing},
                status_code=503,
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        return JSONResponse({"status": "ok"})

    async def native(request: Request) -> Response:
        grant = server.writer(request, _bearer(request))
        body = await read_body(request)
        arrived = server.engine.clock()
        tried = request.scope.get(FAST_TRIED, False)  # by the lane in front (fast.py)
        fast = None if tried else native_columns(body, grant.source, arrived)
        if fast:  # a well-formed body: every event taken as it is
            outcome = await server.store(grant.project_id, arrived, fast)
            return JSONResponse(
                {"accepted": outcome.accepted, "duplicates": outcome.duplicates, "rejected": []}
            )

        def convert(raw: object, resolve: Resolve) -> Converted:  # the exact path
            rec = to_record(raw, grant.source, arrived=arrived)
            event = Event(
                rec.message_id, rec.profile_id, rec.name, rec.ts, grant.source,
                rec.sent_at, rec.properties,
            )  # fmt: skip
            return event, None, None

        # each bad record named, the good ones kept
        got = gather(server, grant.project_id, parse_events(body), body, convert)
        pid, events = grant.project_id, got.events
        outcome = await server.store(pid, arrived, events) if events else Outcome()
        answer = got.counted(
            {
                "accepted": outcome.accepted,
                "duplicates": outcome.duplicates,
                "rejected": got.errors(),
            }
        )
        return JSONResponse(answer, status_code=got.refused() if not events else 200)

    async def segment_api(request: Request) -> Response:
        kind = request.path_params.get("kind", "batch")
        kind = segment.SHORT.get(kind, kind)
        if kind not in segment.TYPES and kind != "batch":
            raise NotFound(f"no Segment endpoint /v1/{kind}")
        basic = _basic_user(request)
        if basic:  # a wrong key is a 401 whatever the body holds
            server.grant(basic, WRITE_KINDS)
        body = await read_body(request)
        payload = parse_json(body)
        if not isinstance(payload, dict):
            raise BadInput("body must be a JSON object")
        key = basic or payload.get("writeKey")
        grant = server.writer(request, key if isinstance(key, str) else None)
        if kind == "batch":
            messages = payload.get("batch")
            if not isinstance(messages, list):
                raise BadInput("field 'batch' must be an array of messages")
            default = None
        else:
            messages, default = [payload], kind
        received = server.engine.clock()

        def convert(msg: object, resolve: Resolve) -> Converted:
            event, link = segment.to_event(
                msg, default, grant.source, resolve, payload.get("sentAt"), received
            )
            traits = event.properties if event.name == "Identity Set" else None
            return event, link, traits or None

        got = gather(server, grant.project_id, messages, body, convert)
        if not got.events:
            answer = got.counted({"success": False, "rejected": got.errors()})
            return JSONResponse(answer, status_code=got.refused())
        outcome = await server.store(grant.project_id, received, got.events, got.links, got.traits)
        return JSONResponse(
            got.counted({"success": True, "accepted": outcome.accepted, "rejected": got.errors()})
        )

    async def posthog_capture(request: Request) -> Response:
        return await posthog_body(request, await read_body(request))

    async def posthog_body(request: Request, body: bytes) -> Response:
        query = dict(request.query_params)
        text = posthog.decode(body, query, request.headers.get("content-type", ""))
        found = posthog.capture(parse_json(text))
        grant = server.writer(request, found.key or _bearer(request) or query.get("token"))
        received = server.engine.clock()

        def convert(msg: object, resolve: Resolve) -> Converted:
            return posthog.to_event(msg, grant.source, resolve, found.sent_at, received)

        got = gather(server, grant.project_id, found.messages, text, convert)
        rejected = got.errors()
        if not got.events:
            return JSONResponse(
                got.counted({"status": 0, "error": "no event was accepted", "rejected": rejected}),
                status_code=got.refused(),
            )
        await server.store(grant.project_id, received, got.events, got.links, got.traits)
        return JSONResponse(got.counted({"status": 1, "rejected": rejected}))

    async def posthog_flags(request: Request) -> Response:
        return JSONResponse(posthog.FLAGS)

    async def posthog_config(request: Request) -> Response:
        """posthog-js's remote config, as JSON or as its `config.js` (ingest/posthog.py)."""
        token, kind = request.path_params["token"], request.path_params["kind"]
        if len(token) > 200 or kind not in ("config", "config.js"):
            raise NotFound("no such PostHog remote config")
        cache = {"Cache-Control": "public, max-age=300"}
        if kind == "config":
            return JSONResponse(posthog.remote_config(token), headers=cache)
        js = posthog.remote_config_js(token)
        return Response(js, media_type="application/javascript; charset=utf-8", headers=cache)

    async def amplitude_api(request: Request) -> Response:
        body = await read_body(request)
        if request.url.path == "/batch" and not _amplitude_shaped(body):
            return await posthog_body(request, body)  # PostHog's /batch/, without its slash
        payload = parse_json(body)
        key, messages = amplitude.batch(payload)
        try:
            grant = server.writer(request, key)
        except (Unauthorized, Forbidden) as e:  # Amplitude's SDKs read a 401 as "retry"
            return JSONResponse({"code": 400, "error": f"Invalid API key: {e.message}"}, 400)
        received = server.engine.clock()

        def convert(msg: object, resolve: Resolve) -> Converted:
            return amplitude.to_event(msg, grant.source, resolve, received)

        got = gather(server, grant.project_id, messages, body, convert)
        if got.faults:  # all or nothing, as Amplitude: the SDK resends the good ones
            too_big_only = all(isinstance(e, TooLarge) for _, e in got.faults)
            if too_big_only:
                return JSONResponse({"code": 413, "error": "an event is over 32 KB"}, 413)
            return JSONResponse(amplitude.refusal(got.faults), 400)
        if got.events:
            await server.store(grant.project_id, received, got.events, got.links, got.traits)
        return JSONResponse(
            {
                "code": 200,
                "events_ingested": len(got.events),
                "payload_size_bytes": len(body),
                "server_upload_time": received,
            }
        )

    async def upload(request: Request) -> Response:
        account = request.headers.get("x-clevertap-account-id", "")
        pid = server.accounts.get(account)
        passcode = server.grants.get(digest(request.headers.get("x-clevertap-passcode", "")))
        if (
            pid is None
            or passcode is None
            or passcode.kind != "passcode"
            or (passcode.project_id != pid)
        ):
            raise Unauthorized("wrong X-CleverTap-Account-Id or X-CleverTap-Passcode")
        body = await read_body(request)
        payload = parse_json(body)
        records = payload.get("d") if isinstance(payload, dict) else None
        if not isinstance(records, list):
            raise BadInput("body must be an object with an array 'd'")
        if len(records) > clevertap.MAX_RECORDS:
            raise BadInput(f"at most {clevertap.MAX_RECORDS} records per upload")
        events, processed = [], 0
        unprocessed: list[dict[str, object]] = []
        traits: list[tuple[str, dict[str, Any], int]] = []
        for i, record in enumerate(records):
            try:
                if too_big(record, body):
                    raise BadInput("record is over 32 KB")
                event = clevertap.to_event(record)
                processed += 1
                if event is not None:
                    events.append(event)
                else:
                    traits.append(clevertap.profile_update(record))
            except BadInput as e:
                if len(unprocessed) < MAX_ERRORS:
                    unprocessed.append(
                        {"status": "fail", "code": 400, "error": e.message, "index": i,
                         "record": record}
                    )  # fmt: skip
        if events or traits:
            await server.store(pid, server.engine.clock(), events, None, traits)
        status = "fail" if records and not processed else "success"
        return JSONResponse(
            {"status": status, "processed": processed, "unprocessed": unprocessed},
            status_code=400 if status == "fail" else 200,
        )

    def read(query: Callable[[duckdb.DuckDBPyConnection, int, Request], Any]) -> Handler:
        async def handler(request: Request) -> Response:
            grant = server.grant(_bearer(request), ("read", "admin"))
            await server.caught_up()
            result = await run_in_threadpool(
                lambda: query(server.reader(), grant.project_id, request)
            )
            return JSONResponse(result)

        return handler

    def read_board(con: duckdb.DuckDBPyConnection, pid: int, request: Request) -> Any:
        settings = server.engine.settings(pid)
        until, days, source = reads.board_range(request.query_params, settings)
        return board(con, pid, settings, until, days, source)

    def read_figure(con: duckdb.DuckDBPyConnection, pid: int, request: Request) -> Any:
        settings = server.engine.settings(pid)
        until, days, source = reads.board_range(request.query_params, settings)
        name, prop = request.path_params["figure"], request.query_params.get("property")
        return figure(con, name, pid, settings, until, days, source, prop)

    def read_whatif(con: duckdb.DuckDBPyConnection, pid: int, request: Request) -> Any:
        settings = server.engine.settings(pid)
        until, days, source = reads.board_range(request.query_params, settings)
        timeout = reads.proposed_timeout(request.query_params)
        return preview(con, pid, settings, timeout, until, days, source)

    async def change_settings(request: Request) -> Response:
        grant = server.grant(_bearer(request), ("admin",))
        body = parse_json(await read_body(request))
        change, rebuild = parse_change(body)
        done = server.engine.change_settings(grant.project_id, change, rebuild=rebuild)
        return JSONResponse(await asyncio.wrap_future(done))

    async def openapi(request: Request) -> Response:
        return JSONResponse(OPENAPI)

    async def on_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, Unavailable):
            return JSONResponse(
                {"error": exc.message},
                status_code=exc.status,
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        if isinstance(exc, LullError):
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        return JSONResponse({"error": "internal error"}, status_code=500)

    ingest: list[BaseRoute] = [
        Route("/api/v1/events", native, methods=["POST"]),
        Route("/v1/batch", segment_api, methods=["POST"]),
        Route("/v1/b", segment_api, methods=["POST"]),  # analytics-next batching: apiHost + /b
        Route("/v1/{kind}", segment_api, methods=["POST"]),
        Route("/b", segment_api, methods=["POST"]),
        Route("/1/upload", upload, methods=["POST"]),
        *[
            Route(path, posthog_capture, methods=["POST", "GET"])
            for path in ("/e/", "/e", "/i/v0/e/", "/capture/", "/capture", "/batch/")
        ],
        *[
            Route(path, posthog_flags, methods=["POST", "GET"])
            for path in ("/flags", "/flags/", "/decide", "/decide/")
        ],
        Route("/array/{token}/{kind}", posthog_config, methods=["GET"]),
        Route("/2/httpapi", amplitude_api, methods=["POST"]),
        Route("/batch", amplitude_api, methods=["POST"]),
        *clevertap_web.routes(server),
    ]
    reading: list[BaseRoute] = []
    if serves in ("all", "reads"):  # (the pages read the store as they are made)
        reading = [
            Route(
                "/api/v1/sessions",
                read(lambda c, p, r: reads.sessions(c, p, dict(r.query_params))),
            ),
            Route(
                "/api/v1/events",
                read(lambda c, p, r: reads.events(c, p, dict(r.query_params))),
                methods=["GET"],
            ),
            Route(
                "/api/v1/profiles/{profile_id:any_text}",
                read(lambda c, p, r: reads.profile(c, p, r.path_params["profile_id"])),
            ),
            Route("/api/v1/board", read(read_board)),
            Route("/api/v1/whatif", read(read_whatif)),
            Route("/api/v1/figures/{figure}", read(read_figure)),
            Route("/api/v1/settings", change_settings, methods=["PUT"]),
            Route(
                "/api/v1/settings",
                read(lambda c, p, r: server.engine.settings(p).as_json()),
                methods=["GET"],
            ),
            *segments_api.routes(server, _bearer),
            *web_routes(server),  # the web pages at /
        ]
    routes: list[BaseRoute] = [Route("/healthz", healthz), Route("/openapi.json", openapi)]
    routes += ingest if serves != "reads" else []
    routes += reading  # (empty unless it serves reads)
    if serves == "ingest-only":  # no reads: ingestion, /healthz and /openapi.json, and a clear 404
        routes.append(Route("/{rest:path}", _not_served, methods=list(_ANY)))
    app = Starlette(
        routes=routes,
        exception_handlers={LullError: on_error, Exception: on_error},
    )
    app.add_middleware(IngestCors, allowed=server.origin_allowed)
    app.add_middleware(SecurityHeaders)
    return app


def serving(server: Server, serves: Serves = "all") -> FastIngest:
    """The app behind the native API's fast lane (server/fast.py)."""
    return FastIngest(build(server, serves), server)
