"""More of the board (figures.py): every figure recomputed in plain Python from `lull
export` (sessions and events), over the range and the period before it, whether the
sessions' ends are stored (store/ends.py) or found from the events; the read API over a
real server, the CLI and the function agree; bad input is refused clearly."""

from __future__ import annotations

import itertools
import json
import math
import time
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lull.figures import (
    EVENT_EDGES,
    FIGURES,
    INTERVAL_EDGES,
    SESSION_EDGES,
    TOP_NAMES,
    TOP_VALUES,
    figure,
)
from lull.model import parse_time
from lull.store.db import connect
from lull.store.ends import fill
from lull.store.projects import get_settings, project_id
from lullrun import exported as exported_events
from lullrun import lull, write_events
from serverproc import LullServer, bearer, now_ms

T0 = 1_790_812_800_000  # 2026-10-01T00:00:00Z
DAY = 86_400_000
MIN = 60_000
GAPS = st.sampled_from([0, 1_000, 59_999, 60_000, 5 * MIN, 3 * 3_600_000, DAY, 5 * DAY])
ZONES = st.sampled_from(["UTC", "Europe/Paris", "America/Sao_Paulo", "Asia/Kathmandu"])
SOURCES = ("web", "ios", "android", "api")
NAMES = ("App Opened", "Song Played", "Song Liked", "Search", "App Installed")
PROPS = st.dictionaries(
    st.sampled_from(["plan", "version", "country"]),
    st.one_of(st.sampled_from(["free", "premium", "fr", "de"]), st.integers(1, 3), st.none()),
)
_names = itertools.count()


# -- the definitions, in plain Python over the exports ----------------------------------


def ms(iso: str) -> int:
    return parse_time(iso, "ts")


def local(ms_: int, tz: str) -> datetime:
    return datetime.fromtimestamp(ms_ / 1000, UTC).astimezone(ZoneInfo(tz))


def nearest_rank(values: list[int], q: float) -> int | None:
    ordered = sorted(values)
    return ordered[math.ceil(q * len(ordered)) - 1] if ordered else None


def bucketed(values: list[int], edges: tuple[int, ...]) -> list[int]:
    bounds = [*itertools.pairwise(edges), (edges[-1], None)]
    return [sum(1 for v in values if v >= lo and (hi is None or v < hi)) for lo, hi in bounds]


def spread(values: list[int], without: int) -> dict[str, Any]:
    n = len(values)
    return {"count": n, "mean": round(sum(values) / n, 2) if n else None,
            "median": nearest_rank(values, 0.5), "without": without}  # fmt: skip


