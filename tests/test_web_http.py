"""The web pages over plain HTTP against a real `lull serve`: who reaches what, CSRF,
the brake on failed sign-ins, and bad input on every form (a clear message, never a 500)."""

from __future__ import annotations

import re
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import duckdb
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from browser import PASSWORD, make_user, populate
from lullrun import lull
from serverproc import LullServer, bearer

PAGES = ("/p/music/board", "/p/music/settings", "/p/music/events", "/p/music/profile?id=u-1")
DATA = ("/web/api/p/music/board", "/web/api/p/music/whatif?timeout=5m")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LullServer]:
    db = tmp_path_factory.mktemp("webhttp") / "lull.duckdb"
    with LullServer(db) as server:
        users = [("ann", "music", "admin"), ("vic", "music", "viewer"), ("rex", "radio", "admin")]
        users += [("locked", "radio", "viewer"), ("held", "radio", "viewer")]
        populate(server, {"music": "on", "radio": None}, [*users, ("ann", "radio", "viewer")])
        server.start()
        yield server


def client(server: LullServer) -> httpx.Client:
    return httpx.Client(base_url=server.base, timeout=30.0)


def token(c: httpx.Client, path: str = "/signin") -> str:
    page = c.get(path)
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def signed_in(server: LullServer, name: str) -> httpx.Client:
    c = client(server)
    got = c.post("/signin", data={"csrf": token(c), "name": name, "password": PASSWORD})
    assert got.status_code == 303, got.text
    return c


def test_a_stranger_is_sent_to_sign_in_and_data_answers_401(site: LullServer) -> None:
    c = client(site)
    for path in ("/", *PAGES, "/p/no-such-project/board"):
        got = c.get(path)
        assert got.status_code == 303, path
        assert got.headers["location"].startswith("/signin?next=%2F"), path
    for path in DATA:
        got = c.get(path)
        assert got.status_code == 401 and got.json() == {"error": "sign in first"}, path
    assert c.get("/signin").status_code == 200
    assert c.get("/static/app.css").status_code == 200


def test_a_form_without_its_csrf_token_is_refused(site: LullServer) -> None:
    c = client(site)
    token(c)  # a session with a token exists, but the form does not carry it
    for data in ({"name": "ann", "password": PASSWORD}, {"csrf": "forged", "name": "ann",
                 "password": PASSWORD}):  # fmt: skip
        got = c.post("/signin", data=data)
        assert got.status_code == 403 and "did not come from this site" in got.text
    ann = signed_in(site, "ann")
    for path, data in (
        ("/p/music/settings", {"timeout": "5m", "timezone": "UTC"}),
        ("/signout", {}),
    ):
        got = ann.post(path, data=data)
        assert got.status_code == 403, path
    assert ann.get("/p/music/board").status_code == 200  # still signed in


def test_another_browser_token_does_not_pass(site: LullServer) -> None:
    ann, vic = signed_in(site, "ann"), client(site)
    got = vic.post("/signin", data={"csrf": token(ann, "/p/music/board"), "name": "vic",
                                    "password": PASSWORD})  # fmt: skip
    assert got.status_code == 403


@pytest.mark.parametrize(
    ("name", "password"),
    [("ann", "wrong password"), ("nobody", PASSWORD), ("", ""), ("x" * 5000, "y" * 5000)],
)
def test_a_wrong_sign_in_says_so_and_gives_no_session(
    site: LullServer, name: str, password: str
) -> None:
    c = client(site)
    got = c.post("/signin", data={"csrf": token(c), "name": name, "password": password})
    assert got.status_code == 401 and "wrong name or password" in got.text
    assert c.get("/p/music/board").status_code == 303


def test_repeated_failures_hold_back_that_account(site: LullServer) -> None:
    c = client(site)
    for _ in range(5):
        got = c.post("/signin", data={"csrf": token(c), "name": "locked", "password": "nope"})
        assert got.status_code == 401
    got = c.post("/signin", data={"csrf": token(c), "name": "locked", "password": PASSWORD})
    assert got.status_code == 429 and "too many failed sign-ins" in got.text
    assert signed_in(site, "held").get("/").status_code in (200, 303)  # others go on


