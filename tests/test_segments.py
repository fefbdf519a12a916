"""Past-behaviour segments: the compiled query (through `lull segment`) against a
reference written apart from it: the store's rows read with plain SQL (`all_events`, the
view every export reads, `sessions`, `profiles`) and each condition evaluated on them in
Python, over random stores and random definitions (hypothesis)."""

from __future__ import annotations

import csv
import io
import itertools
import json
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lull.segments import definition as defs
from lull.segments import service
from lull.store.db import connect
from lull.store.projects import get_settings
from lullrun import lull, write_events

T0 = 1_790_812_800_000  # 2026-10-01T00:00:00Z
DAY = 86_400_000
MIN = 60_000
NAMES = ["A", "B", "Session Concluded"]
KEYS = ["k", "n", "a/b"]
VALUES = st.one_of(
    st.sampled_from(["x", "y", "xy", "", "true", "1"]),
    st.integers(-3, 3),
    st.sampled_from([0.5, 1.0, 2.5, -1.5]),
    st.booleans(),
    st.none(),
)
_projects = itertools.count()


@st.composite
def stores(draw: st.DrawFn) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]], str]:
    """Events of a few profiles over four days (sessions of a 2-minute timeout), profile
    properties, and the project's time zone."""
    records = []
    for p in range(draw(st.integers(1, 6))):
        t = T0 + draw(st.integers(-DAY // 2, 2 * DAY))
        for i in range(draw(st.integers(0, 10))):
            t += draw(st.sampled_from([1000, 30_000, MIN, 3 * MIN, 10 * MIN, DAY // 2]))
            props = {k: draw(VALUES) for k in KEYS if draw(st.booleans())}
            records.append(
                {"message_id": f"m{p}-{i}", "profile_id": f"u{p}",
                 "name": draw(st.sampled_from(["A", "B", "A", "Notification Sent"])),
                 "ts": t, "source": draw(st.sampled_from(["web", "ios", "api"])),
                 "properties": props}
            )  # fmt: skip
    traits = {f"u{p}": {k: draw(VALUES) for k in KEYS if draw(st.booleans())} for p in range(6)}
    tz = draw(st.sampled_from(["UTC", "Asia/Kolkata", "America/New_York"]))
    return records, traits, tz


def filters(ops: tuple[str, ...] = defs.OPS) -> st.SearchStrategy[dict[str, Any]]:
    @st.composite
    def one(draw: st.DrawFn) -> dict[str, Any]:
        op = draw(st.sampled_from(ops))
        prop = draw(st.sampled_from([*KEYS, "Session Length", "Session ID"]))
        f: dict[str, Any] = {"property": prop, "op": op}
        if op in defs.NUMERIC_OPS:
            f["value"] = draw(st.sampled_from([-1, 0, 1, 1.5, 60, 180, 600]))
        elif op == "contains":
            f["value"] = draw(st.sampled_from(["x", "y", "", "-"]))
        elif op not in ("exists", "not exists"):
            f["value"] = draw(st.one_of(st.sampled_from(["x", "xy", "true", "1"]),
                                        st.integers(-1, 3), st.booleans(),
                                        st.sampled_from([0, 60, 180])))  # fmt: skip
        return f

    return one()


def counts(draw: st.DrawFn, top: int) -> dict[str, int]:
    out = {}
    if draw(st.booleans()):
        out["at_least"] = draw(st.integers(1, top))
    if draw(st.booleans()):
        out["at_most"] = draw(st.integers(out.get("at_least", 0), top + 1))
    return out


@st.composite
def conditions(draw: st.DrawFn, depth: int = 0) -> dict[str, Any]:
    kinds = ["event", "event", "sessions", "session_time", "profile"]
    kind = draw(st.sampled_from(kinds + (["group"] if depth < 2 else [])))
    if kind == "group":
        inner = draw(st.lists(conditions(depth + 1), min_size=1, max_size=3))
        return {"type": "group", "match": draw(st.sampled_from(["all", "any"])),
                "conditions": inner}  # fmt: skip
    if kind == "event":
        c: dict[str, Any] = {"type": "event", "event": draw(st.sampled_from(NAMES))}
        if draw(st.booleans()):
            c["where"] = draw(st.lists(filters(), max_size=2))
        if draw(st.integers(0, 3)) == 0:
            c["did"] = False
        else:
            c |= counts(draw, 4)
        return c
    if kind == "profile":
        return {"type": "profile", **draw(filters())}
    c = {"type": kind, **counts(draw, 4 if kind == "sessions" else 900)}
    return c if len(c) > 1 else {**c, "at_least": 1}


@st.composite
def definitions(draw: st.DrawFn) -> dict[str, Any]:
    first = date(2026, 9, 30) + timedelta(days=draw(st.integers(0, 2)))
    last = first + timedelta(days=draw(st.integers(0, 3)))
    return {"from": first.isoformat(), "until": last.isoformat(),
            "match": draw(st.sampled_from(["all", "any"])),
            "conditions": draw(st.lists(conditions(), min_size=1, max_size=4))}  # fmt: skip


# -- the reference ---------------------------------------------------------------------


def _passes(f: dict[str, Any], props: dict[str, Any]) -> bool:
    """A property filter, as docs/segments.md says it reads."""
    op, want = f["op"], f.get("value")
    have = props.get(f["property"])
    if op == "exists":
        return have is not None
    if op == "not exists":
        return have is None
    if op == "contains":
        return isinstance(have, str) and isinstance(want, str) and want in have

    def number(v: object) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool)

    if op in ("=", "!="):
        if isinstance(want, bool):
            same = isinstance(have, bool) and have == want
        elif isinstance(want, str):
            same = isinstance(have, str) and have == want
        else:
            same = number(have) and float(have) == float(want)  # type: ignore[arg-type]
        return same if op == "=" else not same
    if not number(have):
        return False
    a, b = float(have), float(want)  # type: ignore[arg-type]
    return {">": a > b, ">=": a >= b, "<": a < b, "<=": a <= b}[op]


class Reference:
    """The store read with plain SQL; segments evaluated in Python."""

    def __init__(self, con: duckdb.DuckDBPyConnection, pid: int, tz: str) -> None:
        self.tz = tz
        self.profiles = {
            p: json.loads(props) if props else {}
            for p, props in con.execute(
                "SELECT profile_id, properties FROM profiles WHERE project_id = ?", [pid]
            ).fetchall()
        }
        self.events = [
            (p, name, ts, json.loads(props) if props else {})
            for p, name, ts, props in con.execute(
                "SELECT profile_id, name, ts, properties FROM all_events WHERE project_id = ?",
                [pid],
            ).fetchall()
        ]
        self.sessions = con.execute(
            "SELECT profile_id, first_ts, last_ts FROM sessions WHERE project_id = ? AND concluded",
            [pid],
        ).fetchall()

    def members(self, d: dict[str, Any]) -> set[str]:
        zone = ZoneInfo(self.tz)
        lo = datetime.fromisoformat(d["from"]).replace(tzinfo=zone).timestamp() * 1000
        end = datetime.fromisoformat(d["until"]) + timedelta(days=1)
        hi = end.replace(tzinfo=zone).timestamp() * 1000
        return {p for p in self.profiles if self._group(d, p, lo, hi)}

    def _group(self, g: dict[str, Any], p: str, lo: float, hi: float) -> bool:
        each = [self._one(c, p, lo, hi) for c in g["conditions"]]
        return all(each) if g.get("match", "all") == "all" else any(each)

    def _one(self, c: dict[str, Any], p: str, lo: float, hi: float) -> bool:
        kind = c["type"]
        if kind == "group":
            return self._group(c, p, lo, hi)
        if kind == "profile":
            return _passes(c, self.profiles[p])
        if kind in ("sessions", "session_time"):
            mine = [(f, la) for q, f, la in self.sessions if q == p and lo <= la < hi]
            n = len(mine) if kind == "sessions" else sum((la - f) // 1000 for f, la in mine)
            return self._between(n, c, None)
        n = sum(
            1
            for q, name, ts, props in self.events
            if q == p and name == c["event"] and lo <= ts < hi
            and all(_passes(f, props) for f in c.get("where", []))
        )  # fmt: skip
        if not c.get("did", True):
            return n == 0
        return self._between(n, c, 1)

    @staticmethod
    def _between(n: int, c: dict[str, Any], least: int | None) -> bool:
        lo = c.get("at_least", least)
        return (lo is None or n >= lo) and ("at_most" not in c or n <= c["at_most"])


# -- the tests -------------------------------------------------------------------------


def _fill(
    db: Path, tmp: Path, records: list[dict[str, Any]], traits: dict[str, Any], tz: str
) -> str:
    project = f"p{next(_projects)}"
    assert lull(db, "--project", project, "settings", "--sessions", "on", "--timeout", "2m",
                "--timezone", tz).code == 0  # fmt: skip
    if records:
        made = lull(
            db, "--project", project, "import", str(write_events(tmp / "e.ndjson", records))
        )
        assert made.code == 0, made.err
    con = connect(db)
    try:
        pid = int(con.execute("SELECT id FROM projects WHERE name = ?", [project]).fetchone()[0])  # type: ignore[index]
        for p, props in traits.items():  # as identify calls leave them (server/writes.py)
            con.execute(
                "UPDATE profiles SET properties = ?::JSON WHERE project_id = ? AND profile_id = ?",
                [json.dumps(props), pid, p],
            )
    finally:
        con.close()
    return project


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(store=stores(), data=st.data())
def test_segments_match_the_reference(
    shared_db: Path, tmp_path_factory: pytest.TempPathFactory, store: Any, data: st.DataObject
) -> None:
    records, traits, tz = store
    project = _fill(shared_db, tmp_path_factory.mktemp("s"), records, traits, tz)
    con = connect(shared_db)
    try:
        pid = int(con.execute("SELECT id FROM projects WHERE name = ?", [project]).fetchone()[0])  # type: ignore[index]
        reference = Reference(con, pid, tz)
        s = get_settings(con, pid)
        for _ in range(25):
            raw = data.draw(definitions())
            d = defs.parse_past(raw)
            assert defs.parse_past(defs.as_json(d)) == d  # what is saved reads back the same
            want = reference.members(raw)
            got = [r["profile_id"] for r in service.profiles(con, pid, s, d)]
            assert got == sorted(want), raw
            assert service.count(con, pid, s, d)["count"] == len(want)
    finally:
        con.close()


def _demo_store(db: Path, tmp: Path, project: str = "default") -> None:
    """Three profiles: u1 has three sessions over 10 minutes in the week, u2 one, u3 none."""
    day = T0 + 5 * DAY
    records = []
    for p, lengths in (("u1", [11, 12, 15, 2]), ("u2", [11, 1]), ("u3", [])):
        for i, minutes in enumerate(lengths):
            start = day + i * 3600_000
            for j, at in enumerate((start, start + minutes * MIN)):
                plan = {"plan": "pro" if p == "u1" else "free"}
                records.append({"message_id": f"{p}-{i}-{j}", "profile_id": p, "name": "A",
                                "ts": at, "source": "web", "properties": plan})  # fmt: skip
    records.append(
        {"message_id": "u3", "profile_id": "u3", "name": "B", "ts": day, "source": "api"}
    )
    which = ["--project", project]
    assert lull(db, *which, "settings", "--sessions", "on").code == 0
    assert lull(db, *which, "import", str(write_events(tmp / "e.ndjson", records))).code == 0


LONG: dict[str, Any] = {"from": "2026-10-01", "until": "2026-10-07", "conditions": [
    {"type": "event", "event": "Session Concluded", "at_least": 3,
     "where": [{"property": "Session Length", "op": ">", "value": 600}]}]}  # fmt: skip


def test_cli_create_count_profiles_delete(db_path: Path, tmp_path: Path) -> None:
    _demo_store(db_path, tmp_path)
    made = lull(db_path, "segment", "create", "long", "--definition", json.dumps(LONG))
    assert made.code == 0, made.err
    assert made.json()["kind"] == "past" and "secret" not in made.json()
    assert lull(db_path, "segment", "count", "long").json()["count"] == 1
    (tmp_path / "d.json").write_text(json.dumps({**LONG, "conditions": [
        {"type": "event", "event": "Session Concluded", "did": False,
         "where": [{"property": "Session Length", "op": ">", "value": 600}]}]}))  # fmt: skip
    assert (
        lull(db_path, "segment", "count", "--definition", f"@{tmp_path / 'd.json'}").json()["count"]
        == 1
    )  # u3
    got = lull(db_path, "segment", "profiles", "long", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(got.out)))
    assert [r["profile_id"] for r in rows] == ["u1"] and rows[0]["first_seen"].startswith(
        "2026-10-06"
    )
    assert [s["name"] for s in lull(db_path, "segment", "list").json()] == ["long"]
    again = lull(db_path, "segment", "create", "long", "--definition", json.dumps(LONG))
    assert again.code == 1 and "exists already" in again.err
    assert lull(db_path, "segment", "delete", "long").code == 0
    gone = lull(db_path, "segment", "show", "long")
    assert gone.code == 1 and "no segment named 'long'" in gone.err


def _of(*conditions: dict[str, Any], **more: Any) -> str:
    return json.dumps({**more, "conditions": list(conditions)})


EVENT_A = {"type": "event", "event": "A"}
ONE_SESSION = {"type": "sessions", "at_least": 1}
BAD = [
    ("{", "--definition: not JSON"),
    ('{"conditions": []}', "conditions: must be a non-empty list"),
    (_of({"type": "event"}), "conditions[0].event: must be an event name"),
    (_of({**EVENT_A, "at_least": 3, "at_most": 1}), "conditions[0].at_most: 1 is less than"),
    (_of({"type": "group", "conditions": [{"type": "profile", "property": "p", "op": ">",
                                           "value": "x"}]}),
     "conditions[0].conditions[0].value: '>' needs a number"),
    (_of({**EVENT_A, "where": [{"property": "p", "op": "~"}]}),
     "conditions[0].where[0].op: '~' is not one of"),
    (_of(ONE_SESSION, days=0), "days: must be a whole number"),
    (_of(ONE_SESSION, **{"from": "2026-13-01", "until": "2026-10-01"}),
     "from: '2026-13-01' is not a date"),
    (_of(ONE_SESSION, colour=1), "definition: unknown field 'colour'"),
    (_of({"type": "sessions"}), "conditions[0]: give 'at_least' or 'at_most'"),
    (_of({**EVENT_A, "did": False, "at_least": 2}), "'did': false takes no 'at_least'"),
]  # fmt: skip


@pytest.mark.parametrize(("definition", "message"), BAD)
def test_bad_definitions_name_the_field(db_path: Path, definition: str, message: str) -> None:
    got = lull(db_path, "segment", "count", "--definition", definition)
    assert got.code == 1 and message in got.err, got.err
    assert got.err.startswith("lull: error: ") and "Traceback" not in got.err


def test_bad_names_and_live_ones_from_the_cli(db_path: Path) -> None:
    bad = lull(db_path, "segment", "create", "a b", "--definition", json.dumps(LONG))
    assert bad.code == 1 and "segment name 'a b'" in bad.err
    live = {"event": "Session Concluded", "webhook": "http://127.0.0.1:9/hook"}
    refused = lull(db_path, "segment", "create", "l", "--definition", json.dumps(live))
    assert (
        refused.code == 1 and "'Session Concluded' cannot be used in a live segment" in refused.err
    )
    excluded = {**live, "event": "App Installed"}
    refused = lull(db_path, "segment", "create", "l", "--definition", json.dumps(excluded))
    assert refused.code == 1 and "excluded system events" in refused.err
    made = lull(
        db_path, "segment", "create", "l", "--definition", json.dumps({**live, "event": "A"})
    )
    assert made.code == 0 and made.json()["secret"].startswith("whsec_")
    counted = lull(db_path, "segment", "count", "l")
    assert counted.code == 1 and "is a live segment" in counted.err


def test_days_count_back_from_today(db_path: Path, tmp_path: Path) -> None:
    """`days` is the days up to today in the project's zone (or up to `until`)."""
    _demo_store(db_path, tmp_path)
    con = connect(db_path)
    try:
        s = get_settings(con, 1)
        week = defs.parse_past({"days": 7, "conditions": LONG["conditions"]})
        assert service.count(con, 1, s, week, today=date(2026, 10, 7))["count"] == 1
        assert service.count(con, 1, s, week, today=date(2026, 10, 14))["count"] == 0
        until = defs.parse_past(
            {"days": 2, "until": "2026-10-06", "conditions": LONG["conditions"]}
        )
        assert service.count(con, 1, s, until)["count"] == 1
    finally:
        con.close()


def test_an_older_store_gets_the_segment_tables(tmp_path: Path) -> None:
    """A store of schema 3 (before segments) is migrated when opened for writing."""
    db = tmp_path / "old.duckdb"
    con = connect(db)
    con.execute("DROP TABLE segments")
    con.execute("DROP TABLE segment_deliveries")
    con.execute("UPDATE lull_meta SET value = '3' WHERE key = 'schema_version'")
    con.close()
    made = lull(db, "segment", "create", "long", "--definition", json.dumps(LONG))
    assert made.code == 0, made.err
    assert lull(db, "segment", "count", "long").json()["count"] == 0
