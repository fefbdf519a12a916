"""`lull serve --lake DIR` (server/lake.py): the web pages and the read API over the Spark
job's Parquet output give the embedded store's figures on the same events. A month of a
music app is imported into a store and re-sessionized, its events exported and run
through `lull spark resessionize` (local Spark); a copy of the store is served as it is
and the original over the lake, side by side. Real servers, real Chromium."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import expect

from browser import PASSWORD, Watched, music_month, populate, recent, sign_in
from lull.figures import FIGURES
from lullrun import lull, write_events
from serverproc import Keys, LullServer, bearer

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


class Pair:
    def __init__(self, store: LullServer, lake: LullServer, keys: Keys, lake_dir: Path) -> None:
        self.store, self.lake, self.keys, self.lake_dir = store, lake, keys, lake_dir

    def both(self, path: str, **params: str) -> tuple[Any, Any]:
        """The same read of both servers (each answer checked to be a 200)."""
        out = []
        for server in (self.store, self.lake):
            got = server.http.get(path, params=params, headers=bearer(self.keys.read_token))
            assert got.status_code == 200, (server.base, path, got.text)
            out.append(got.json())
        return out[0], out[1]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, spark: SparkSession) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp("lake")
    db, copy, lake = tmp / "lull.duckdb", tmp / "embedded" / "lull.duckdb", tmp / "lake"
    records = []
    for p in music_month(5, 40, recent(2)):
        records += [{**e, "source": p.source} for e in p.events]
    with LullServer(db) as made:  # the project and its users, with the server down
        populate(made, {"tunes": "on"}, [("ann", "tunes", "admin"), ("vic", "tunes", "viewer")])
        keys = made.projects["tunes"]
    imported = lull(
        db, "--project", "tunes", "import", str(write_events(tmp / "e.ndjson", records))
    )
    assert imported.code == 0, imported.err
    # the Spark job takes late events into their sessions, as a rebuild does
    assert lull(db, "--project", "tunes", "resessionize").code == 0
    events = tmp / "events.parquet"
    exported = lull(db, "--project", "tunes", "export", "events", "--format", "parquet",
                    "-o", str(events))  # fmt: skip
    assert exported.code == 0, exported.err
    done = lull(db, "--project", "tunes", "spark", "resessionize", "--events", str(events),
                "--out", str(lake), "--timeout", "20m", "--timezone", "UTC")  # fmt: skip
    assert done.code == 0, done.err
    copy.parent.mkdir()
    shutil.copy(db, copy)
    with LullServer(db) as over_lake, LullServer(copy) as embedded:
        over_lake.serve_args = ["--project", "tunes", "--lake", str(lake)]
        over_lake.start()
        embedded.start()
        yield Pair(embedded, over_lake, keys, lake)


def test_the_read_api_over_the_lake_gives_the_stores_answers(pair: Pair) -> None:
    board, _ = pair.both("/api/v1/board")
    until, days = board["until"], board["per_day"]
    assert board["headline"]["sessions"] > 500
    for params in ({}, {"source": "ios"}, {"source": "web"},
                   {"until": days[-6]["date"], "days": "1"},  # by the hour
                   {"until": days[-3]["date"], "days": "3", "source": "android"},
                   {"until": "2020-01-31", "days": "31"}):  # fmt: skip
        store, lake = pair.both("/api/v1/board", **params)
        assert lake == store, params
    for name in FIGURES:  # the board's other figures (lull.figures), for two ranges
        extra = {"property": "screen"} if name == "breakdown" else {}
        for params in ({}, {"until": days[-6]["date"], "days": "7", "source": "ios"}):
            store, lake = pair.both(f"/api/v1/figures/{name}", **params, **extra)
            assert lake == store, (name, params)
    store, lake = pair.both("/api/v1/whatif", timeout="45m", until=until)
    assert lake == store and lake["total"]["proposed"]["sessions"] > 0
    for what in ("sessions", "events"):
        store, lake = pair.both(f"/api/v1/{what}", limit="500")
        assert lake == store and len(lake) == 500
    store, lake = pair.both("/api/v1/sessions", profile_id="u-1003", limit="1000")
    assert lake == store and lake
    store, lake = pair.both("/api/v1/profiles/u-1003")
    assert lake == store
    assert (
        pair.lake.http.get("/api/v1/settings", headers=bearer(pair.keys.read_token)).json()[
            "timeout"
        ]
        == "20m"
    )


def test_the_lake_takes_no_events_and_no_settings(pair: Pair) -> None:
    one = {"message_id": "x", "profile_id": "u", "name": "Song Played", "ts": recent(0)}
    sent = pair.lake.post_events(pair.keys.web, [one])
    assert sent.status_code == 405 and "lull serve --ingest-only" in sent.json()["error"]
    put = pair.lake.http.put("/api/v1/settings", json={"timeout": "30m"},
                             headers=bearer(pair.keys.admin_key))  # fmt: skip
    assert put.status_code == 405 and "its settings.json" in put.json()["error"]
    assert pair.lake.http.get("/healthz").json() == {"status": "ok"}


def test_the_pages_over_the_lake_show_the_stores_figures(pair: Pair, tab: Watched) -> None:
    page = tab.page
    store_board, _ = pair.both("/api/v1/board")
    figures = {}
    for server in (pair.store, pair.lake):
        sign_in(page, server.base, "vic", PASSWORD)
        page.goto(f"{server.base}/p/tunes/board")
        expect(page.locator("#figures")).to_have_attribute("data-state", "ready")
        ids = ("sessions", "users", "median", "p90", "avg", "total", "spu", "eps", "late")
        figures[server.base] = {k: page.locator(f"#hl-{k}").inner_text() for k in ids}
        page.context.clear_cookies()
    assert figures[pair.lake.base] == figures[pair.store.base]
    assert figures[pair.lake.base]["sessions"] == f"{store_board['headline']['sessions']:,}"

    sign_in(page, pair.lake.base, "ann", PASSWORD)
    # the table behind the sessions chart: every day's count as the store's
    page.goto(f"{pair.lake.base}/p/tunes/board")
    expect(page.locator("#figures")).to_have_attribute("data-state", "ready")
    cells = page.locator("#t-count tbody td").all_text_contents()
    assert cells == [f"{d['sessions']:,}" for d in store_board["per_day"]]
    # events: the newest page, as the store's API lists them
    page.goto(f"{pair.lake.base}/p/tunes/events?name=song")
    newest, _ = pair.both("/api/v1/events", limit="100")
    songs = [e["message_id"] for e in newest if e["name"].lower().startswith("song")]
    expect(page.locator("#events-table tbody tr")).to_have_count(100)
    first = page.locator("#events-table tbody tr").first
    expect(first).to_contain_text(next(e["name"] for e in newest if e["message_id"] == songs[0]))
    # a profile: every session, as the store has them
    sessions, _ = pair.both("/api/v1/sessions", profile_id="u-1003", limit="1000")
    page.goto(f"{pair.lake.base}/p/tunes/profile?id=u-1003")
    expect(page.locator("#profile-summary")).to_contain_text(f"{len(sessions):,}")
    expect(page.locator("li.session code").first).to_have_text(sessions[0]["session_id"])
    # the what-if preview; no Save, and why (a form sent anyway is refused with it)
    page.goto(f"{pair.lake.base}/p/tunes/settings")
    expect(page.locator("#settings-read-only")).to_contain_text("its settings.json")
    page.get_by_label("Session timeout").fill("45m")
    expect(page.locator("#whatif")).to_have_attribute("data-state", "ready")
    save = page.get_by_role("button", name="Save settings")
    expect(save).to_be_disabled()
    page.evaluate("document.querySelector('#settings-form button[type=submit]').disabled = false")
    save.click()
    expect(page.locator("#settings-error")).to_contain_text("its settings.json")
    assert (
        pair.lake.http.get("/api/v1/settings", headers=bearer(pair.keys.read_token)).json()[
            "timeout"
        ]
        == "20m"
    )


def test_a_wrong_lake_or_project_is_named(pair: Pair, tmp_path: Path) -> None:
    db = pair.lake.db
    wrong = lull(db, "--project", "nope", "serve", "--lake", str(pair.lake_dir))
    assert wrong.code != 0 and "no project named 'nope'" in wrong.err, wrong.err
    assert "lull project create" in wrong.err
    empty = lull(db, "--project", "tunes", "serve", "--lake", str(tmp_path))
    assert empty.code != 0 and "no settings.json" in empty.err, empty.err
    both = lull(db, "--project", "tunes", "serve", "--lake", str(pair.lake_dir), "--ingest-only")
    assert both.code != 0 and "--lake reads Spark's output" in both.err, both.err
    nowhere = lull(tmp_path / "none.duckdb", "--project", "tunes", "serve", "--lake",
                   str(pair.lake_dir))  # fmt: skip
    assert nowhere.code != 0 and "the accounts and keys are read from it" in nowhere.err
