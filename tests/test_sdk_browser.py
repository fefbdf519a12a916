"""Real browser SDKs from npm (Segment analytics-next, posthog-js, Amplitude Browser)
end to end: bundled with esbuild into a page on one origin, run in Chromium, sending to
a real `lull serve` on another origin through CORS.

Each test checks, from both ends: every event the page sent is stored exactly once, on
the expected profile, with the expected name, sessionized; and on the wire, every
request to lull (CORS preflights included) answered 2xx, none was sent twice, and
nothing went anywhere else. A page on an origin its project does not allow gets
nothing stored.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from browser import chromium
from lull.model import parse_time
from lullrun import lull
from sdkpage import SDKS, StaticSite, Wire, build_pages
from serverproc import Keys, LullServer, now_ms

SDK_PROJECTS = (
    "segment", "segment_batch", "posthog", "posthog_json", "posthog_config_js",
    "posthog_config_json", "amplitude", "amplitude_batch",
)  # fmt: skip
CONCLUDED = "Session Concluded"
EXCLUDED = "Identity Set"  # excluded from sessions by default


def allow(server: LullServer, project: str, *origins: str) -> None:
    """`lull settings --allowed-origins`, with the server down."""
    done = lull(server.db, "--project", project, "settings", "--allowed-origins", ",".join(origins))
    assert done.code == 0, done.err


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_pages(tmp_path_factory.mktemp("pages"))


@pytest.fixture(scope="module")
def site(pages: Path) -> Iterator[StaticSite]:
    """The origin the SDK projects allow (they keep the default, `*`; the shops name it)."""
    with StaticSite(pages) as s:
        yield s


@pytest.fixture(scope="module")
def stranger(pages: Path) -> Iterator[StaticSite]:
    """The same pages on another origin, which the shops do not allow."""
    with StaticSite(pages) as s:
        yield s


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, site: StaticSite) -> Iterator[LullServer]:
    """A project per SDK test (sessions on, allowed origins left at `*`), and per SDK a
    `shop-SDK` that allows only `site`'s origin."""
    with LullServer(tmp_path_factory.mktemp("sdk") / "lull.duckdb") as srv:
        for name in SDK_PROJECTS:
            srv.create_project(name, sessions="on")
        for sdk in SDKS:
            srv.create_project(f"shop-{sdk}", sessions="on")
            allow(srv, f"shop-{sdk}", site.origin)
        srv.start()
        yield srv


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture
def tab(browser: Browser) -> Iterator[Page]:
    """A fresh context (empty storage: a new visitor) and page."""
    context = browser.new_context()
    page = context.new_page()
    yield page
    context.close()


def visit(page: Page, site: StaticSite, sdk: str, lull_origin: str) -> Wire:
    wire = Wire(page, lull_origin, site.origin)
    page.goto(f"{site.origin}/{sdk}.html")
    return wire


# -- the checks every SDK goes through -----------------------------------------------


def sent_ids(wire: Wire, ids_of: Callable[[Any], list[str]]) -> Counter[str]:
    """How many POSTs to lull carried each message id."""
    return Counter(i for post in wire.posts() for i in set(ids_of(post.payload())))


def delivered(
    server: LullServer,
    keys: Keys,
    wire: Wire,
    ids_of: Callable[[Any], list[str]],
    count: int,
) -> dict[str, dict[str, Any]]:
    """Wait until the page has sent `count` events and lull has stored them; check that
    each was sent in one request only, that every request (preflights too) answered
    2xx, and that lull holds exactly those events, once each. Gives them by message id."""

    def answered() -> Counter[str] | None:
        ids = sent_ids(wire, ids_of)
        return ids if len(ids) >= count and wire.settled() else None

    ids = wire.wait(f"{count} events sent and answered", answered)
    wire.assert_clean()
    assert len(ids) == count, ids
    assert all(n == 1 for n in ids.values()), f"sent more than once: {ids}"
    retried = [
        p.url for p in wire.posts() if "x-retry-count" in p.headers or "retry_count" in p.query
    ]
    assert retried == []

    def stored() -> list[dict[str, Any]] | None:
        events = [e for e in server.events(keys) if e["name"] != CONCLUDED]
        return events if len(events) >= count else None

    events = wire.wait(f"{count} events stored", stored)
    assert Counter(e["message_id"] for e in events) == Counter(set(ids)), events
    return {e["message_id"]: e for e in events}


