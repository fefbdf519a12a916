"""Settings changed while `lull serve` runs (PUT /api/v1/settings, admin key): a timeout
change with a rebuild, activation and deactivation, a shorter timeout on open sessions,
events arriving during rebuilds, bad bodies."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from lull.model import format_time
from lullrun import lull
from serverproc import Keys, LullServer, bearer, export, now_ms

MIN = 60_000
PROJECTS = {  # name: settings made before the server starts
    "rebuild": ("on", "1m"),
    "toggle": ("off", "20m"),
    "timer": ("on", "20m"),
    "bad": ("on", "20m"),
    "busy": ("on", "1h"),
    "both": ("on", "20m"),
    "history": ("on", "20m"),
}


class Project:
    def __init__(self, made: dict[str, Any]) -> None:
        self.keys = Keys.of(made)
        self.admin: str = made["admin_key"]


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LullServer, dict[str, Project]]]:
    db = tmp_path_factory.mktemp("settings") / "lull.duckdb"
    server = LullServer(db)
    projects = {}
    for name, (sessions, timeout) in PROJECTS.items():
        made = lull(db, "project", "create", name, "--json")
        assert made.code == 0, made.err
        changed = lull(
            db, "--project", name, "settings", "--sessions", sessions, "--timeout", timeout
        )
        assert changed.code == 0, changed.err
        projects[name] = Project(made.json())
    server.start()
    yield server, projects
    server.close()


def put(server: LullServer, key: str | None, body: Any) -> httpx.Response:
    headers = bearer(key) if key else {}
    if isinstance(body, bytes):
        return server.http.put("/api/v1/settings", content=body, headers=headers)
    return server.http.put("/api/v1/settings", json=body, headers=headers)


def event(mid: str, profile: str, ts: int) -> dict[str, Any]:
    return {"message_id": mid, "profile_id": profile, "name": "Song Played", "ts": ts}


def wait_for(check: Any, what: str, wait: float = 10.0) -> Any:
    deadline = time.monotonic() + wait
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_a_timeout_change_with_rebuild_rebuilds_the_sessions(
    served: tuple[LullServer, dict[str, Project]],
) -> None:
    server, projects = served
    p = projects["rebuild"]
    now = now_ms()
    sent = [event(f"m{i}", "u1", now - 30 * MIN + i * 2 * MIN) for i in range(3)]
    assert server.post_events(p.keys.web, sent).status_code == 200
    before = wait_for(
        lambda: (s := server.sessions(p.keys)) and all(x["concluded"] for x in s) and s,
        "three concluded one-event sessions (2-minute gaps, 1-minute timeout)",
    )
    assert sorted(s["events"] for s in before) == [1, 1, 1]
    changed = put(server, p.admin, {"timeout": "5m", "rebuild": True})
    assert changed.status_code == 200, changed.text
    answer = changed.json()
    assert answer["settings"]["timeout"] == "5m"
    assert (answer["rebuilt"]["events"], answer["rebuilt"]["sessions"]) == (3, 1)
    [after] = server.sessions(p.keys)
    assert (after["events"], after["length_s"], after["concluded"]) == (3, 240, True)
    ids = {e["session_id"] for e in server.events(p.keys) if e["name"] != "Session Concluded"}
    assert ids == {after["session_id"]}
    assert server.read(p.keys, "settings")["timeout_ms"] == 5 * MIN
    # the live engine carries on with the new timeout: a 4-minute gap now joins
    later = [event("n1", "u2", now - 20 * MIN), event("n2", "u2", now - 16 * MIN)]
    assert server.post_events(p.keys.web, later).status_code == 200
    [joined] = server.sessions(p.keys, profile_id="u2")
    assert joined["events"] == 2


def test_activation_and_deactivation_take_effect_at_once(
    served: tuple[LullServer, dict[str, Project]],
) -> None:
    server, projects = served
    p = projects["toggle"]
    now = now_ms()

    def session_of(mid: str) -> str | None:
        [found] = [e for e in server.events(p.keys, profile_id="u") if e["message_id"] == mid]
        sid: str | None = found["session_id"]
        return sid

    assert server.post_events(p.keys.ios, [event("a", "u", now)]).status_code == 200
    assert session_of("a") is None
    on = put(server, p.admin, {"sessions_enabled": True})
    assert on.status_code == 200 and on.json() == {
        "settings": {**on.json()["settings"], "sessions": "on"},
        "rebuilt": None,
    }
    assert on.json()["settings"] == server.read(p.keys, "settings")
    assert server.post_events(p.keys.ios, [event("b", "u", now + 1)]).status_code == 200
    assert session_of("b") is not None
    assert session_of("a") is None  # no rebuild asked: history stays as it was
    off = put(server, p.admin, {"sessions_enabled": False})
    assert off.status_code == 200 and off.json()["settings"]["sessions"] == "off"
    assert server.post_events(p.keys.ios, [event("c", "u", now + 2)]).status_code == 200
    assert session_of("c") is None
    refused = put(server, p.admin, {"rebuild": True})  # sessions are off: nothing to build
    assert refused.status_code == 400 and "sessions are off" in refused.json()["error"]
    assert server.read(p.keys, "settings") == off.json()["settings"]
    assert server.post_events(p.keys.ios, [event("d", "u", now + 3)]).status_code == 200
    assert session_of("d") is None  # the writer carries on, sessions still off


def test_two_changes_sent_at_once_both_take_effect(
    served: tuple[LullServer, dict[str, Project]],
) -> None:
    server, projects = served
    p = projects["both"]
    sent = [event(f"m{i}", f"u{i % 50}", now_ms() - 60 * MIN + i * 1_000) for i in range(2000)]
    assert server.post_events(p.keys.web, sent).status_code == 200
    answers: list[httpx.Response] = []
    # the rebuild holds the writer while the second change is read and queued
    slow = threading.Thread(
        target=lambda: answers.append(put(server, p.admin, {"timeout": "2m", "rebuild": True}))
    )
    slow.start()
    time.sleep(0.05)
    answers.append(put(server, p.admin, {"timezone": "Asia/Tokyo"}))
    slow.join()
    assert [a.status_code for a in answers] == [200, 200]
    final = server.read(p.keys, "settings")
    assert (final["timeout"], final["timezone"]) == ("2m", "Asia/Tokyo")


def test_a_shorter_timeout_concludes_open_sessions_that_are_now_due(
    served: tuple[LullServer, dict[str, Project]],
) -> None:
    server, projects = served
    p = projects["timer"]
    sent = [event("a", "u", now_ms() - 5 * MIN)]
    assert server.post_events(p.keys.android, sent).status_code == 200
    [open_] = server.sessions(p.keys)
    assert not open_["concluded"]  # 5 minutes idle, 20-minute timeout
    assert put(server, p.admin, {"timeout": "1m"}).status_code == 200
    wait_for(
        lambda: server.sessions(p.keys)[0]["concluded"],
        "the session is due under the new timeout and is concluded within seconds",
    )
    [concluded] = [e for e in server.events(p.keys) if e["name"] == "Session Concluded"]
    assert concluded["properties"]["Session ID"] == open_["session_id"]


def unchanged(
    served: tuple[LullServer, dict[str, Project]],
) -> tuple[LullServer, Project, dict[str, Any]]:
    """The server, project `bad` (whose settings must never change) and its settings."""
    server, projects = served
    p = projects["bad"]
    settings: dict[str, Any] = server.read(p.keys, "settings")
    return server, p, settings


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "JSON"),
        ([], "body must be a JSON object"),
        ({"colour": "red"}, "unknown field 'colour'"),
        ({"timeout": "30s"}, "field 'timeout': session timeout '30s' is out of range"),
        ({"timeout": 20}, "field 'timeout': expected a duration"),
        ({"timezone": "Mars/Base"}, "field 'timezone': unknown time zone 'Mars/Base'"),
        ({"excluded": "A,B"}, "field 'excluded': expected a list of event names"),
        ({"excluded": ["A", 3]}, "field 'excluded'"),
        ({"sessions_enabled": "yes"}, "field 'sessions_enabled': expected true or false"),
        ({"rebuild": 1, "timeout": "2m"}, "field 'rebuild': expected true or false"),
        ({"sessions_enabled": False, "rebuild": True}, "field 'rebuild': sessions are off"),
    ],
)
def test_bad_bodies_are_refused_naming_the_field_and_change_nothing(
    served: tuple[LullServer, dict[str, Project]], body: Any, message: str
) -> None:
    server, p, before = unchanged(served)
    refused = put(server, p.admin, body)
    assert refused.status_code == 400, refused.text
    assert message in refused.json()["error"]
    assert server.read(p.keys, "settings") == before


def test_only_the_admin_key_of_the_project_changes_its_settings(
    served: tuple[LullServer, dict[str, Project]],
) -> None:
    server, p, before = unchanged(served)
    for key in (None, p.keys.read_token, p.keys.web, "lull_admin_wrong"):
        assert put(server, key, {"timeout": "2m"}).status_code == 401
    assert server.read(p.keys, "settings") == before
    # another project's admin key changes that project, not this one
    assert put(server, served[1]["busy"].admin, {"timezone": "Europe/Paris"}).status_code == 200
    assert server.read(p.keys, "settings") == before
    # the admin key reads too
    board = server.http.get("/api/v1/board", headers=bearer(p.admin))
    assert board.status_code == 200 and "headline" in board.json()
    spec = server.http.get("/openapi.json").json()
    assert spec["paths"]["/api/v1/settings"]["put"]["security"] == [{"admin": []}]
    assert "source" in str(spec["paths"]["/api/v1/board"]) and "/api/v1/whatif" in spec["paths"]


def test_events_sent_during_rebuilds_are_all_kept_and_sessionized(
    served: tuple[LullServer, dict[str, Project]],
) -> None:
    server, projects = served
    p = projects["busy"]
    now = now_ms() - 10 * MIN
    sent: list[str] = []
    failures: list[str] = []

    def send() -> None:
        with httpx.Client(base_url=server.base, timeout=30.0) as http:
            for k in range(40):
                batch = [event(f"b{k}-{j}", f"u{j}", now + k * 1_000 + j) for j in range(5)]
                got = http.post("/api/v1/events", json=batch, headers=bearer(p.keys.web))
                if got.status_code != 200:
                    failures.append(got.text)
                sent.extend(e["message_id"] for e in batch)

    sender = threading.Thread(target=send)
    sender.start()
    rebuilds = 0
    while sender.is_alive():
        changed = put(server, p.admin, {"rebuild": True})
        assert changed.status_code == 200, changed.text
        rebuilds += 1
    sender.join()
    assert not failures and rebuilds > 1
    stored = [e for e in server.events(p.keys) if e["name"] != "Session Concluded"]
    assert sorted(e["message_id"] for e in stored) == sorted(sent)
    assert all(e["session_id"] is not None and not e["late"] for e in stored)
    live = {(s["session_id"], s["events"]) for s in server.sessions(p.keys)}
    assert len(live) == 5  # one profile per j, one-second gaps under a 1-hour timeout
    server.stop()
    try:
        assert lull(server.db, "--project", "busy", "resessionize").code == 0
        rebuilt = {(s["session_id"], s["events"]) for s in export(server.db, "busy", "sessions")}
        assert rebuilt == live
    finally:
        server.start()


def changes(result: Any) -> list[str]:
    return [c["label"] for c in result["settings_changes"]]


def test_a_change_without_a_rebuild_is_in_the_boards_history_until_a_rebuild(
    served: tuple[LullServer, dict[str, Project]],
) -> None:
    server, projects = served
    p = projects["history"]
    now = now_ms()
    assert server.post_events(p.keys.web, [event("h1", "u", now - 5 * MIN)]).status_code == 200
    wait_for(lambda: server.events(p.keys), "the event stored")
    assert changes(server.read(p.keys, "board")) == []
    for body in ({"timeout": "30m"}, {"excluded": ["Song Played"]}, {"timezone": "Asia/Tokyo"},
                 {"timeout": "30m", "excluded": []}):  # fmt: skip
        assert put(server, p.admin, body).status_code == 200
    board = server.read(p.keys, "board")
    # the time zone is no part of a session's definition; the last change undid nothing
    assert changes(board) == [
        "timeout 20m → 30m, history not rebuilt",
        "excluded events changed, history not rebuilt",
        "excluded events changed, history not rebuilt",
    ]
    today = board["until"]
    assert {c["day"] for c in board["settings_changes"]} == {today}  # in Asia/Tokyo
    for c in board["settings_changes"]:
        assert c["at"].endswith("Z") and c["local_time"][:10] == today == c["hour"][:10]
    assert [c["excluded_changed"] for c in board["settings_changes"]] == [False, True, True]
    assert (changes(server.read(p.keys, "board", until="2026-01-31", days=7))) == []
    rebuilt = put(server, p.admin, {"timeout": "45m", "rebuild": True})
    assert rebuilt.status_code == 200, rebuilt.text
    assert changes(server.read(p.keys, "board")) == []
    assert put(server, p.admin, {"timeout": "1h"}).status_code == 200
    assert changes(server.read(p.keys, "board")) == ["timeout 45m → 1h, history not rebuilt"]


def test_lull_settings_and_resessionize_write_the_history_and_an_older_store_gets_it(
    tmp_path: Path,
) -> None:
    db = tmp_path / "lull.duckdb"
    assert lull(db, "project", "create", "p").code == 0
    # before any event: no history is split, nothing to mark
    assert lull(db, "--project", "p", "settings", "--sessions", "on", "--timeout", "10m").code == 0
    now = now_ms()
    lines = [f'{{"message_id": "m{i}", "profile_id": "u", "name": "Song Played", "source": "web", '
             f'"ts": "{format_time(now - (30 - i) * MIN)}"}}' for i in range(3)]  # fmt: skip
    (tmp_path / "e.ndjson").write_text("\n".join(lines) + "\n")
    assert lull(db, "--project", "p", "import", str(tmp_path / "e.ndjson")).code == 0

    def board() -> list[str]:
        shown = lull(db, "--project", "p", "board", "--days", "2")
        assert shown.code == 0, shown.err
        return changes(shown.json())

    assert board() == []
    assert lull(db, "--project", "p", "settings", "--timeout", "30m").code == 0
    assert board() == ["timeout 10m → 30m, history not rebuilt"]
    assert lull(db, "--project", "p", "resessionize").code == 0
    assert board() == []
    assert lull(db, "--project", "p", "settings", "--timeout", "5m").code == 0
    # a store of a lull before the history: read as it is, given the table when written
    con = duckdb.connect(str(db))
    con.execute("DROP TABLE settings_history")
    con.close()
    assert board() == []
    assert lull(db, "--project", "p", "settings", "--timeout", "15m").code == 0
    assert board() == ["timeout 5m → 15m, history not rebuilt"]