def test_a_forwarded_for_header_does_not_slip_past_the_address_brake(tmp_path: Path) -> None:
    """X-Forwarded-For is not believed, even from 127.0.0.1: rotating it does not give a
    client a fresh address to fail 30 sign-ins from (a server of its own: the brake of
    the module's server is shared by its tests)."""
    for trusted in (False, True):
        with LullServer(tmp_path / f"lull-{trusted}.duckdb") as srv:
            if trusted:  # a proxy named by the operator: its header is the client's address
                srv.serve_args += ["--forwarded-allow-ips", "127.0.0.1"]
            srv.start()
            c = client(srv)
            codes = []
            for i in range(31):
                got = c.post(
                    "/signin",
                    data={"csrf": token(c), "name": f"u{i}", "password": "nope"},
                    headers={"X-Forwarded-For": f"203.0.113.{i}"},
                )
                codes.append(got.status_code)
            assert codes[30] == (401 if trusted else 429), codes
            assert codes[:30] == [401] * 30


def test_after_sign_in_only_a_path_of_this_site_is_followed(site: LullServer) -> None:
    for target, expected in (("/p/music/events", "/p/music/events"), ("//evil.example/", "/"),
                             ("https://evil.example/", "/"), ("/\\evil.example", "/")):  # fmt: skip
        c = client(site)
        got = c.post("/signin", data={"csrf": token(c), "name": "vic", "password": PASSWORD,
                                      "next": target})  # fmt: skip
        assert got.headers["location"] == expected


def test_signing_out_ends_the_session(site: LullServer) -> None:
    c = signed_in(site, "ann")
    other_device = signed_in(site, "ann")
    old_cookie = c.cookies["lull_session"]
    got = c.post("/signout", data={"csrf": token(c, "/p/music/board")})
    assert got.status_code == 303 and got.headers["location"] == "/signin"
    assert c.get("/p/music/board").status_code == 303
    assert old_cookie != c.cookies.get("lull_session")
    # a copy of the cookie saved before signing out opens nothing, Settings included
    replay = client(site)
    replay.cookies.set("lull_session", old_cookie)
    assert replay.get("/p/music/settings").status_code == 303
    assert other_device.get("/p/music/board").status_code == 303  # every session ends
    assert signed_in(site, "ann").get("/p/music/settings").status_code == 200  # and anew


def test_a_new_password_or_removal_ends_the_users_sessions(tmp_path: Path) -> None:
    db = tmp_path / "lull.duckdb"
    with LullServer(db) as srv:
        populate(srv, {"music": "on"}, [("ann", "music", "admin"), ("bob", "music", "viewer")])
        srv.start()
        ann, bob = signed_in(srv, "ann"), signed_in(srv, "bob")
        cookies = {"ann": ann.cookies["lull_session"], "bob": bob.cookies["lull_session"]}
        assert srv.stop() == 0
        changed = lull(db, "user", "passwd", "ann", "--password-stdin", stdin="a new password 1\n")
        assert changed.code == 0 and "sessions have ended" in changed.out, changed.err
        assert lull(db, "user", "remove", "bob").code == 0
        assert "no user named 'bob'" in lull(db, "user", "remove", "bob").err
        srv.start()
        for name, cookie in cookies.items():
            again = client(srv)
            again.cookies.set("lull_session", cookie)
            assert again.get("/p/music/board").status_code == 303, name
        c = client(srv)
        got = c.post("/signin", data={"csrf": token(c), "name": "ann", "password": PASSWORD})
        assert got.status_code == 401
        got = c.post(
            "/signin", data={"csrf": token(c), "name": "ann", "password": "a new password 1"}
        )
        assert got.status_code == 303


def test_a_tampered_cookie_is_a_stranger(site: LullServer) -> None:
    c = signed_in(site, "ann")
    value = c.cookies["lull_session"]
    c.cookies.set("lull_session", value[:-3] + ("AAA" if not value.endswith("AAA") else "BBB"))
    assert c.get("/p/music/board").status_code == 303