def check_sessions(events: list[dict[str, Any]]) -> None:
    """Events that take part in sessions have one, a profile's events (all within
    seconds) share theirs, and two profiles never share one; excluded events have none."""
    by_profile: dict[str, set[str]] = {}
    for e in events:
        if e["name"] == EXCLUDED:
            assert e["session_id"] is None, e
        else:
            assert e["session_id"], e
            by_profile.setdefault(e["profile_id"], set()).add(e["session_id"])
    assert all(len(s) == 1 for s in by_profile.values()), by_profile
    ids = [next(iter(s)) for s in by_profile.values()]
    assert len(set(ids)) == len(ids), by_profile


def check_profile(
    server: LullServer, keys: Keys, user: str, events: list[dict[str, Any]], **traits: Any
) -> None:
    """The user's profile (written every 2 s) gets the traits identify set, and its
    latest session is the one its events were given."""
    session = next(e["session_id"] for e in events if e["profile_id"] == user and e["session_id"])
    server.profile(
        keys,
        user,
        lambda p: (
            p["latest_session_id"] == session
            and all(p["properties"].get(k) == v for k, v in traits.items())
        ),
    )


def recent(event: dict[str, Any], started: int) -> None:
    ts = parse_time(event["ts"], "ts")
    assert started - 5_000 <= ts <= now_ms() + 5_000, event


# -- Segment analytics-next ----------------------------------------------------------

# A visit: two events as an anonymous visitor; once they are stored, a sign-in and two more.
SEGMENT_BROWSE = """async () => {
    await analytics.page("Home", {section: "browse"});
    await analytics.track("Song Played", {genre: "jazz", duration_s: 212});
    return analytics.user().anonymousId();
}"""
SEGMENT_SIGN_IN = """async () => {
    await analytics.identify("u-seg-1", {plan: "premium"});
    await analytics.track("Song Liked", {genre: "jazz"});
    await analytics.track("Purchase Completed", {plan: "premium", amount: 9.99});
}"""


def segment_ids(payload: Any) -> list[str]:
    messages = payload.get("batch", [payload])
    return [m["messageId"] for m in messages]


@pytest.mark.parametrize("batching", [False, True], ids=["one-per-event", "batching"])
def test_segment(server: LullServer, site: StaticSite, tab: Page, batching: bool) -> None:
    """analytics-next sends each call on its own (`/v1/p`, `/v1/t`, `/v1/i`), or in
    batching mode several together (`/v1/b`), as text/plain with Basic auth."""
    keys = server.projects["segment_batch" if batching else "segment"]
    started = now_ms()
    wire = visit(tab, site, "segment", server.base)
    tab.evaluate("([o, k, b]) => lullSegment(o, k, b)", [server.base, keys.web, batching])
    anonymous = tab.evaluate(SEGMENT_BROWSE)
    delivered(server, keys, wire, segment_ids, 2)
    tab.evaluate(SEGMENT_SIGN_IN)
    stored = delivered(server, keys, wire, segment_ids, 5)

    paths = {p.path for p in wire.posts()}
    assert paths == ({"/v1/b"} if batching else {"/v1/p", "/v1/t", "/v1/i"}), paths
    for post in wire.posts():
        assert post.headers["content-type"].startswith("text/plain"), post.headers
        assert post.headers["authorization"].startswith("Basic "), post.headers
    # the Authorization header makes them preflighted (once per path: cached after)
    assert wire.preflights and {p.url for p in wire.preflights.values()} <= {
        server.base + path for path in paths
    }

    events = sorted(stored.values(), key=lambda e: (e["ts"], e["message_id"]))
    got = [(e["name"], e["profile_id"]) for e in events]
    assert sorted(got) == sorted(
        [("Page Viewed", anonymous), ("Song Played", anonymous), (EXCLUDED, "u-seg-1"),
         ("Song Liked", "u-seg-1"), ("Purchase Completed", "u-seg-1")]
    ), got  # fmt: skip
    props = {e["name"]: e["properties"] for e in events}
    assert props["Page Viewed"]["name"] == "Home"
    assert props["Page Viewed"]["section"] == "browse"
    assert props["Song Played"]["genre"] == "jazz"
    assert props["Purchase Completed"]["amount"] == 9.99
    assert props[EXCLUDED]["plan"] == "premium"
    assert all(e["source"] == "web" for e in events)
    for e in events:
        recent(e, started)
    check_sessions(events)
    check_profile(server, keys, "u-seg-1", events, plan="premium")


