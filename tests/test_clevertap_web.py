"""CleverTap's web SDK (clevertap-web-sdk 2.5.2) against lull: the payload decoder on
payloads the SDK's own compressor makes, the mapping, `GET /a` over HTTPS on a real
`lull serve`, and the real SDK in Chromium sending page views, events and a login."""

from __future__ import annotations

import functools
import http.server
import json
import re
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lull.errors import BadInput, TooLarge
from lull.ingest.clevertap_web import (
    IDENTITY_SET,
    PAGE_VIEWED,
    SESSION_PROPERTY,
    Hit,
    answer_guid,
    decode,
    decompress_base64,
    message_id,
    to_event,
)
from serverproc import HOST, Keys, LullServer, free_port, now_ms

SDK = Path(__file__).parent / "sdk"
SDK_JS = SDK / "node_modules" / "clevertap-web-sdk" / "clevertap.js"
ESBUILD = SDK / "node_modules" / ".bin" / "esbuild"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--ignore-certificate-errors",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


# -- the SDK's own compressor, run by node ------------------------------------------


@functools.cache
def _compressor() -> str:
    """The SDK's `compress` and `compressToBase64`, cut out of its bundle as they are."""
    source = SDK_JS.read_text()
    start = source.index("  const compress = uncompressed => {")
    end = source.index("  const getURLParams = url => {")
    return source[start:end]


def sdk_compress(texts: list[str]) -> list[str]:
    """Each text as the SDK puts it in `d` (before URL-encoding)."""
    script = (
        _compressor() + "\nconst inputs = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        "\nprocess.stdout.write(JSON.stringify(inputs.map(compressToBase64)));"
    )
    done = subprocess.run(
        ["node", "-e", script], input=json.dumps(texts), capture_output=True, text=True, check=True
    )
    result: list[str] = json.loads(done.stdout)
    return result


def d_of(payload: dict[str, Any]) -> str:
    """A payload as the SDK sends it: `JSON.stringify`, then its compressToBase64."""
    return sdk_compress([json.dumps(payload, ensure_ascii=False, separators=(",", ":"))])[0]


# -- unit: the decoder --------------------------------------------------------------


def test_decoder_reads_what_the_sdk_compresses() -> None:
    texts = [
        "",
        "a",
        "hello hello hello hello",
        json.dumps({"evtName": "Song Played", "evtData": {"genre": "jazz", "n": 3}}),
        json.dumps({"name": "ünïcödé ✓ 中文 and 😀 outside the BMP"}, ensure_ascii=False),
        "x" * 20_000,
        "".join(chr(c) for c in range(32, 3000)),
    ]
    for text, compressed in zip(texts, sdk_compress(texts), strict=True):
        decoded = decompress_base64(compressed)
        assert decoded.encode("utf-16-le", "surrogatepass").decode("utf-16-le") == text


def test_decode_gives_the_json_object_and_joins_surrogate_pairs() -> None:
    payload = {"type": "event", "evtName": "Liked 😀", "evtData": {"k": "v"}, "id": "A"}
    assert decode(d_of(payload)) == payload
    # the SDK URL-encodes `d`; a '+' that arrives unencoded reads as a space
    d = d_of({"id": "A", "cpg": "https://example.com/?q=" + "~" * 40})
    assert decode(d.replace("+", " ")) == decode(d)