def test_an_account_sees_only_its_projects(site: LullServer) -> None:
    vic = signed_in(site, "vic")
    assert vic.get("/").headers["location"] == "/p/music/board"  # one project: its board
    for path in ("/p/radio/board", "/p/radio/events", "/p/ghost/board"):
        got = vic.get(path)
        assert got.status_code == 403 and "has no access to project" in got.text, path
    got = vic.get("/web/api/p/radio/board")
    assert got.status_code == 403 and "no access" in got.json()["error"]
    ann = signed_in(site, "ann")
    picker = ann.get("/")
    assert picker.status_code == 200
    assert 'href="/p/music/board"' in picker.text and 'href="/p/radio/board"' in picker.text
    assert "/p/music/board" not in signed_in(site, "rex").get("/").headers["location"]


def test_a_viewer_gets_no_settings(site: LullServer) -> None:
    vic = signed_in(site, "vic")
    board = vic.get("/p/music/board")
    assert board.status_code == 200 and "/p/music/settings" not in board.text
    assert vic.get("/p/music/settings").status_code == 403
    got = vic.post("/p/music/settings", data={"csrf": token(vic, "/p/music/board"),
                                              "timeout": "5m", "timezone": "UTC"})  # fmt: skip
    assert got.status_code == 403 and "only an admin" in got.text
    ann = signed_in(site, "ann")
    assert ann.get("/p/radio/settings").status_code == 403  # a viewer there


def settings_page(c: httpx.Client) -> str:
    page = c.get("/p/music/settings")
    assert page.status_code == 200
    return page.text


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("timeout", "soon", "bad duration"),
        ("timeout", "30s", "out of range"),
        ("timeout", "25h", "out of range"),
        ("timeout", "", "bad duration"),
        ("timezone", "Mars/Olympus", "unknown time zone"),
        ("timezone", "../../etc/passwd", "unknown time zone"),
        ("sessions", "maybe", "must be on or off"),
        ("excluded", "\n".join(f"E{i}" for i in range(201)), "at most 200"),
        ("excluded", "x" * 300, "over 200 characters"),
        ("allowed_origins", "https://shop.example/cart", "bad origin"),
        ("allowed_origins", "\n".join(f"https://e{i}.example" for i in range(101)), "at most 100"),
    ],
)
def test_bad_settings_are_refused_with_a_message_and_change_nothing(
    site: LullServer, field: str, value: str, message: str
) -> None:
    ann = signed_in(site, "ann")
    form = {"csrf": token(ann, "/p/music/settings"), "sessions": "on", "timeout": "20m",
            "timezone": "UTC", "excluded": "App Installed", field: value}  # fmt: skip
    got = ann.post("/p/music/settings", data=form)
    assert got.status_code == 400 and message in got.text
    assert 'role="alert"' in got.text
    assert 'value="20m"' in settings_page(ann)
    assert (
        site.http.get("/api/v1/board", headers=bearer(site.projects["music"].read_token)).json()[
            "timezone"
        ]
        == "UTC"
    )


def test_settings_are_saved_and_shown(site: LullServer) -> None:
    ann = signed_in(site, "ann")
    form = {"csrf": token(ann, "/p/music/settings"), "sessions": "on", "timeout": "45m",
            "timezone": "Europe/Lisbon", "excluded": "App Installed\nPush Opened\n\n"}  # fmt: skip
    got = ann.post("/p/music/settings", data=form)
    assert got.status_code == 303 and got.headers["location"] == "/p/music/settings"
    page = settings_page(ann)
    assert "Settings saved." in page
    assert 'value="45m"' in page and 'value="Europe/Lisbon"' in page
    assert ">App Installed\nPush Opened</textarea>" in page
    assert ">*</textarea>" in page  # a form without the allowed origins keeps them
    origins = {**form, "allowed_origins": "https://Shop.example\n\nhttp://127.0.0.1:5000/"}
    assert ann.post("/p/music/settings", data=origins).status_code == 303
    assert ">https://shop.example\nhttp://127.0.0.1:5000</textarea>" in settings_page(ann)
    admin = bearer(site.projects["music"].admin_key)
    shown = site.http.get("/api/v1/settings", headers=admin).json()
    assert shown["allowed_origins"] == ["https://shop.example", "http://127.0.0.1:5000"]
    form["allowed_origins"] = "*"
    read = bearer(site.projects["music"].read_token)
    assert site.http.get("/api/v1/board", headers=read).json()["timezone"] == "Europe/Lisbon"
    form |= {"timeout": "20m", "timezone": "UTC", "excluded": "App Installed"}
    assert ann.post("/p/music/settings", data=form).status_code == 303