# -- posthog-js ----------------------------------------------------------------------

# As for Segment: browse (after init's $pageview), then sign in, at once. posthog-js
# sends its $identify on its own at once, so it reaches lull before the batch of the
# events captured before it (flushed every 250 ms): lull ties the visitor to the user
# from the $identify's own time, so those stay the visitor's. (The pause keeps the
# browse events' times apart from the $identify's, to the millisecond.)
POSTHOG_BROWSE = """async () => {
    posthog.capture("Song Played", {genre: "jazz", duration_s: 212});
    posthog.capture("Song Liked", {genre: "jazz"});
    await new Promise((resolve) => setTimeout(resolve, 20));
    return posthog.get_distinct_id();
}"""
POSTHOG_SIGN_IN = """() => {
    posthog.identify("u-ph-1", {plan: "premium"});
    posthog.capture("Purchase Completed", {plan: "premium", amount: 9.99});
}"""


def posthog_ids(payload: Any) -> list[str]:
    events = payload if isinstance(payload, list) else payload.get("batch", [payload])
    return [e["uuid"] for e in events if "event" in e]  # (a /flags body has none)


# posthog-js's options per variant (tests/sdk/posthog.js turns flags and remote config
# off): the project it sends to, and the options it adds.
POSTHOG_MODES: dict[str, tuple[str, dict[str, Any]]] = {
    "gzip": ("posthog", {}),
    "json": ("posthog_json", {"disable_compression": True}),
    # flags and remote config on, as by default: the config script /array/KEY/config.js
    "remote-config-js": (
        "posthog_config_js",
        {"advanced_disable_flags": False, "disable_external_dependency_loading": False},
    ),
    # no external scripts: the config as JSON, /array/KEY/config
    "remote-config-json": ("posthog_config_json", {"advanced_disable_flags": False}),
}


@pytest.mark.parametrize("mode", list(POSTHOG_MODES))
def test_posthog(server: LullServer, site: StaticSite, tab: Page, mode: str) -> None:
    """posthog-js (init captures a $pageview) batches events into POSTs to /e/: gzipped
    JSON as text/plain (a simple request: no preflight), or with compression off (as
    when its remote config could not be loaded) JSON as application/json, after a
    preflight. identify ties the anonymous visitor to the user. With flags and remote
    config on, it loads lull's remote config (readable cross-origin: its batches stay
    gzipped, which a config it could not read would turn off) and goes on with nothing
    switched on: no other script, every request answered 2xx."""
    project, more = POSTHOG_MODES[mode]
    keys = server.projects[project]
    compressed = mode != "json"
    started = now_ms()
    wire = visit(tab, site, "posthog", server.base)
    tab.evaluate("([o, k, m]) => lullPostHog(o, k, m)", [server.base, keys.web, more])
    anonymous = tab.evaluate(POSTHOG_BROWSE)
    tab.evaluate(POSTHOG_SIGN_IN)
    stored = delivered(server, keys, wire, posthog_ids, 5)

    captures = [p for p in wire.posts() if p.path == "/e/"]
    flags = [p for p in wire.posts() if p.path != "/e/"]
    assert {p.path for p in flags} <= ({"/flags/"} if mode.startswith("remote") else set())
    for post in captures:
        assert post.payload()["api_key"] == keys.web
        assert "content-encoding" not in post.headers
        if compressed:
            assert post.headers["content-type"] == "text/plain", post.headers
            assert post.body[:2] == b"\x1f\x8b"
        else:
            assert post.headers["content-type"] == "application/json", post.headers
            assert post.body[:1] == b"{"
    if not compressed:
        assert {p.url for p in wire.preflights.values()} == {f"{server.base}/e/"}
    elif not flags:
        assert wire.preflights == {}
    gets = {s.path for s in wire.sent if s.method == "GET"}
    if mode == "remote-config-js":
        assert gets == {f"/array/{keys.web}/config.js"}, gets
        config = tab.evaluate("(k) => window._POSTHOG_REMOTE_CONFIG[k].config", keys.web)
        assert config["token"] == keys.web and config["sessionRecording"] is False
    elif mode == "remote-config-json":
        assert gets == {f"/array/{keys.web}/config"}, gets
    else:
        assert gets == set(), gets

    events = list(stored.values())
    got = [(e["name"], e["profile_id"]) for e in events]
    assert sorted(got) == sorted(
        [("Page Viewed", anonymous), ("Song Played", anonymous), ("Song Liked", anonymous),
         (EXCLUDED, "u-ph-1"), ("Purchase Completed", "u-ph-1")]
    ), got  # fmt: skip
    props = {e["name"]: e["properties"] for e in events}
    assert props["Page Viewed"]["$current_url"] == f"{site.origin}/posthog.html"
    assert props["Song Played"]["genre"] == "jazz"
    assert props["Purchase Completed"]["amount"] == 9.99
    assert props[EXCLUDED]["$anon_distinct_id"] == anonymous
    assert all("token" not in p for p in props.values())  # the key is not stored
    assert all(e["source"] == "web" for e in events)
    for e in events:
        recent(e, started)
    check_sessions(events)
    check_profile(server, keys, "u-ph-1", events, plan="premium")


