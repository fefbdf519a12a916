"""The session board: every figure, headline included, recomputed from the exported
sessions and events; the source filter; the CLI, the read API and the function agree."""

from __future__ import annotations

import itertools
import json
import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lull.board import BUCKET_EDGES, board
from lull.model import parse_time
from lull.store.db import connect
from lull.store.projects import get_settings, project_id
from lullrun import lull, write_events
from serverproc import LullServer, bearer, now_ms

T0 = 1_790_812_800_000  # 2026-10-01T00:00:00Z
DAY = 86_400_000
MIN = 60_000
GAPS = st.sampled_from([0, 1_000, 59_999, 60_000, 5 * MIN, 3 * 3_600_000, DAY])
ZONES = st.sampled_from(["UTC", "Europe/Paris", "America/Sao_Paulo", "Asia/Kathmandu"])
SOURCES = ("web", "ios", "android", "api")
_names = itertools.count()


def local_day(ms: int, tz: str) -> date:
    return (
        (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms))
        .astimezone(ZoneInfo(tz))
        .date()
    )


def nearest_rank(values: list[int], q: float) -> int | None:
    ordered = sorted(values)
    return ordered[math.ceil(q * len(ordered)) - 1] if ordered else None


def expected(
    sessions: list[dict[str, Any]],
    events: list[dict[str, Any]],
    tz: str,
    first: date,
    last: date,
    source: str | None,
) -> dict[str, Any]:
    """The board by its definitions, in plain Python over `lull export`."""
    counted = [
        s
        for s in sessions
        if s["concluded"]
        and first <= local_day(parse_time(s["last_ts"], "last_ts"), tz) <= last
        and source in (None, s["source"])
    ]
    lengths = [s["length_s"] for s in counted]
    users = len({s["profile_id"] for s in counted})
    late = sum(
        1
        for e in events
        if e["late"]
        and first <= local_day(parse_time(e["ts"], "ts"), tz) <= last
        and source in (None, e["source"])
    )
    per_day = []
    day = first
    while day <= last:
        that = [
            s["length_s"]
            for s in counted
            if local_day(parse_time(s["last_ts"], "last_ts"), tz) == day
        ]
        per_day.append(
            {"date": day.isoformat(), "sessions": len(that), "total_length_s": sum(that)}
        )
        day += timedelta(days=1)
    edges = [*BUCKET_EDGES, None]
    extra: dict[str, Any] = {"grain": "hour" if (last - first).days < 3 else "day"}
    if extra["grain"] == "hour":
        extra["per_hour"] = per_hour(counted, tz, first, last)
    if not counted:  # where the data lies, whatever the range
        ends = sorted(
            local_day(parse_time(s["last_ts"], "last_ts"), tz).isoformat()
            for s in sessions
            if s["concluded"] and source in (None, s["source"])
        )
        extra["data_range"] = {"first": ends[0], "last": ends[-1]} if ends else None
    return {
        **extra,
        "sessions": len(counted),
        "total_length_s": sum(lengths),
        "per_day": per_day,
        "length_distribution": [
            {
                "from_s": lo,
                "to_s": hi,
                "sessions": sum(1 for n in lengths if n >= lo and (hi is None or n < hi)),
            }
            for lo, hi in itertools.pairwise(edges)
            if lo is not None
        ],
        "late_events": late,
        "headline": {
            "sessions": len(counted),
            "users": users,
            "median_length_s": nearest_rank(lengths, 0.5),
            "p90_length_s": nearest_rank(lengths, 0.9),
            "average_length_s": round(sum(lengths) / len(lengths), 1) if lengths else None,
            "total_length_s": sum(lengths),
            "sessions_per_user": round(len(counted) / users, 2) if users else None,
            "events_per_session": (
                round(sum(s["events"] for s in counted) / len(counted), 2) if counted else None
            ),
            "late_events": late,
        },
    }