@pytest.mark.parametrize(
    ("typed", "saved"),
    [("90s", "90s"), ("20m", "20m"), ("1h", "1h"), ("1h30m", "90m"), ("30 min", "30m"),
     ("0.5h", "30m"), ("2 hours", "2h"), ("45", "45m"), ("1 h 15 min", "75m")],
)  # fmt: skip
def test_the_timeout_box_takes_units_and_a_bare_number_is_minutes(
    site: LullServer, typed: str, saved: str
) -> None:
    ann = signed_in(site, "ann")
    form = {"csrf": token(ann, "/p/music/settings"), "sessions": "on", "timeout": typed,
            "timezone": "UTC", "excluded": "App Installed"}  # fmt: skip
    assert ann.post("/p/music/settings", data=form).status_code == 303
    assert f'id="timeout" name="timeout" value="{saved}"' in settings_page(ann)
    got = ann.get("/web/api/p/music/whatif", params={"timeout": typed})
    assert got.status_code == 200 and got.json()["timeout_ms"]["proposed"] > 0
    form["timeout"] = "20m"
    assert ann.post("/p/music/settings", data=form).status_code == 303


def test_a_bare_1800_is_minutes_and_the_refusal_says_how_to_write_seconds(
    site: LullServer,
) -> None:
    ann = signed_in(site, "ann")
    form = {"csrf": token(ann, "/p/music/settings"), "sessions": "on", "timeout": "1800",
            "timezone": "UTC", "excluded": "App Installed"}  # fmt: skip
    got = ann.post("/p/music/settings", data=form)
    assert got.status_code == 400
    assert "a bare number is minutes: for seconds write 1800s" in got.text
    assert 'value="1800"' in got.text  # the form keeps what was typed


def test_a_bad_board_link_keeps_its_filters_on_the_page(site: LullServer) -> None:
    vic = signed_in(site, "vic")
    page = vic.get("/p/music/board?from=2026-11-10&until=2026-11-01&source=ios")
    assert page.status_code == 400
    assert 'id="from" name="from" value="2026-11-10"' in page.text
    assert 'id="until" name="until" value="2026-11-01"' in page.text
    assert '<option value="ios" selected>' in page.text
    assert "the first day comes after the last day" in page.text
    assert 'rel="preload"' not in page.text  # no request for figures that cannot be


@pytest.mark.parametrize(
    ("query", "message"),
    [("days=abc", "whole number"), ("days=0", "whole number"), ("days=99999", "whole number"),
     ("until=2026-13-01", "YYYY-MM-DD"), ("until=yesterday", "YYYY-MM-DD"),
     ("from=soon", "YYYY-MM-DD"), ("from=2026-11-10&until=2026-11-01", "comes after"),
     ("from=1990-01-01&until=2026-11-01", "at most 3660 days"), ("source=tv", "unknown source"),
     ("until=9999-12-31", "outside the calendar"), ("until=0001-01-05", "outside the calendar")],
)  # fmt: skip
def test_bad_board_ranges_are_a_400_with_a_message(
    site: LullServer, query: str, message: str
) -> None:
    vic = signed_in(site, "vic")
    got = vic.get(f"/web/api/p/music/board?{query}")
    assert got.status_code == 400 and message in got.json()["error"], query
    page = vic.get(f"/p/music/board?{query}")
    assert page.status_code == 400 and 'role="alert"' in page.text, query


@pytest.mark.parametrize("timeout", ["", "abc", "0m", "30s", "25h", "9" * 30])
def test_a_bad_what_if_timeout_is_a_400(site: LullServer, timeout: str) -> None:
    got = signed_in(site, "ann").get("/web/api/p/music/whatif", params={"timeout": timeout})
    assert got.status_code == 400 and got.json()["error"].startswith("'timeout'")