# -- Amplitude Browser SDK -----------------------------------------------------------

AMPLITUDE_BROWSE = """async () => {
    amplitude.track("Song Played", {genre: "jazz", duration_s: 212});
    await amplitude.track("Song Liked", {genre: "jazz"}).promise;
    return amplitude.getDeviceId();
}"""
AMPLITUDE_SIGN_IN = """async () => {
    amplitude.setUserId("u-amp-1");
    amplitude.identify(new amplitude.Identify().set("plan", "premium"));
    await amplitude.track("Purchase Completed", {plan: "premium", amount: 9.99}).promise;
}"""


def amplitude_ids(payload: Any) -> list[str]:
    return [e["insert_id"] for e in payload["events"]]


@pytest.mark.parametrize("path", ["/2/httpapi", "/batch"])
def test_amplitude(server: LullServer, site: StaticSite, tab: Page, path: str) -> None:
    """The Amplitude Browser SDK posts JSON (so the browser sends a preflight first)
    to its server URL, the HTTP V2 API or the Batch API."""
    keys = server.projects["amplitude" if path == "/2/httpapi" else "amplitude_batch"]
    started = now_ms()
    wire = visit(tab, site, "amplitude", server.base)
    tab.evaluate("([o, k, p]) => lullAmplitude(o, k, p)", [server.base, keys.web, path])
    device = tab.evaluate(AMPLITUDE_BROWSE)
    delivered(server, keys, wire, amplitude_ids, 2)
    tab.evaluate(AMPLITUDE_SIGN_IN)
    stored = delivered(server, keys, wire, amplitude_ids, 4)

    for post in wire.posts():
        assert post.path == path, post.url
        assert post.headers["content-type"] == "application/json", post.headers
        assert post.payload()["api_key"] == keys.web
    # JSON is not a simple request: the first POST waits for a preflight (cached after)
    assert len(wire.preflights) >= 1
    assert {p.url for p in wire.preflights.values()} == {server.base + path}

    events = list(stored.values())
    got = [(e["name"], e["profile_id"]) for e in events]
    assert sorted(got) == sorted(
        [("Song Played", device), ("Song Liked", device), (EXCLUDED, "u-amp-1"),
         ("Purchase Completed", "u-amp-1")]
    ), got  # fmt: skip
    props = {e["name"]: e["properties"] for e in events}
    assert props["Song Played"]["genre"] == "jazz"
    assert props["Purchase Completed"]["amount"] == 9.99
    amplitude_sessions = {p["Amplitude Session ID"] for p in props.values()}
    assert len(amplitude_sessions) == 1, amplitude_sessions  # kept as a property
    assert all(e["source"] == "web" for e in events)
    for e in events:
        recent(e, started)
    check_sessions(events)
    check_profile(server, keys, "u-amp-1", events, plan="premium")


# -- CORS, from the browser's side -------------------------------------------------------