@pytest.mark.parametrize(
    ("d", "message"),
    [
        ("", "field 'd' is missing"),
        ("abc$", "is not a base64 character"),
        ("N4Ig", "ends too early"),
        ("////", "not an LZ-string payload"),
    ],
)
def test_decode_refuses_what_is_not_an_sdk_payload(d: str, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        decode(d)


def test_decode_refuses_text_that_is_not_a_json_object() -> None:
    not_json, array = sdk_compress(["not json", "[1, 2]"])
    with pytest.raises(BadInput, match="not compressed JSON"):
        decode(not_json)
    with pytest.raises(BadInput, match="must hold a JSON object"):
        decode(array)


def test_decoder_bounds_the_output_of_a_crafted_payload() -> None:
    (compressed,) = sdk_compress(["ab" * 400_000])  # small compressed, 800 K characters out
    assert len(compressed) < 10_000
    with pytest.raises(TooLarge, match="over 512 KB"):
        decompress_base64(compressed)


# -- unit: the mapping --------------------------------------------------------------


def hit(kind: str, payload: dict[str, Any], **query: str) -> Hit:
    return Hit.of({"type": kind, "d": d_of(payload), **query})


def unlinked(guid: str, at: int | None = None) -> str:
    return guid


def test_a_page_view_is_page_viewed_on_the_device_guid() -> None:
    h = hit(
        "page",
        {"id": "ACC", "g": "G1", "s": 1700000000, "pg": 1, "cpg": "https://shop.test/a",
         "referrer": "search.test", "us": "mail", "af": {"lib": "web-sdk-v2.5.2"}},
        i="1700000100", sn="0", rn="1", r="1700000100500",
    )  # fmt: skip
    mapped = to_event(h, "G1", 1700000000, unlinked, received_at=1700000101000)
    event = mapped.event
    assert event is not None and mapped.link is None and mapped.traits is None
    assert (event.name, event.profile_id, event.source) == (PAGE_VIEWED, "G1", "web")
    assert (event.ts, event.sent_at) == (1700000100000, 1700000100500)
    assert event.properties == {
        "url": "https://shop.test/a",
        "referrer": "search.test",
        "utm_source": "mail",
        SESSION_PROPERTY: 1700000000,
    }


def test_an_event_push_after_login_goes_to_the_linked_identity() -> None:
    h = hit("push", {"type": "event", "evtName": "Song Played", "evtData": {"genre": "jazz"},
                     "id": "ACC", "g": "G1", "s": 5}, i="10", sn="0", rn="4")  # fmt: skip
    linked = {"G1": "u-42"}
    mapped = to_event(h, "G1", 5, lambda g, _at: linked.get(g, g), received_at=11_000)
    assert mapped.event is not None
    assert (mapped.event.name, mapped.event.profile_id) == ("Song Played", "u-42")
    assert mapped.event.properties == {"genre": "jazz", SESSION_PROPERTY: 5}


def test_on_user_login_links_the_guid_and_sets_traits() -> None:
    profile = {"Identity": "u-42", "Name": "Ann", "Email": "ann@example.com", "tz": "UTC+0"}
    h = hit("push", {"type": "profile", "profile": profile, "id": "ACC", "g": "G1",
                     "isOUL": True}, i="10", sn="0", rn="3")  # fmt: skip
    assert h.login and h.identity == "u-42"
    assert answer_guid(h, unlinked, lambda: "FRESH") == "G1"
    mapped = to_event(h, "G1", 7, unlinked, received_at=10_500)
    assert mapped.link == ("G1", "u-42")
    assert mapped.traits == ("u-42", profile, 10_000)
    assert mapped.event is not None
    assert (mapped.event.name, mapped.event.profile_id) == (IDENTITY_SET, "u-42")
    assert mapped.event.properties == {**profile, SESSION_PROPERTY: 7}


def test_a_guid_gets_a_fresh_one_when_none_or_when_another_user_logs_in() -> None:
    first = hit("page", {"id": "ACC", "cpg": "https://shop.test/"}, rn="1")
    assert answer_guid(first, unlinked, lambda: "FRESH") == "FRESH"
    other = hit("push", {"type": "profile", "profile": {"Identity": "u-7"}, "id": "ACC",
                         "g": "G1", "isOUL": True}, rn="2")  # fmt: skip
    assert answer_guid(other, lambda g: "u-42", lambda: "FRESH") == "FRESH"
    assert answer_guid(other, lambda g: "u-7", lambda: "FRESH") == "G1"


def test_the_session_is_the_recorded_one_else_the_one_a_resend_carries() -> None:
    recorded = hit("push", {"type": "event", "evtName": "E", "s": 100}, s="200")
    assert recorded.session == 100
    assert hit("push", {"type": "event", "evtName": "E"}, s="200").session == 200
    for query in ({}, {"s": "0"}, {"s": "²"}, {"s": "9" * 40}, {"s": "-5"}):
        assert hit("push", {"type": "event", "evtName": "E"}, **query).session is None


def test_profile_push_without_identity_updates_the_current_profile() -> None:
    h = hit("push", {"type": "profile", "profile": {"Plan": "gold"}, "id": "ACC", "g": "G1"})
    mapped = to_event(h, "G1", 7, lambda g, _at: "u-42", received_at=10_000)
    assert mapped.link is None
    assert mapped.traits == ("u-42", {"Plan": "gold"}, 10_000)


def test_what_stores_nothing_and_what_is_refused() -> None:
    ping = hit("ping", {"id": "ACC", "g": "G1"})
    assert to_event(ping, "G1", 1, unlinked, 1000).event is None
    fetch = hit("push", {"type": "event", "evtName": "wzrk_fetch", "evtData": {"t": 4},
                         "id": "ACC", "g": "G1"})  # fmt: skip
    assert to_event(fetch, "G1", 1, unlinked, 1000).event is None
    concluded = hit("push", {"type": "event", "evtName": "Session Concluded", "id": "ACC"})
    with pytest.raises(BadInput, match="'Session Concluded' is a system event"):
        to_event(concluded, "G1", 1, unlinked, 1000)
    with pytest.raises(BadInput, match="'type': 'nope'"):
        Hit.of({"type": "nope", "d": d_of({"id": "ACC"})})
    big = hit("push", {"type": "event", "evtName": "Big", "evtData": {"x": "y" * 40_000}})
    with pytest.raises(TooLarge, match="over 32 KB"):
        to_event(big, "G1", 1, unlinked, 1000)
    ahead = hit("push", {"type": "event", "evtName": "E", "id": "ACC"}, i="0", r="99999999999")
    with pytest.raises(BadInput, match="field 'r'"):
        to_event(ahead, "G1", 1, unlinked, 1000)


def test_message_ids_recognise_a_resent_request_only() -> None:
    payload = {"type": "event", "evtName": "E", "evtData": {}, "id": "ACC", "g": "G1"}
    sent = hit("push", payload, i="10", sn="0", rn="5", r="10000", gc="G1")
    resent = hit("push", payload, i="10", sn="0", rn="5", r="12000", tries="2")
    assert message_id(sent, "G1") == message_id(resent, "G1")
    assert message_id(sent, "G1") != message_id(hit("push", payload, i="10", sn="1", rn="6"), "G1")
    assert message_id(sent, "G1") != message_id(sent, "G2")  # two new devices, same page


# -- HTTPS: a real `lull serve` -------------------------------------------------------


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, made now."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    try:
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-days", "2", "-subj", f"/CN={HOST}", "-addext",
             f"subjectAltName=IP:{HOST}", "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True,
        )  # fmt: skip
        return cert, key
    import ipaddress

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]),
            critical=False,
        )
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert, key


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LullServer]:
    directory = tmp_path_factory.mktemp("clevertap_web")
    with LullServer(directory / "lull.duckdb", tls=make_certificate(directory)) as srv:
        srv.create_project("site", sessions="on")
        srv.create_project("browser", sessions="on")
        srv.start()
        yield srv


