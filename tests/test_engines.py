"""One fixture suite through every engine: the same events give the same sessions.

Each engine is a runner: canonical records and settings in, the sessions (as `lull export
sessions` writes them) and each event's session id out. ENGINES lists them; a new engine
joins the suite by being added there. Every case runs all of them and asserts that they
agree with each other (and, where the case is small, with the plain R2 of
test_properties.py).

- `run_import`: `lull import` with sessions on (the live replay, columnar + exact);
- `run_resessionize`: `lull import` with sessions off, then `lull resessionize`;
- `run_spark_batch`: `lull import` with sessions off, `lull export events --format
  parquet` of the store, `lull spark resessionize` on that file (moving up);
- `run_spark_stream`: the records as a landing directory through `lull spark stream`;
- `run_live_server`: a real `lull serve`, sent the records in one request (one arrival
  instant, as an import without received_at is), then asked for its sessions once its
  timer has concluded every one that is due.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings

from lull.model import DEFAULT_EXCLUDED, Settings, format_duration, session_id_for
from lullrun import lull, write_events
from serverproc import LullServer, export
from test_properties import Event, in_order, r2
from test_spark_stream import land, sessions_of, stream
from test_spark_stream import read as read_stream

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

NASA = Path(__file__).resolve().parents[1] / "data/nasa-http-19950801/nasa_19950801.tsv"
Record = dict[str, Any]
Sessions = list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an engine made of the events: its sessions, sorted, and message_id ->
    session_id for every event but the Session Concluded ones."""

    sessions: Sessions
    event_sessions: dict[str, str | None]


@dataclass
class Workspace:
    """Where runners work: one store (a project per run), a scratch folder, Spark."""

    tmp: Path
    spark: SparkSession
    numbers: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def db(self) -> Path:
        return self.tmp / "engines.duckdb"

    def project(self, settings: Settings, *, sessions: bool) -> Project:
        project = Project(self, f"p{next(self.numbers)}")
        project.run(
            "settings",
            "--sessions",
            "on" if sessions else "off",
            "--timeout",
            format_duration(settings.timeout_ms),
            "--timezone",
            settings.timezone,
            "--excluded",
            ",".join(settings.excluded),
        )
        return project


@dataclass
class Project:
    space: Workspace
    name: str

    def run(self, *args: str) -> str:
        done = lull(self.space.db, *args, "--project", self.name)
        assert done.code == 0, done.err
        return done.out

    def path(self, suffix: str) -> Path:
        return self.space.tmp / f"{self.name}-{suffix}"

    def load(self, records: list[Record]) -> None:
        self.run("import", str(write_events(self.path("in.ndjson"), records)))

    def export(self, what: str) -> list[Record]:
        target = self.path(f"{what}.ndjson")
        self.run("export", what, "-o", str(target))
        return [json.loads(line) for line in target.read_text().splitlines()]

    def outcome(self) -> Outcome:
        return outcome(self.export("sessions"), self.export("events"))


def outcome(sessions: Sessions, events: list[Record]) -> Outcome:
    return Outcome(
        sorted(sessions, key=lambda s: (s["profile_id"], s["first_ts"], s["session_id"])),
        {e["message_id"]: e["session_id"] for e in events if e["name"] != "Session Concluded"},
    )


Runner = Callable[[list[Record], Settings, Workspace], Outcome]


def run_import(records: list[Record], settings: Settings, space: Workspace) -> Outcome:
    project = space.project(settings, sessions=True)
    project.load(records)
    return project.outcome()


def run_resessionize(records: list[Record], settings: Settings, space: Workspace) -> Outcome:
    project = space.project(settings, sessions=False)
    project.load(records)
    project.run("settings", "--sessions", "on")
    project.run("resessionize")
    return project.outcome()


def run_spark_batch(records: list[Record], settings: Settings, space: Workspace) -> Outcome:
    project = space.project(settings, sessions=False)
    project.load(records)
    events, out = project.path("events.parquet"), project.path("spark")
    project.run("export", "events", "--format", "parquet", "-o", str(events))
    excluded = ",".join(settings.excluded)
    timeout = format_duration(settings.timeout_ms)
    done = lull(
        space.db,
        *("spark", "resessionize", "--events", str(events), "--out", str(out)),
        *("--timeout", timeout, "--excluded", excluded, "--timezone", settings.timezone),
    )
    assert done.code == 0, done.err
    return outcome(read_parquet(out / "sessions"), read_parquet(out / "events"))


