"""Real browser SDKs from npm in a test page: bundled with esbuild, served from one
origin by a small static server, loaded in Chromium, sending to `lull serve` on another.

    pages = build_pages(tmp)                  # tests/sdk/{segment,posthog,amplitude}.js
    with StaticSite(pages) as site:           # http://127.0.0.1:PORT/segment.html, ...
        page = browser.new_page()
        wire = Wire(page, server.base, site.origin)  # every request, preflights included
        page.goto(f"{site.origin}/segment.html")
        page.evaluate("([o, k]) => lullSegment(o, k)", [server.base, keys.web])

The entry files under tests/sdk/ put one function on `window` that loads its SDK
pointed at lull; tests then drive the SDK (window.analytics, window.posthog,
window.amplitude) with page.evaluate.
"""

from __future__ import annotations

import base64
import functools
import gzip
import json
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from playwright.sync_api import Page, Request, Response

from serverproc import HOST

SDK_DIR = Path(__file__).resolve().parent / "sdk"
ESBUILD = SDK_DIR / "node_modules" / ".bin" / "esbuild"
SDKS = ("segment", "posthog", "amplitude")
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{name} → lull</title>
<link rel="icon" href="data:,"><script src="{name}.bundle.js"></script></head>
<body><h1>{name}</h1></body></html>
"""

T = TypeVar("T")


def build_pages(out: Path) -> Path:
    """Bundle each SDK's entry file (IIFE, as a site would ship it) next to a page that
    loads it: out/NAME.html and out/NAME.bundle.js."""
    out.mkdir(parents=True, exist_ok=True)
    entries = [str(SDK_DIR / f"{name}.js") for name in SDKS]
    done = subprocess.run(
        [str(ESBUILD), *entries, "--bundle", "--format=iife", f"--outdir={out}",
         "--entry-names=[name].bundle", "--log-level=warning"],
        cwd=SDK_DIR, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for name in SDKS:
        assert (out / f"{name}.bundle.js").stat().st_size > 10_000
        (out / f"{name}.html").write_text(PAGE.format(name=name))
    return out


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class StaticSite:
    """Python's http.server on 127.0.0.1 (a free port), serving one directory."""

    def __init__(self, root: Path) -> None:
        handler = functools.partial(_Quiet, directory=str(root))
        self.httpd = ThreadingHTTPServer((HOST, 0), handler)
        self.origin = f"http://{HOST}:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)

    def __enter__(self) -> StaticSite:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@dataclass
class Sent:
    """One request the page made to lull (not a preflight), and how it ended."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    status: int | None = None
    failure: str | None = None

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.url).query)

    def payload(self) -> Any:
        """The body as JSON: gunzipped when it starts like gzip (posthog-js says so only
        in its URL), base64-decoded when it is PostHog's `data=` form."""
        raw = self.body
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        text = raw.decode()
        if text.startswith("data="):
            text = base64.b64decode(parse_qs(text)["data"][0]).decode()
        return json.loads(text)


@dataclass
class Preflight:
    url: str
    status: int | None = None
    failure: str | None = None


@dataclass
class Wire:
    """Every request a page makes, as Chromium sees it: Playwright's events for the
    requests themselves (with their bodies), and the DevTools protocol for the CORS
    preflights, which Playwright does not report."""

    page: Page
    lull: str  # lull's origin, http://127.0.0.1:PORT
    site: str  # the page's origin
    sent: list[Sent] = field(default_factory=list)
    preflights: dict[str, Preflight] = field(default_factory=dict)
    elsewhere: list[str] = field(default_factory=list)  # requests to any third origin
    _by_request: dict[Request, Sent] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.page.on("request", self._request)
        self.page.on("response", self._response)
        self.page.on("requestfailed", self._failed)
        cdp = self.page.context.new_cdp_session(self.page)
        cdp.on("Network.requestWillBeSent", self._cdp_request)
        cdp.on("Network.responseReceived", self._cdp_response)
        cdp.on("Network.loadingFailed", self._cdp_failed)
        cdp.send("Network.enable")
        self.cdp = cdp

    def _ours(self, url: str) -> bool:
        return url.startswith(self.lull + "/")

    def _request(self, request: Request) -> None:
        if not self._ours(request.url):
            if not request.url.startswith(("data:", self.site + "/")):
                self.elsewhere.append(request.url)
            return
        sent = Sent(request.method, request.url, request.headers, request.post_data_buffer or b"")
        self.sent.append(sent)
        self._by_request[request] = sent

    def _response(self, response: Response) -> None:
        sent = self._by_request.get(response.request)
        if sent is not None:
            sent.status = response.status

    def _failed(self, request: Request) -> None:
        sent = self._by_request.get(request)
        if sent is not None:
            sent.failure = request.failure or "failed"

    def _cdp_request(self, event: dict[str, Any]) -> None:
        request = event["request"]
        if request["method"] == "OPTIONS" and self._ours(request["url"]):
            self.preflights.setdefault(event["requestId"], Preflight(request["url"]))

    def _cdp_response(self, event: dict[str, Any]) -> None:
        if event.get("type") == "Preflight":
            found = self.preflights.setdefault(
                event["requestId"], Preflight(event["response"]["url"])
            )
            found.status = int(event["response"]["status"])

    def _cdp_failed(self, event: dict[str, Any]) -> None:
        found = self.preflights.get(event["requestId"])
        if found is not None and found.status is None:
            found.failure = str(event.get("errorText"))

    # -- what tests ask --------------------------------------------------------------

    def posts(self) -> list[Sent]:
        return [s for s in self.sent if s.method == "POST"]

    def settled(self) -> bool:
        """Every request to lull has an answer or has failed."""
        return all(s.status is not None or s.failure for s in self.sent) and all(
            p.status is not None or p.failure for p in self.preflights.values()
        )

    def assert_clean(self) -> None:
        """Every request to lull, preflights included, answered 2xx; nothing went to a
        third origin."""
        bad = [
            (s.method, s.url, s.status, s.failure)
            for s in self.sent
            if s.failure or s.status is None or not 200 <= s.status < 300
        ]
        bad += [
            ("OPTIONS", p.url, p.status, p.failure)
            for p in self.preflights.values()
            if p.failure or p.status is None or not 200 <= p.status < 300
        ]
        assert bad == [], bad
        assert self.elsewhere == [], self.elsewhere

    def wait(self, what: str, probe: Callable[[], T | bool | None], timeout: float = 20.0) -> T:
        """Poll `probe` every 0.1 s until it gives something true (not None, False, empty).
        The page's events are delivered meanwhile (Playwright's sync API runs its
        handlers only while it is called), so a probe may read `sent` and `preflights`."""
        deadline = time.monotonic() + timeout
        while True:
            got = probe()
            if got:
                return got  # type: ignore[return-value]
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            self.page.wait_for_timeout(100)