def until(check: Callable[[], Any], what: str, wait: float = 20.0) -> Any:
    """Poll `check` until it gives something truthy, or fail after `wait` seconds."""
    deadline = time.monotonic() + wait
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def get_a(server: LullServer, **query: str) -> httpx.Response:
    return server.http.get("/a?t=96&" + urllib.parse.urlencode(query))


def test_serve_speaks_tls(server: LullServer) -> None:
    assert server.base.startswith("https://")
    assert server.http.get("/healthz").status_code == 200
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://{HOST}:{server.port}/healthz", timeout=5)


def test_serve_wants_both_certificate_and_key(tmp_path: Path) -> None:
    cert, _ = make_certificate(tmp_path)
    done = subprocess.run(
        [str(Path(__file__).parent.parent / ".venv" / "bin" / "lull"), "--db",
         str(tmp_path / "x.duckdb"), "serve", "--ssl-certfile", str(cert)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    assert "--ssl-certfile and --ssl-keyfile go together" in done.stderr


def test_a_request_is_stored_answered_and_a_resend_is_a_duplicate(server: LullServer) -> None:
    keys = server.projects["site"]
    t = now_ms() // 1000
    payload = {"type": "event", "evtName": "Added To Cart", "evtData": {"sku": "A-1"},
               "id": keys.account_id, "g": "dev-http-1", "s": t - 5}  # fmt: skip
    query = {"type": "push", "d": d_of(payload), "rn": "3", "i": str(t), "sn": "0"}
    first = get_a(server, **query, r=str(t * 1000), gc="dev-http-1")
    assert first.status_code == 200, first.text
    assert first.headers["content-type"].startswith("application/javascript")
    assert first.text == f'window.$WZRK_WR && window.$WZRK_WR.s("dev-http-1", {t - 5}, false, 3);\n'
    again = get_a(server, **query, r=str(t * 1000 + 4000), gc="dev-http-1", tries="2")
    assert again.status_code == 200 and again.text == first.text
    stored = server.events(keys, profile_id="dev-http-1")
    assert [(e["name"], e["properties"]) for e in stored] == [
        ("Added To Cart", {"sku": "A-1", SESSION_PROPERTY: t - 5})
    ]
    assert stored[0]["ts"].startswith(time.strftime("%Y-%m-%dT", time.gmtime(t)))


def test_a_first_request_gets_a_new_guid_and_a_session(server: LullServer) -> None:
    keys = server.projects["site"]
    payload = {"id": keys.account_id, "pg": 1, "cpg": "https://shop.test/first"}
    got = get_a(server, type="page", d=d_of(payload), rn="1", i=str(now_ms() // 1000), sn="0")
    assert got.status_code == 200, got.text
    prefix = 'window.$WZRK_WR && window.$WZRK_WR.s("'
    assert got.text.startswith(prefix)
    guid, rest = got.text[len(prefix) :].split('", ', 1)
    session = int(rest.split(",")[0])
    assert len(guid) == 32 and abs(session - now_ms() // 1000) < 60
    (event,) = server.events(keys, profile_id=guid)
    assert event["name"] == PAGE_VIEWED
    assert event["properties"] == {"url": "https://shop.test/first", SESSION_PROPERTY: session}
    assert event["session_id"] is not None  # a web event of a project with sessions on


def test_refused_and_unreadable_requests(server: LullServer) -> None:
    keys = server.projects["site"]
    concluded = {"type": "event", "evtName": "Session Concluded", "id": keys.account_id,
                 "g": "dev-http-2"}  # fmt: skip
    got = get_a(server, type="push", d=d_of(concluded), rn="2")
    # refused for good: said on the console, acknowledged so the SDK does not send it again
    assert got.status_code == 200
    assert "console.error(\"lull: field 'evtName': 'Session Concluded' is a system event\")" in (
        got.text
    )
    assert re.search(r'window\.\$WZRK_WR\.s\("dev-http-2", [0-9]+, false, 2\);\n$', got.text)
    assert server.events(keys, profile_id="dev-http-2") == []
    garbage = get_a(server, type="push", d="%%%not-lz", rn="2")
    assert garbage.status_code == 400
    assert garbage.text.startswith("/* lull: field 'd'") and "s(" not in garbage.text
    stranger = get_a(server, type="push", d=d_of({"id": "NOPE", "type": "event"}), rn="2")
    assert stranger.status_code == 401 and "unknown account id 'NOPE'" in stranger.text
    wrong_type = get_a(server, type="evil", d=d_of({"id": keys.account_id}))
    assert wrong_type.status_code == 400 and "'type'" in wrong_type.text
    assert server.http.get("/healthz").status_code == 200


# -- the real SDK in Chromium ---------------------------------------------------------

ENTRY = """
import clevertap from "clevertap-web-sdk";
window.ct = clevertap;
window.pending = () => {
  const raw = localStorage.getItem("WZRK_L");
  if (!raw) return 0;
  try { return Object.keys(JSON.parse(decodeURIComponent(raw))).length; } catch (e) { return -1; }
};
"""

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>shop</title></head>
<body><h1>shop</h1><script src="/bundle.js"></script></body></html>
"""


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A page on its own origin (plain HTTP) that loads the SDK bundled by esbuild."""
    root = tmp_path_factory.mktemp("site")
    subprocess.run(  # the entry on stdin resolves its imports from tests/sdk, the cwd
        [str(ESBUILD), "--bundle", "--format=iife", "--log-level=warning",
         f"--outfile={root / 'bundle.js'}"],
        input=ENTRY, text=True, check=True, capture_output=True, cwd=SDK,
    )  # fmt: skip
    (root / "shop.html").write_text(PAGE)
    handler = functools.partial(Quiet, directory=str(root))
    httpd = http.server.ThreadingHTTPServer((HOST, free_port()), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_the_real_sdk_sends_page_views_events_and_a_login(server: LullServer, site: str) -> None:
    from playwright.sync_api import Page, Request, Response, sync_playwright

    keys: Keys = server.projects["browser"]
    sent: list[dict[str, str]] = []
    failed: list[str] = []
    statuses: list[int] = []

    def on_request(request: Request) -> None:
        if request.url.startswith(server.base):
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(request.url).query))
            sent.append(query)

    def on_response(response: Response) -> None:
        if response.url.startswith(server.base):
            statuses.append(response.status)

    def on_failed(request: Request) -> None:
        if request.url.startswith(server.base):
            failed.append(f"{request.url}: {request.failure}")

    def settle(page: Page, what: str) -> None:
        """Wait until the SDK has every request it made acknowledged (its backup empty)."""
        until(lambda: page.evaluate("window.pending()") == 0, what)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("request", on_request)
            page.on("response", on_response)
            page.on("requestfailed", on_failed)
            page.goto(f"{site}/shop.html?utm_source=news")
            page.evaluate(
                "([account, target]) => { window.ct.init(account, '', target); }",
                [keys.account_id, f"{HOST}:{server.port}"],
            )
            guid = until(lambda: page.evaluate("window.ct.getCleverTapID()"), "a guid")
            page.evaluate("window.ct.event.push('Song Played', {genre: 'jazz', n: 3})")
            settle(page, "the first page's requests to be acknowledged")
            page.evaluate(
                "window.ct.onUserLogin.push({Site: {Identity: 'u-42', Name: 'Ann',"
                " Email: 'ann@example.com'}})"
            )
            settle(page, "the login to be acknowledged")
            page.evaluate("window.ct.event.push('Song Liked', {genre: 'jazz'})")
            page.evaluate("window.ct.profile.push({Site: {Plan: 'gold'}})")
            settle(page, "the pushes after the login to be acknowledged")
            assert page.evaluate("window.ct.getCleverTapID()") == guid
        finally:
            browser.close()

    def stored() -> list[dict[str, Any]]:
        return sorted(server.events(keys), key=lambda e: e["ts"])

    names = [PAGE_VIEWED, "Song Played", IDENTITY_SET, "Song Liked", IDENTITY_SET]
    events = until(lambda: (got := stored()) and len(got) >= len(names) and got, "events")
    time.sleep(0.5)  # anything sent twice would have been stored by now
    events = stored()
    assert sorted(e["name"] for e in events) == sorted(names), events
    by_name: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_name.setdefault(e["name"], []).append(e)
    (page_view,) = by_name[PAGE_VIEWED]
    (played,) = by_name["Song Played"]
    (liked,) = by_name["Song Liked"]
    login, plan = sorted(by_name[IDENTITY_SET], key=lambda e: "Plan" in e["properties"])
    # before the login the device's guid, after it the user (lull does not rewrite history)
    assert page_view["profile_id"] == guid and played["profile_id"] == guid
    assert login["profile_id"] == liked["profile_id"] == plan["profile_id"] == "u-42"
    assert page_view["properties"]["url"] == f"{site}/shop.html?utm_source=news"
    assert page_view["properties"]["utm_source"] == "news"
    assert played["properties"]["genre"] == "jazz" and played["properties"]["n"] == 3
    assert login["properties"]["Identity"] == "u-42" and login["properties"]["Name"] == "Ann"
    assert plan["properties"]["Plan"] == "gold"
    sdk_sessions = {e["properties"][SESSION_PROPERTY] for e in events}
    assert len(sdk_sessions) == 1 and isinstance(sdk_sessions.pop(), int)
    for e in (page_view, played, liked):  # eligible web events are in lull's sessions
        assert e["source"] == "web" and e["session_id"] is not None
    for e in (login, plan):  # Identity Set is excluded from sessions by default
        assert e["session_id"] is None
    profile = server.profile(keys, "u-42", lambda p: p["properties"].get("Plan") == "gold")
    assert profile["properties"]["Name"] == "Ann"
    # every request answered, none failed, none sent twice
    assert failed == []
    assert sent and statuses == [200] * len(sent), (statuses, sent)
    recorded = [(q.get("type"), q.get("d"), q.get("rn"), q.get("i"), q.get("sn")) for q in sent]
    assert len(recorded) == len(set(recorded)), sent