def read_parquet(folder: Path) -> list[Record]:
    con = duckdb.connect()
    try:
        table = con.sql(f"SELECT * FROM read_parquet('{folder}/*.parquet')").to_arrow_table()
    finally:
        con.close()
    rows: list[Record] = table.to_pylist()
    return rows


def run_spark_stream(records: list[Record], settings: Settings, space: Workspace) -> Outcome:
    """`lull spark stream` over a landing directory holding the records (those without
    received_at arrive now, as in an import) and a clock line at now, so that every
    session due by now is concluded, as `lull import` concludes them."""
    project = space.project(settings, sessions=True)  # unused store; names the folders
    now = time.time_ns() // 1_000_000
    landing = project.path("landing")
    land(landing, [{"received_at": now} | r for r in records], parts=2)
    (landing / "9999.clock").write_text(json.dumps({"clock": now}) + "\n")
    out = project.path("stream")
    stream(
        space.db, landing, out, project.path("checkpoint"),
        *("--excluded", ",".join(settings.excluded)),
        timeout=format_duration(settings.timeout_ms),
    )  # fmt: skip
    return outcome(sessions_of(out), read_stream(out, "events"))


_OS = {"ios": "iOS", "android": "Android", "web": "Web"}


def run_live_server(records: list[Record], settings: Settings, space: Workspace) -> Outcome:
    """The live server on a store of its own. The SDK sources go in one request through
    the PostHog endpoint (its `$os` names each event's source under the web key), so they
    arrive at one instant as in an import; API events (server key) follow in another
    request, which changes no session (R1)."""
    db = space.tmp / f"live{next(space.numbers)}.duckdb"
    with LullServer(db) as srv:
        keys = srv.create_project("p")
        changed = lull(
            db, "--project", "p", "settings", "--sessions", "on",
            "--timeout", format_duration(settings.timeout_ms),
            "--timezone", settings.timezone, "--excluded", ",".join(settings.excluded),
        )  # fmt: skip
        assert changed.code == 0, changed.err
        srv.start()
        sdk = [r for r in records if r["source"] != "api"]
        batch = [
            {"event": r["name"], "distinct_id": r["profile_id"], "uuid": r["message_id"],
             "timestamp": r["ts"], "properties": {"$os": _OS[r["source"]]}}
            for r in sdk
        ]  # fmt: skip
        if batch:
            got = srv.http.post("/batch/", json={"api_key": keys.web, "batch": batch})
            assert got.status_code == 200 and got.json()["rejected"] == [], got.text
        api = [r for r in records if r["source"] == "api"]
        if api:
            assert srv.post_events(keys.server, api).status_code == 200
        deadline = time.monotonic() + 30
        while any(not s["concluded"] for s in srv.sessions(keys)):  # the timer's next tick
            assert time.monotonic() < deadline, "sessions due were not concluded"
            time.sleep(0.1)
        assert srv.stop() == 0
    return outcome(export(db, "p", "sessions"), export(db, "p", "events"))


ENGINES: list[Runner] = [
    run_import,
    run_resessionize,
    run_spark_batch,
    run_spark_stream,
    run_live_server,
]


def through_every_engine(
    records: list[Record], settings: Settings, space: Workspace, engines: list[Runner] = ENGINES
) -> dict[str, Outcome]:
    """Each engine's outcome; asserts that they are all the same."""
    outcomes = {run.__name__: run(records, settings, space) for run in engines}
    first_name, first = next(iter(outcomes.items()))
    for name, got in outcomes.items():
        assert got.sessions == first.sessions, f"{name} and {first_name} differ in sessions"
        assert got.event_sessions == first.event_sessions, (
            f"{name} and {first_name} give events other sessions"
        )
    return outcomes


@pytest.fixture(scope="module")
def space(tmp_path_factory: pytest.TempPathFactory, spark: SparkSession) -> Workspace:
    return Workspace(tmp_path_factory.mktemp("engines"), spark)