def per_hour(counted: list[dict[str, Any]], tz: str, first: date, last: date) -> list[Any]:
    """Sessions and their total length per wall-clock hour of their last event."""

    def hour(s: dict[str, Any]) -> str:
        at = datetime.fromtimestamp(parse_time(s["last_ts"], "last_ts") / 1000, ZoneInfo(tz))
        return at.strftime("%Y-%m-%dT%H:00")

    out = []
    day = first
    while day <= last:
        for h in range(24):
            key = f"{day.isoformat()}T{h:02d}:00"
            that = [s["length_s"] for s in counted if hour(s) == key]
            out.append({"hour": key, "sessions": len(that), "total_length_s": sum(that)})
        day += timedelta(days=1)
    return out


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Chains of events per profile over three days, arriving with random delays (so
    some come late), from every source, some of them excluded by name."""
    records: list[dict[str, Any]] = []
    for p in range(draw(st.integers(1, 4))):
        t = T0 + draw(st.integers(-DAY // 2, 3 * DAY))
        for i in range(draw(st.integers(1, 8))):
            t += draw(GAPS)
            records.append(
                {
                    "message_id": f"m{p}-{i}",
                    "profile_id": f"u{p}",
                    "name": draw(st.sampled_from(["Song Played"] * 5 + ["App Installed"])),
                    "ts": t,
                    "source": draw(st.sampled_from(SOURCES)),
                    "received_at": t + draw(st.sampled_from([0, 0, 30_000, 10 * MIN, DAY])),
                }
            )
    records.sort(key=lambda r: r["received_at"])
    return records


@settings(max_examples=20, deadline=None)
@given(
    records=histories(),
    tz=ZONES,
    until=st.integers(0, 3),
    days=st.integers(1, 4),
    source=st.sampled_from([None, "web", "ios", "android"]),
)
def test_every_figure_follows_its_definition(
    shared_db: Path,
    tmp_path_factory: pytest.TempPathFactory,
    records: list[dict[str, Any]],
    tz: str,
    until: int,
    days: int,
    source: str | None,
) -> None:
    tmp = tmp_path_factory.mktemp("board")
    project = f"p{next(_names)}"
    run = ["--project", project]
    assert lull(shared_db, *run, "settings", "--sessions", "on", "--timeout", "1m",
                "--timezone", tz).code == 0  # fmt: skip
    imported = lull(shared_db, *run, "import", str(write_events(tmp / "in.ndjson", records)))
    assert imported.code == 0, imported.err
    last = date(2026, 10, 1) + timedelta(days=until)
    args = ["board", "--until", last.isoformat(), "--days", str(days)]
    got = lull(shared_db, *run, *args, *(["--source", source] if source else [])).json()
    sessions, events = exported(shared_db, project, tmp)
    first = last - timedelta(days=days - 1)
    want = expected(sessions, events, tz, first, last, source)
    assert {k: got[k] for k in want} == want
    assert (got["from"], got["until"], got["timezone"], got["source"]) == (
        first.isoformat(),
        last.isoformat(),
        tz,
        source,
    )


def exported(db: Path, project: str, tmp: Path) -> tuple[list[Any], list[Any]]:
    """`lull export sessions` and `lull export events` of one project."""
    out = []
    for what in ("sessions", "events"):
        target = tmp / f"{what}.ndjson"
        assert lull(db, "--project", project, "export", what, "-o", str(target)).code == 0
        out.append([json.loads(line) for line in target.read_text().splitlines()])
    return out[0], out[1]


def test_an_empty_range_gives_zeros_and_nulls(db_path: Path) -> None:
    assert lull(db_path, "settings", "--sessions", "on").code == 0
    got = lull(db_path, "board", "--until", "2026-10-01", "--days", "3").json()
    assert got["headline"] == {
        "sessions": 0,
        "users": 0,
        "median_length_s": None,
        "p90_length_s": None,
        "average_length_s": None,
        "total_length_s": 0,
        "sessions_per_user": None,
        "events_per_session": None,
        "late_events": 0,
    }
    assert got["data_range"] is None  # no session at all
    assert [d["sessions"] for d in got["per_day"]] == [0, 0, 0]
    assert sum(b["sessions"] for b in got["length_distribution"]) == 0


def test_an_unknown_source_is_refused_naming_the_allowed_ones(db_path: Path) -> None:
    result = lull(db_path, "board", "--source", "api")
    assert result.code == 1
    assert result.err == "lull: error: unknown source 'api': use one of web, ios, android\n"


def test_quantiles_are_nearest_rank(db_path: Path, tmp_path: Path) -> None:
    # four one-profile sessions of 0, 10, 20 and 30 s: median 10 (the 2nd), p90 30 (the 4th)
    records = [
        {"message_id": f"m{i}-{j}", "profile_id": "u", "name": "Song Played",
         "ts": T0 + i * 3_600_000 + j * i * 10_000, "source": "web"}
        for i in range(4) for j in range(2)
    ]  # fmt: skip
    assert lull(db_path, "settings", "--sessions", "on").code == 0
    assert lull(db_path, "import", str(write_events(tmp_path / "e.ndjson", records))).code == 0
    got = lull(db_path, "board", "--until", "2026-10-01", "--days", "1").json()["headline"]
    assert (got["median_length_s"], got["p90_length_s"]) == (10, 30)
    assert (got["sessions"], got["users"], got["sessions_per_user"]) == (4, 1, 4.0)
    assert got["events_per_session"] == 2.0


def test_cli_read_api_and_function_give_the_same_board(tmp_path: Path) -> None:
    db = tmp_path / "lull.duckdb"
    now = now_ms()
    with LullServer(db) as server:
        keys = server.create_project("shop", sessions="on", timeout="1m")
        server.start()
        for key, profile in ((keys.web, "w"), (keys.ios, "i"), (keys.android, "a")):
            sent = [
                {"message_id": f"{profile}{k}", "profile_id": f"{profile}{k % 3}",
                 "name": "Song Played", "ts": now - 3_600_000 + k * 40_000}
                for k in range(12)
            ]  # fmt: skip
            assert server.post_events(key, sent).status_code == 200
        today = local_day(now, "UTC").isoformat()
        api = {}
        for source in (None, "web", "ios", "android"):
            params = {"days": 2, "until": today, **({"source": source} if source else {})}
            api[source] = server.read(keys, "board", **params)
        bad = server.http.get(
            "/api/v1/board", params={"source": "tv"}, headers=bearer(keys.read_token)
        )
        assert bad.status_code == 400 and "use one of web, ios, android" in bad.json()["error"]
        server.stop()
    assert api[None]["headline"]["sessions"] > 0
    assert sum(api[s]["sessions"] for s in ("web", "ios", "android")) == api[None]["sessions"]
    con = connect(db, read_only=True)
    pid = project_id(con, "shop", create=False)
    for source, got in api.items():
        cli = lull(db, "--project", "shop", "board", "--days", "2", "--until", today,
                   *(["--source", source] if source else []))  # fmt: skip
        assert cli.json() == got
        assert board(con, pid, get_settings(con, pid), date.fromisoformat(today), 2, source) == got
    con.close()