# Each SDK loaded on a page, then one event: (load, send, events sent, refusal status).
# posthog-js's init captures a $pageview too. Amplitude's SDKs take a 401 or 403 as
# "retry", so lull refuses them with Amplitude's 400 for a bad key.
ONE_EVENT: dict[str, tuple[str, str, int, int]] = {
    "segment": (
        "([o, k]) => lullSegment(o, k, false)",
        "() => analytics.track('Song Played', {genre: 'jazz'})",
        1,
        403,
    ),
    "posthog": (
        "([o, k]) => lullPostHog(o, k)",
        "() => { posthog.capture('Song Played', {genre: 'jazz'}); }",
        2,
        403,
    ),
    "amplitude": (
        "([o, k]) => lullAmplitude(o, k, '/2/httpapi')",
        "() => { amplitude.track('Song Played', {genre: 'jazz'}); }",
        1,
        400,
    ),
}
IDS = {"segment": segment_ids, "posthog": posthog_ids, "amplitude": amplitude_ids}


def send_one(browser: Browser, site: StaticSite, sdk: str, server: LullServer, key: str) -> Wire:
    """A new visitor on `site` whose SDK sends one event (two for PostHog) with `key`."""
    load, send, _, _ = ONE_EVENT[sdk]
    page = browser.new_context().new_page()
    wire = visit(page, site, sdk, server.base)
    page.evaluate(load, [server.base, key])
    page.evaluate(send)
    return wire


@pytest.mark.parametrize("sdk", SDKS)
def test_origin_not_allowed_stores_nothing(
    server: LullServer, site: StaticSite, stranger: StaticSite, browser: Browser, sdk: str
) -> None:
    """`shop-SDK` allows only `site`'s origin. The same page on another origin is
    refused: its preflight (if the request needs one) passes, since other projects
    allow any origin, but the POST with the shop's key is refused, and nothing is
    stored. On the allowed origin the same SDK's events are stored."""
    _, _, count, refusal = ONE_EVENT[sdk]
    keys = server.projects[f"shop-{sdk}"]
    wire = send_one(browser, stranger, sdk, server, keys.web)
    refused = wire.wait("the POST answered", lambda: wire.settled() and wire.posts())
    assert {p.status for p in refused} == {refusal}, refused
    assert all(p.status == 204 for p in wire.preflights.values()), wire.preflights
    assert [e for e in server.events(keys) if e["name"] != CONCLUDED] == []
    wire.page.context.close()

    wire = send_one(browser, site, sdk, server, keys.web)
    stored = delivered(server, keys, wire, IDS[sdk], count)
    assert "Song Played" in {e["name"] for e in stored.values()}
    wire.page.context.close()


@pytest.fixture(scope="module")
def closed(tmp_path_factory: pytest.TempPathFactory, site: StaticSite) -> Iterator[LullServer]:
    """A server whose every project allows only `site`'s origin."""
    with LullServer(tmp_path_factory.mktemp("closed") / "lull.duckdb") as srv:
        for sdk in SDKS:
            srv.create_project(f"shop-{sdk}", sessions="on")
            allow(srv, f"shop-{sdk}", site.origin)
        srv.start()
        yield srv


@pytest.mark.parametrize("sdk", SDKS)
def test_no_project_allows_the_origin(
    closed: LullServer, stranger: StaticSite, browser: Browser, sdk: str
) -> None:
    """When no project allows the page's origin, a request that needs a preflight
    (Segment's, with its Authorization header; Amplitude's JSON) never leaves the
    browser: the preflight is refused. posthog-js's text/plain POST needs none, and is
    refused by lull itself. Either way nothing is stored."""
    keys = closed.projects[f"shop-{sdk}"]
    wire = send_one(browser, stranger, sdk, closed, keys.web)
    if sdk == "posthog":
        refused = wire.wait("the POST answered", lambda: wire.settled() and wire.posts())
        assert {p.status for p in refused} == {403}, refused
        assert wire.preflights == {}
    else:
        # (settled: the SDK retries, and a retry may be under way)
        wire.wait("the POST failed", lambda: wire.settled() and wire.posts())
        assert {p.status for p in wire.preflights.values()} == {403}, wire.preflights
        assert all(p.status is None and p.failure for p in wire.posts()), wire.posts()
    assert closed.events(keys) == []
    wire.page.context.close()