class Reference:
    """The figures by their definitions (docs/figures.md) from the exported sessions and
    events of one project."""

    def __init__(self, sessions: list[dict[str, Any]], events: list[dict[str, Any]], tz: str):
        self.tz = tz
        self.sessions = sessions
        # R2 order of a session's events: event time, then arrival (the export's order)
        by_session: dict[str, list[tuple[int, int, dict[str, Any]]]] = defaultdict(list)
        for i, e in enumerate(events):
            if e["session_id"] is not None and e["name"] != "Session Concluded":
                by_session[e["session_id"]].append((ms(e["ts"]), i, e))
        self.first = {sid: min(evs, key=lambda x: x[:2])[2] for sid, evs in by_session.items()}
        self.last = {sid: max(evs, key=lambda x: x[:2])[2] for sid, evs in by_session.items()}
        # each session's previous one of the same profile (any source), by start time
        self.prev_end: dict[str, int | None] = {}
        by_profile: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for s in sessions:
            by_profile[s["profile_id"]].append(s)
        for own in by_profile.values():
            own.sort(key=lambda s: ms(s["first_ts"]))
            for before, s in zip([None, *own], own, strict=False):
                self.prev_end[s["session_id"]] = None if before is None else ms(before["last_ts"])

    def counted(self, first: date, last: date, source: str | None) -> list[dict[str, Any]]:
        return [
            s for s in self.sessions
            if s["concluded"] and first <= local(ms(s["last_ts"]), self.tz).date() <= last
            and source in (None, s["source"])
        ]  # fmt: skip

    def all(
        self, first: date, last: date, source: str | None, prop: str
    ) -> dict[str, dict[str, Any]]:
        days = (last - first).days + 1
        before = (first - timedelta(days=days), first - timedelta(days=1))
        now, then = self.counted(first, last, source), self.counted(*before, source)
        head = {"from": first.isoformat(), "until": last.isoformat(),
                "previous_from": before[0].isoformat(), "previous_until": before[1].isoformat(),
                "timezone": self.tz, "source": source}  # fmt: skip
        return {
            "bounce": {**head, **self.bounce(now, then, first, last, *before)},
            "events_per_session": {**head, **self.spread(now, then, EVENT_EDGES, "sessions",
                                                         lambda ss: [s["events"] for s in ss])},
            "sessions_per_user": {**head, **self.spread(now, then, SESSION_EDGES, "users",
                                                        self.per_user)},
            "interval": {**head, **self.spread(now, then, INTERVAL_EDGES, "sessions",
                                               self.gaps, self.firsts)},
            "entry_exit": {**head, **self.entry_exit(now, then)},
            "breakdown": {**head, **self.breakdown(now, then, prop)},
            "properties": {**head, "properties": self.properties(now)},
        }  # fmt: skip

    def bounce(
        self, now: list[Any], then: list[Any], a: date, b: date, pa: date, pb: date
    ) -> dict[str, Any]:
        hourly = (b - a).days + 1 <= 3

        def key(s: dict[str, Any]) -> str:
            at = local(ms(s["last_ts"]), self.tz)
            return at.strftime("%Y-%m-%dT%H:00") if hourly else at.date().isoformat()

        def trend(ss: list[dict[str, Any]], first: date, last: date) -> list[dict[str, Any]]:
            out = []
            day = first
            while day <= last:
                for h in range(24) if hourly else [None]:
                    k = day.isoformat() + ("" if h is None else f"T{h:02d}:00")
                    n = sum(1 for s in ss if key(s) == k)
                    bounced = sum(1 for s in ss if key(s) == k and s["events"] == 1)
                    out.append({"hour" if hourly else "date": k, "sessions": n,
                                "bounces": bounced,
                                "bounce_rate": round(bounced / n, 4) if n else None})  # fmt: skip
                day += timedelta(days=1)
            return out

        def total(ss: list[dict[str, Any]]) -> dict[str, Any]:
            n, bounced = len(ss), sum(1 for s in ss if s["events"] == 1)
            return {"sessions": n, "bounces": bounced,
                    "bounce_rate": round(bounced / n, 4) if n else None}  # fmt: skip

        return {"grain": "hour" if hourly else "day", "current": total(now),
                "previous": total(then), "trend": trend(now, a, b),
                "previous_trend": trend(then, pa, pb)}  # fmt: skip

    def per_user(self, ss: list[dict[str, Any]]) -> list[int]:
        return list(Counter(s["profile_id"] for s in ss).values())

    def gaps(self, ss: list[dict[str, Any]]) -> list[int]:
        ends = [(s, self.prev_end[s["session_id"]]) for s in ss]
        return [(ms(s["first_ts"]) - end) // 1000 for s, end in ends if end is not None]

    def firsts(self, ss: list[dict[str, Any]]) -> int:
        return sum(1 for s in ss if self.prev_end[s["session_id"]] is None)

    def spread(
        self, now: list[Any], then: list[Any], edges: tuple[int, ...], what: str,
        values: Any, without: Any = lambda ss: 0,
    ) -> dict[str, Any]:  # fmt: skip
        a, b = values(now), values(then)
        lo_key, hi_key = ("from_s", "to_s") if edges is INTERVAL_EDGES else ("from", "to")
        dist = [
            {lo_key: lo, hi_key: hi, what: n, f"previous_{what}": m}
            for (lo, hi), n, m in zip(itertools.pairwise((*edges, None)), bucketed(a, edges),
                                      bucketed(b, edges), strict=True)
        ]  # fmt: skip
        return {"current": spread(a, without(now)), "previous": spread(b, without(then)),
                "distribution": dist}  # fmt: skip

    def entry_exit(self, now: list[Any], then: list[Any]) -> dict[str, Any]:
        def top(ends: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
            a = Counter(ends[s["session_id"]]["name"] for s in now)
            b = Counter(ends[s["session_id"]]["name"] for s in then)
            names = sorted(a, key=lambda n: (-a[n], n))[:TOP_NAMES]
            return [{"name": n, "sessions": a[n], "share": round(a[n] / len(now), 4),
                     "previous_sessions": b[n],
                     "previous_share": round(b[n] / len(then), 4) if then else None}
                    for n in names]  # fmt: skip

        return {"current": {"sessions": len(now)}, "previous": {"sessions": len(then)},
                "entry": top(self.first), "exit": top(self.last)}  # fmt: skip

    def value(self, s: dict[str, Any], prop: str) -> str | None:
        v = (self.first[s["session_id"]].get("properties") or {}).get(prop)
        return None if v is None else v if isinstance(v, str) else json.dumps(v)

    def breakdown(self, now: list[Any], then: list[Any], prop: str) -> dict[str, Any]:
        counts = Counter(v for s in now if (v := self.value(s, prop)) is not None)
        top = sorted(counts, key=lambda v: (-counts[v], v))[:TOP_VALUES]

        def group(pick: Any, value: str | None) -> dict[str, Any]:
            a = [s["length_s"] for s in now if pick(self.value(s, prop))]
            b = [s["length_s"] for s in then if pick(self.value(s, prop))]
            return {"value": value, "sessions": len(a), "median_length_s": nearest_rank(a, 0.5),
                    "total_length_s": sum(a), "previous_sessions": len(b),
                    "previous_median_length_s": nearest_rank(b, 0.5),
                    "previous_total_length_s": sum(b)}  # fmt: skip

        return {"property": prop,
                "values": [group(lambda v, t=t: v == t, t) for t in top],
                "other": group(lambda v: v is not None and v not in top, None),
                "missing": group(lambda v: v is None, None)}  # fmt: skip

    def properties(self, now: list[Any]) -> list[dict[str, Any]]:
        keys = Counter(k for s in now for k in (self.first[s["session_id"]].get("properties")
                                                 or {}))  # fmt: skip
        return [
            {"name": k, "sessions": n}
            for k, n in sorted(keys.items(), key=lambda kv: (-kv[1], kv[0]))
        ]


# -- the property test ------------------------------------------------------------------


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Chains of events per profile over twelve days, arriving with random delays (so
    some come late), from every source, with properties, some excluded by name."""
    records: list[dict[str, Any]] = []
    for p in range(draw(st.integers(1, 5))):
        t = T0 + draw(st.integers(-6 * DAY, 5 * DAY))
        for i in range(draw(st.integers(1, 9))):
            t += draw(GAPS)
            records.append({
                "message_id": f"m{p}-{i}", "profile_id": f"u{p}",
                "name": draw(st.sampled_from(NAMES)),
                "ts": t, "source": draw(st.sampled_from(SOURCES)),
                "received_at": t + draw(st.sampled_from([0, 0, 30_000, 10 * MIN, DAY])),
                "properties": draw(PROPS),
            })  # fmt: skip
    records.sort(key=lambda r: r["received_at"])
    return records


def cli_figures(db: Path, project: str, args: list[str], prop: str) -> dict[str, Any]:
    out = {}
    for name in FIGURES:
        more = ["--property", prop] if name == "breakdown" else []
        done = lull(db, "--project", project, "figures", name, *args, *more)
        assert done.code == 0, done.err
        out[name] = done.json()
    return out


@settings(max_examples=25, deadline=None)
@given(
    records=histories(),
    tz=ZONES,
    until=st.integers(-2, 4),
    days=st.integers(1, 5),
    source=st.sampled_from([None, "web", "ios", "android"]),
    prop=st.sampled_from(["plan", "version", "absent"]),
)
def test_every_figure_follows_its_definition(
    shared_db: Path,
    tmp_path_factory: pytest.TempPathFactory,
    records: list[dict[str, Any]],
    tz: str,
    until: int,
    days: int,
    source: str | None,
    prop: str,
) -> None:
    tmp = tmp_path_factory.mktemp("figures")
    project = f"p{next(_names)}"
    run = ["--project", project]
    assert lull(shared_db, *run, "settings", "--sessions", "on", "--timeout", "1m",
                "--timezone", tz).code == 0  # fmt: skip
    imported = lull(shared_db, *run, "import", str(write_events(tmp / "in.ndjson", records)))
    assert imported.code == 0, imported.err
    last = date(2026, 10, 1) + timedelta(days=until)
    args = [
        "--until",
        last.isoformat(),
        "--days",
        str(days),
        *(["--source", source] if source else []),
    ]
    got = cli_figures(shared_db, project, args, prop)
    run_export = lull(shared_db, *run, "export", "sessions", "-o", str(tmp / "s.ndjson"))
    assert run_export.code == 0, run_export.err
    sessions = [json.loads(line) for line in (tmp / "s.ndjson").read_text().splitlines()]
    events = exported_events(shared_db, project, "figures-events.ndjson")
    want = Reference(sessions, events, tz).all(last - timedelta(days=days - 1), last, source, prop)
    for name in FIGURES:
        assert got[name] == want[name], name
    # the ends stored by the import are used; without them (or with half of them, or
    # with a stale row) the figures are the same, found from the events
    con = connect(shared_db)
    pid = project_id(con, project, create=False)
    stored = con.execute("SELECT count(*) FROM session_ends WHERE project_id = ?", [pid])
    assert stored.fetchone() == (sum(1 for s in sessions if s["concluded"]),)
    con.execute("DELETE FROM session_ends WHERE project_id = ? AND skey % 2 = 0", [pid])
    con.execute(  # rows of sessions since rebuilt into other ones
        """UPDATE session_ends SET first_name = 'stale', prev_last_ts = 0, last_ts = last_ts + 1
           WHERE project_id = ? AND skey % 2 = 1""",
        [pid],
    )
    con.close()
    assert cli_figures(shared_db, project, args, prop) == got
    con = connect(shared_db)
    fill(con, pid)
    con.close()
    assert cli_figures(shared_db, project, args, prop) == got
    con = connect(shared_db, read_only=True)
    left = con.execute("SELECT count(*) FROM session_ends WHERE first_name = 'stale'")
    assert left.fetchone() == (0,)
    con.close()
    # a store written before the table existed, opened read-only: all found from events
    con = connect(shared_db)
    con.execute("DROP TABLE session_ends")
    con.close()
    assert cli_figures(shared_db, project, args, prop) == got
    connect(shared_db).close()  # (made again, empty, for the next example's import)


# -- bad input, the read API, the function ----------------------------------------------


def test_bad_input_is_refused_clearly(db_path: Path) -> None:
    assert lull(db_path, "settings", "--sessions", "on").code == 0
    cases = {
        ("figures", "nope"): "unknown figure 'nope': use one of bounce, events_per_session, "
        "sessions_per_user, interval, entry_exit, breakdown, properties",
        ("figures", "breakdown"): "'property' is required: the property of the first event "
        "to break down by",
        ("figures", "breakdown", "--property", "x" * 201): "'property' is longer than 200 "
        "characters",
        ("figures", "bounce", "--source", "api"): "unknown source 'api': use one of web, ios, "
        "android",
        ("figures", "bounce", "--until", "0001-01-05", "--days", "3"): "the 6 days up to "
        "0001-01-05 reach outside the calendar",
    }
    for args, message in cases.items():
        done = lull(db_path, *args)
        assert (done.code, done.err) == (1, f"lull: error: {message}\n"), args


def test_cli_read_api_and_function_agree(tmp_path: Path) -> None:
    db = tmp_path / "lull.duckdb"
    now = now_ms()
    with LullServer(db) as server:
        keys = server.create_project("shop", sessions="on", timeout="1m")
        server.start()
        for key, profile in ((keys.web, "w"), (keys.ios, "i"), (keys.android, "a")):
            sent = [
                {"message_id": f"{profile}{k}", "profile_id": f"{profile}{k % 3}",
                 "name": NAMES[k % 4], "ts": now - 3 * 3_600_000 + k * 50_000,
                 "properties": {"plan": ["free", "premium"][k % 2], "version": k % 3}}
                for k in range(30)
            ]  # fmt: skip
            assert server.post_events(key, sent).status_code == 200
        today = datetime.fromtimestamp(now / 1000, UTC).date().isoformat()
        api: dict[tuple[str, str | None], Any] = {}
        for name in FIGURES:
            for source in (None, "web"):
                params: dict[str, str | int] = {"days": 2, "until": today, "property": "plan"}
                if source:
                    params["source"] = source
                api[name, source] = server.read(keys, f"figures/{name}", **params)
        refused: tuple[tuple[str, dict[str, str], str], ...] = (
            ("figures/nope", {}, "unknown figure 'nope'"),
            ("figures/breakdown", {}, "'property' is required"),
            ("figures/bounce", {"source": "tv"}, "use one of web, ios, android"),
            ("figures/bounce", {"days": "0"}, "'days' must be a whole number"),
        )
        for path, query, message in refused:
            bad = server.http.get(f"/api/v1/{path}", params=query,
                                  headers=bearer(keys.read_token))  # fmt: skip
            assert bad.status_code == 400 and message in bad.json()["error"], bad.text
        server.stop()
    assert api["bounce", None]["current"]["sessions"] > 0
    assert api["entry_exit", None]["entry"][0]["sessions"] > 0
    con = connect(db, read_only=True)
    pid = project_id(con, "shop", create=False)
    s = get_settings(con, pid)
    for (name, source), got in api.items():
        cli = lull(db, "--project", "shop", "figures", name, "--days", "2", "--until", today,
                   "--property", "plan", *(["--source", source] if source else []))  # fmt: skip
        assert cli.json() == got, name
        mine = figure(con, name, pid, s, date.fromisoformat(today), 2, source, "plan")
        assert mine == got, name
    con.close()


def test_a_running_server_keeps_the_ends_of_the_sessions_it_concludes(tmp_path: Path) -> None:
    """Sessions the server concludes get their row in session_ends within ENDS_SECONDS
    (LiveEngine.fill_ends), without a restart or an import."""
    from lull.server.live import ENDS_SECONDS

    db = tmp_path / "lull.duckdb"
    now = now_ms()
    with LullServer(db) as server:
        keys = server.create_project("shop", sessions="on", timeout="1m")
        server.start()
        sent = [
            {"message_id": f"m{k}", "profile_id": f"u{k % 4}", "name": NAMES[k % 4],
             "ts": now - 3_600_000 + k * 90_000, "properties": {"plan": "free"}}
            for k in range(24)
        ]  # fmt: skip
        assert server.post_events(keys.web, sent).status_code == 200
        for _ in range(100):  # every session is due at once: concluded by the timer
            if all(s["concluded"] for s in server.sessions(keys)):
                break
            time.sleep(0.1)
        concluded = len(server.sessions(keys))
        time.sleep(ENDS_SECONDS + 3)
        server.stop()
    con = connect(db, read_only=True)
    pid = project_id(con, "shop", create=False)
    rows = con.execute(
        "SELECT count(*), count(DISTINCT first_name) FROM session_ends WHERE project_id = ?",
        [pid],
    ).fetchone()
    con.close()
    assert concluded == 24 and rows is not None and rows[0] == concluded