def test_profile_and_event_searches_take_any_text(site: LullServer) -> None:
    vic = signed_in(site, "vic")
    missing = vic.get("/p/music/profile", params={"id": "nobody/here?%"})
    assert missing.status_code == 404 and "no profile" in missing.text
    for params in ({"name": "<script>alert(1)</script>"}, {"profile_id": "ü/ß"},
                   {"session_id": "'; DROP TABLE events; --"}):  # fmt: skip
        got = vic.get("/p/music/events", params=params)
        assert got.status_code == 200 and "No events match." in got.text
        assert "<script>alert(1)</script>" not in got.text


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.dictionaries(
        st.sampled_from(["sessions", "timeout", "timezone", "excluded", "rebuild", "csrf"]),
        st.text(max_size=60),
    )
)
def test_no_settings_form_is_a_500(site: LullServer, form: dict[str, str]) -> None:
    ann = _ann(site)
    form = {"csrf": token(ann, "/p/music/board"), **{k: v for k, v in form.items() if k != "csrf"}}
    form.setdefault("timeout", "nonsense")  # never save: every example is refused
    got = ann.post("/p/music/settings", data=form)
    assert got.status_code in (303, 400), got.text
    if got.status_code == 303:  # it was valid after all: put the defaults back
        ann.post("/p/music/settings", data={"csrf": form["csrf"], "sessions": "on",
                                            "timeout": "20m", "timezone": "UTC"})  # fmt: skip


_CLIENTS: dict[str, httpx.Client] = {}


def _ann(site: LullServer) -> httpx.Client:
    if site.base not in _CLIENTS:
        _CLIENTS[site.base] = signed_in(site, "ann")
    return _CLIENTS[site.base]


def test_a_malformed_form_body_is_not_a_500(site: LullServer) -> None:
    c = client(site)
    token(c)
    for headers, body in (
        ({"content-type": "multipart/form-data; boundary=xyz"}, b"--xyz\r\ngarbage"),
        ({"content-type": "application/x-www-form-urlencoded"}, b"%%%&&&==="),
        ({"content-type": "application/json"}, b'{"name": "ann"}'),
    ):
        got = c.post("/signin", content=body, headers=headers)
        assert got.status_code in (400, 403), (headers, got.status_code)


def test_a_new_store_gets_an_admin_whose_password_is_shown_once(tmp_path: Path) -> None:
    with LullServer(tmp_path / "lull.duckdb") as server:
        server.start()
        printed = server.db.with_name(f"{server.db.name}.serve1.err").read_text()
        found = re.search(r"made user 'admin' .* shown once: (\S+)", printed)
        assert found, printed
        c = client(server)
        got = c.post("/signin", data={"csrf": token(c), "name": "admin",
                                      "password": found.group(1)})  # fmt: skip
        assert got.status_code == 303
        assert c.get("/").headers["location"] == "/p/default/board"
        server.stop()
        server.start()  # not made again
        again = server.db.with_name(f"{server.db.name}.serve2.err").read_text()
        assert "made user" not in again


def test_pages_allow_no_inline_script_no_framing_and_no_caching(site: LullServer) -> None:
    for got in (client(site).get("/signin"), signed_in(site, "vic").get("/p/music/board")):
        assert "script-src" not in got.headers["content-security-policy"]  # default: 'self'
        assert "default-src 'self'" in got.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in got.headers["content-security-policy"]
        assert got.headers["x-frame-options"] == "DENY"
        assert got.headers["cache-control"] == "no-store"
        assert "<script>" not in got.text  # every script is a file under /static/


def test_the_sign_in_page_sends_a_signed_in_user_on(site: LullServer) -> None:
    got = signed_in(site, "vic").get("/signin", params={"next": "/p/music/events"})
    assert got.status_code == 303 and got.headers["location"] == "/p/music/events"


def test_a_rebuild_with_sessions_off_is_refused_on_the_form(site: LullServer) -> None:
    ann = signed_in(site, "ann")
    form = {"csrf": token(ann, "/p/music/settings"), "timeout": "20m", "timezone": "UTC",
            "excluded": "App Installed", "rebuild": "on"}  # fmt: skip
    got = ann.post("/p/music/settings", data=form)
    assert got.status_code == 400 and "sessions are off" in got.text
    assert 'id="sessions" name="sessions" value="on" checked' in settings_page(ann)