T = 60_000
ON = Settings(True, T)


def ev(mid: str, profile: str, ts: int, name: str = "Song Played", source: str = "ios") -> Record:
    return {"message_id": mid, "profile_id": profile, "name": name, "ts": ts, "source": source}


BASE = 1_700_000_000_000
# Per case: the events, in file order, and the sessions R2 makes of them (each as its
# events' message ids, the first one first); events in no group get no session.
CASES: dict[str, tuple[list[Record], list[list[str]]]] = {
    "exact_gap": (  # a gap of exactly the timeout splits; one ms less joins
        [ev("a", "u", BASE), ev("b", "u", BASE + T), ev("c", "u", BASE + 2 * T - 1)],
        [["a"], ["b", "c"]],
    ),
    "ties": (  # equal times: arrival (file) order decides the first event, and the id
        [ev("b", "u", BASE, source="web"), ev("a", "u", BASE), ev("c", "v", BASE)],
        [["b", "a"], ["c"]],
    ),
    "out_of_order": (  # the file is not in time order
        [ev("c", "u", BASE + 3 * T), ev("a", "u", BASE), ev("b", "u", BASE + 30)],
        [["a", "b"], ["c"]],
    ),
    "ineligible": (  # excluded and api events neither start, extend nor bridge sessions
        [
            ev("a", "u", BASE),
            ev("x", "u", BASE + T // 2, name=DEFAULT_EXCLUDED[0]),
            ev("y", "u", BASE + T, source="api"),
            ev("b", "u", BASE + T + 1),
            ev("z", "w", BASE, source="api"),
        ],
        [["a"], ["b"]],
    ),
    "iso_times": (  # offsets: 23:00+01:00 and 22:00:30Z are 30 s apart
        [
            ev("a", "u", 0) | {"ts": "2023-11-14T23:00:00.000+01:00"},
            ev("b", "u", 0) | {"ts": "2023-11-14T22:00:30Z"},
            ev("c", "u", 0) | {"ts": "2023-11-14T23:01:30+01:00"},
        ],
        [["a", "b"], ["c"]],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_cases(case: str, space: Workspace) -> None:
    records, groups = CASES[case]
    got = through_every_engine(records, ON, space)["run_import"]
    profile = {r["message_id"]: r["profile_id"] for r in records}
    want = {r["message_id"]: None for r in records} | {
        m: session_id_for(profile[g[0]], g[0]) for g in groups for m in g
    }
    assert got.event_sessions == want
    assert [s["events"] for s in got.sessions] == [len(g) for g in groups]


def test_excluded_list_and_timeout_are_the_settings(space: Workspace) -> None:
    records = [ev("a", "u", BASE), ev("b", "u", BASE + 2 * T, name="Ping"), ev("c", "u", BASE)]
    got = through_every_engine(records, Settings(True, 3 * T, ("Ping",)), space)["run_import"]
    assert [(s["events"], s["length_s"]) for s in got.sessions] == [(2, 0)]
    assert got.event_sessions["b"] is None


@hsettings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(in_order())
def test_generated_histories_agree_with_r2(space: Workspace, events: list[Event]) -> None:
    outcomes = through_every_engine([e.record() for e in events], ON, space)
    sessions, mapping = r2(events)
    assert outcomes["run_import"].sessions == sessions
    assert outcomes["run_import"].event_sessions == {m: sid for m, (sid, _) in mapping.items()}


def test_the_nasa_log(space: Workspace) -> None:
    ndjson = space.tmp / "nasa.ndjson"
    assert lull(space.db, "convert-nasa", str(NASA), "-o", str(ndjson)).code == 0
    records = [json.loads(line) for line in ndjson.read_text().splitlines()]
    # Not through the live server: 4 MB of events is more than one request may carry,
    # and in several requests (several instants) a 1995 day's sessions would be concluded
    # between them, which is the live rule (R5), not R2 over the whole file.
    batch_engines = [run for run in ENGINES if run is not run_live_server]
    got = through_every_engine(records, Settings(True), space, batch_engines)["run_import"]
    assert len(got.sessions) == 3139
    assert sum(s["events"] for s in got.sessions) == len(records) == 30969
