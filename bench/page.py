"""The session board page in Chromium: time from navigation to its charts drawn, for 30
days over a store of 10 million events (target: under a second).

    .venv/bin/python bench/page.py [--db bench/out/page-10m.duckdb] [--runs 7]

The store is made once by `lull import` of bench/generate.py's 10M events (sessions on);
the board shows 2026-10-01..2026-10-30. Each run opens the board in a fresh tab of an
already signed-in browser and reads `performance.mark("lull:board-ready")`, which the
page sets once its figures and charts are drawn (the time counts from the start of the
navigation: HTML, CSS, Chart.js, the board's JSON and drawing). For comparison, the same
run times the board's JSON alone over HTTP and `lull.board.board` in this process, and
the Events and Profile pages (navigation to their load event).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from browser import ARGS, CHROMIUM, sign_in  # noqa: E402 (the tests' Chromium set-up)
from serverproc import free_port  # noqa: E402

LULL = str(Path(sys.executable).with_name("lull"))
EVENTS = HERE / "out" / "events-10000000-p200000-d30-s1.ndjson"
UNTIL, DAYS = "2026-10-30", 30
PASSWORD = "bench password"
LOADED = "performance.getEntriesByType('navigation')[0].loadEventEnd"


def lull(db: Path, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [LULL, "--db", str(db), *args], input=stdin, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"lull {' '.join(args)}: {done.stderr}")
    return done.stdout


def prepare(db: Path) -> None:
    if not db.exists():
        if not EVENTS.exists():
            raise SystemExit(f"no {EVENTS}: run bench/generate.py first (make bench does)")
        lull(db, "settings", "--sessions", "on")
        started = time.perf_counter()
        lull(db, "import", str(EVENTS))
        print(f"store made in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    users = json.loads(lull(db, "user", "list"))
    if not any(u["name"] == "bench" for u in users):
        lull(db, "user", "create", "bench", "--project", "default", "--role", "admin",
             "--password-stdin", stdin=PASSWORD + "\n")  # fmt: skip


def serve(db: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [LULL, "--db", str(db), "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "LULL_DB": ""},
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("lull serve did not start")


def in_process(db: Path, runs: int) -> list[float]:
    from lull.board import board
    from lull.store.db import connect
    from lull.store.projects import get_settings, project_id

    con = connect(db, read_only=True)
    pid = project_id(con, "default", create=False)
    settings = get_settings(con, pid)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        board(con, pid, settings, date.fromisoformat(UNTIL), DAYS)
        times.append(time.perf_counter() - started)
    con.close()
    return times


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", type=Path, default=HERE / "out" / "page-10m.duckdb")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    prepare(args.db)
    direct = in_process(args.db, args.runs)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = serve(args.db, port)
    page_ms, json_s, board = [], [], f"{base}/p/default/board?from=2026-10-01&until={UNTIL}"
    events_ms: list[float] = []
    profile_ms: list[float] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            sign_in(page, base, "bench", PASSWORD)
            page.close()
            cookies = {c["name"]: c["value"] for c in context.cookies()}
            for _ in range(args.runs):
                tab = context.new_page()
                tab.goto(board)
                tab.wait_for_selector("#charts[data-state=ready]", timeout=60_000)
                mark = tab.evaluate("performance.getEntriesByName('lull:board-ready')[0].startTime")
                sessions = tab.locator("#hl-sessions").inner_text()
                page_ms.append(float(mark))
                tab.close()
            for path, times in (
                ("/p/default/events", events_ms),
                ("/p/default/profile?id=u00054276", profile_ms),
            ):
                for _ in range(args.runs):
                    tab = context.new_page()
                    tab.goto(base + path)
                    times.append(float(tab.evaluate(LOADED)))
                    tab.close()
            with httpx.Client(base_url=base, cookies=cookies, timeout=60) as c:
                for _ in range(args.runs):
                    started = time.perf_counter()
                    got = c.get(f"/web/api/p/default/board?from=2026-10-01&until={UNTIL}")
                    json_s.append(time.perf_counter() - started)
                    assert got.status_code == 200, got.text
            browser.close()
    finally:
        proc.terminate()
        proc.wait(60)
    result = {
        "events": 10_000_000,
        "sessions_on_board": sessions,
        "runs": args.runs,
        "page_ms_median": round(statistics.median(page_ms)),
        "page_ms_first": round(page_ms[0]),
        "page_ms_max": round(max(page_ms)),
        "json_ms_median": round(1000 * statistics.median(json_s)),
        "events_page_ms_median": round(statistics.median(events_ms)),
        "profile_page_ms_median": round(statistics.median(profile_ms)),
        "board_fn_ms_median": round(1000 * statistics.median(direct)),
    }
    print(json.dumps(result, indent=2))
    (HERE / "out" / "page-10m.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