def test_old_history_opens_on_its_latest_30_days(site: LullServer) -> None:
    radio = site.projects["radio"]
    ann = signed_in(site, "rex")
    assert "board-note" not in ann.get("/p/radio/board").text  # no sessions at all yet
    got = ann.post("/p/radio/settings", data={"csrf": token(ann, "/p/radio/settings"),
                   "sessions": "on", "timeout": "20m", "timezone": "UTC"})  # fmt: skip
    assert got.status_code == 303
    old = [{"message_id": f"old-{i}", "profile_id": "p-1", "name": "Page Viewed",
            "ts": f"1995-08-01T10:0{i}:00Z"} for i in range(3)]  # fmt: skip
    assert site.post_events(radio.web, old).status_code == 200
    for _ in range(100):
        page = ann.get("/p/radio/board")
        if "board-note" in page.text:
            break
        time.sleep(0.1)  # until the timer concludes the session
    assert 'id="until" name="until" value="1995-08-01"' in page.text
    assert 'id="from" name="from" value="1995-07-03"' in page.text
    chosen = ann.get("/p/radio/board", params={"until": "2026-11-01"})
    assert "board-note" not in chosen.text and 'value="2026-11-01"' in chosen.text


OLD_NAME = "acme/web shop"  # a name an older lull let in: a `/` (and a space)


@pytest.fixture(scope="module")
def old_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LullServer]:
    """A store whose project was named before names were restricted. `lull project create`
    refuses such a name now, so the name is written into the store as an older lull did."""
    db = tmp_path_factory.mktemp("oldname") / "lull.duckdb"
    with LullServer(db) as server:
        server.create_project("renamed", sessions="on")
        with duckdb.connect(str(db)) as con:
            con.execute("UPDATE projects SET name = ? WHERE name = 'renamed'", [OLD_NAME])
        make_user(server, "ann", OLD_NAME, "admin")
        server.start()
        yield server


def test_a_project_whose_name_holds_a_slash_is_reachable(old_store: LullServer) -> None:
    ann = signed_in(old_store, "ann")
    home = ann.get("/")
    base = "/p/acme%2Fweb%20shop"
    assert home.status_code == 303 and home.headers["location"] == f"{base}/board"
    board = ann.get(home.headers["location"])
    assert board.status_code == 200 and OLD_NAME in board.text
    links = set(re.findall(r'href="(/p/[^"?]+)', board.text))
    assert {f"{base}/board", f"{base}/events", f"{base}/profile", f"{base}/settings"} <= links
    for link in links:
        got = ann.get(link)
        assert got.status_code == 200, (link, got.text[:300])
        assert OLD_NAME in got.text, link
    assert ann.get("/web/api/p/acme%2Fweb%20shop/board").status_code == 200
    assert ann.get("/web/api/p/acme%2Fweb%20shop/whatif?timeout=5m").status_code == 200
    # its settings can be changed, and the answer leads back to them
    form = {"csrf": token(ann, f"{base}/settings"), "sessions": "on", "timeout": "45m",
            "timezone": "UTC", "excluded": "App Installed"}  # fmt: skip
    saved = ann.post(f"{base}/settings", data=form)
    assert saved.status_code == 303 and saved.headers["location"] == f"{base}/settings"
    assert 'value="45m"' in ann.get(saved.headers["location"]).text
    # the name's parts are not projects of their own
    assert ann.get("/p/acme/board").status_code in (403, 404)


def test_signing_in_leads_back_to_a_project_whose_name_holds_a_slash(
    old_store: LullServer,
) -> None:
    c = client(old_store)
    sent = c.get("/p/acme%2Fweb%20shop/events")
    assert sent.status_code == 303 and sent.headers["location"].startswith("/signin?next=")
    target = urllib.parse.parse_qs(sent.headers["location"].split("?", 1)[1])["next"][0]
    form = {"csrf": token(c), "name": "ann", "password": PASSWORD, "next": target}
    back = c.post("/signin", data=form)
    assert back.status_code == 303
    page = c.get(back.headers["location"])
    assert page.status_code == 200 and OLD_NAME in page.text and "Events" in page.text
