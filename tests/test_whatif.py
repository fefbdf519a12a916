"""What-if: the proposed side equals a real `lull resessionize` with that timeout followed
by `lull board`; the current side equals the board as it is (on stores without late
events); the CLI and the read API agree."""

from __future__ import annotations

import itertools
import json
import math
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lull.model import format_duration, parse_time
from lullrun import lull, write_events
from serverproc import LullServer, bearer, now_ms
from test_board import local_day

T0 = 1_790_812_800_000  # 2026-10-01T00:00:00Z
DAY = 86_400_000
MIN = 60_000
TIMEOUTS = st.sampled_from([MIN, 2 * MIN, 20 * MIN, 30 * MIN, 3 * 60 * MIN])
GAPS = st.sampled_from([0, 1, MIN - 1, MIN, 2 * MIN, 20 * MIN, 30 * MIN, 2 * 60 * MIN, DAY])
_names = itertools.count()


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Chains of events per profile, some running across days (gaps under the larger
    timeouts), from every source; no `received_at`, so nothing is late."""
    records = []
    for p in range(draw(st.integers(1, 4))):
        t = T0 + draw(st.integers(-DAY, 3 * DAY))
        for i in range(draw(st.integers(1, 12))):
            t += draw(GAPS)
            records.append(
                {
                    "message_id": f"m{p}-{i}",
                    "profile_id": f"u{p}",
                    "name": draw(st.sampled_from(["Song Played"] * 4 + ["Notification Sent"])),
                    "ts": t,
                    "source": draw(st.sampled_from(["web", "ios", "android", "api"])),
                }
            )
    if draw(st.booleans()):  # one session under every timeout, over days: starts far back
        start = T0 + draw(st.integers(-3 * DAY, DAY))
        for i in range(draw(st.integers(1, 4 * DAY // (50_000 * 4))) * 4):
            records.append(
                {"message_id": f"bot-{i}", "profile_id": "bot", "name": "Song Played",
                 "ts": start + i * 50_000, "source": "web"}
            )  # fmt: skip
    return records


def median_by_day(
    sessions: list[dict[str, Any]], tz: str, source: str | None
) -> dict[date, int | None]:
    by_day: dict[date, list[int]] = {}
    for s in sessions:
        if s["concluded"] and source in (None, s["source"]):
            day = local_day(parse_time(s["last_ts"], "last_ts"), tz)
            by_day.setdefault(day, []).append(s["length_s"])
    return {d: sorted(v)[math.ceil(len(v) / 2) - 1] for d, v in by_day.items()}


@settings(max_examples=12, deadline=None)  # each example runs `lull` 12 times
@given(
    records=histories(),
    current=TIMEOUTS,
    proposed=TIMEOUTS,
    tz=st.sampled_from(["UTC", "Europe/Paris", "Pacific/Kiritimati"]),
    until=st.integers(0, 3),
    days=st.integers(1, 3),
    source=st.sampled_from([None, "web", "ios", "android"]),
)
def test_each_side_is_what_a_rebuild_with_its_timeout_gives(
    shared_db: Path,
    tmp_path_factory: pytest.TempPathFactory,
    records: list[dict[str, Any]],
    current: int,
    proposed: int,
    tz: str,
    until: int,
    days: int,
    source: str | None,
) -> None:
    tmp = tmp_path_factory.mktemp("whatif")
    run = ["--project", f"w{next(_names)}"]
    assert lull(shared_db, *run, "settings", "--sessions", "on", "--timeout",
                format_duration(current), "--timezone", tz).code == 0  # fmt: skip
    assert lull(shared_db, *run, "import", str(write_events(tmp / "in.ndjson", records))).code == 0
    last = date(2026, 10, 1) + timedelta(days=until)
    window = ["--until", last.isoformat(), "--days", str(days)]
    window += ["--source", source] if source else []
    preview = lull(shared_db, *run, "whatif", "--timeout", format_duration(proposed), *window)
    assert preview.code == 0, preview.err
    got = preview.json()
    assert got["timeout_ms"] == {"current": current, "proposed": proposed}
    for side, timeout in (("current", current), ("proposed", proposed)):
        assert lull(shared_db, *run, "settings", "--timeout", format_duration(timeout)).code == 0
        assert lull(shared_db, *run, "resessionize").code == 0
        board = lull(shared_db, *run, "board", *window).json()
        target = tmp / f"{side}.ndjson"
        assert lull(shared_db, *run, "export", "sessions", "-o", str(target)).code == 0
        sessions = [json.loads(line) for line in target.read_text().splitlines()]
        medians = median_by_day(sessions, tz, source)
        assert [d[side]["sessions"] for d in got["per_day"]] == [
            d["sessions"] for d in board["per_day"]
        ]
        assert [d[side]["median_length_s"] for d in got["per_day"]] == [
            medians.get(date.fromisoformat(d["date"])) for d in board["per_day"]
        ]
        assert got["total"][side] == {
            "sessions": board["headline"]["sessions"],
            "median_length_s": board["headline"]["median_length_s"],
        }


def test_the_proposed_timeout_is_checked(db_path: Path) -> None:
    result = lull(db_path, "whatif", "--timeout", "30s")
    assert (result.code, result.err) == (
        1,
        "lull: error: session timeout '30s' is out of range: allow 1m to 24h\n",
    )
    assert lull(db_path, "whatif").code == 2  # --timeout is required


def test_read_api_gives_what_the_cli_gives(tmp_path: Path) -> None:
    db = tmp_path / "lull.duckdb"
    now = now_ms()
    with LullServer(db) as server:
        keys = server.create_project("shop", sessions="on", timeout="1m")
        server.start()
        sent = [
            {"message_id": f"m{k}", "profile_id": f"u{k % 2}", "name": "Song Played",
             "ts": now - 7_200_000 + k * k * 15_000}
            for k in range(16)
        ]  # fmt: skip
        assert server.post_events(keys.ios, sent).status_code == 200
        today = local_day(now, "UTC").isoformat()
        api = server.read(keys, "whatif", timeout="5m", days=2, until=today, source="ios")
        for params, field in (({}, "'timeout' is required"), ({"timeout": "2x"}, "'timeout'")):
            bad = server.http.get("/api/v1/whatif", params=params, headers=bearer(keys.read_token))
            assert bad.status_code == 400 and field in bad.json()["error"]
        assert server.http.get("/api/v1/whatif", params={"timeout": "5m"}).status_code == 401
        server.stop()
    assert api["total"]["proposed"]["sessions"] < api["total"]["current"]["sessions"]
    cli = lull(db, "--project", "shop", "whatif", "--timeout", "5m", "--days", "2",
               "--until", today, "--source", "ios")  # fmt: skip
    assert cli.json() == api


def test_a_session_that_began_days_before_the_range_keeps_its_whole_length(
    db_path: Path, tmp_path: Path
) -> None:
    # one event every 50 s from 2 days before 2026-10-01 until its noon: one session
    start, stop = T0 - 2 * DAY, T0 + DAY + DAY // 2
    times = range(start, stop + 1, 50_000)
    records = [
        {"message_id": f"m{i}", "profile_id": "bot", "name": "Song Played", "ts": t,
         "source": "web"}
        for i, t in enumerate(times)
    ]  # fmt: skip
    assert lull(db_path, "settings", "--sessions", "on", "--timeout", "1m").code == 0
    assert lull(db_path, "import", str(write_events(tmp_path / "e.ndjson", records))).code == 0
    got = lull(db_path, "whatif", "--timeout", "2m", "--until", "2026-10-02", "--days", "1")
    length = (times[-1] - start) // 1000
    both = {"sessions": 1, "median_length_s": length}
    assert got.json()["total"] == {"current": both, "proposed": both}
