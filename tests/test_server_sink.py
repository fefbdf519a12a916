"""`lull serve --events-sink DIR`: the stored events, and only those, land in DIR as
canonical NDJSON; the Spark stream over DIR gives the server's own sessions."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import pytest

from lull.ingest.records import to_record
from lull.server.sink import EventsSink, project_names
from lull.store.db import connect
from lull.store.projects import project_id
from serverproc import Keys, LullServer, export, now_ms
from test_spark_stream import read, stream

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

MIN = 60_000
Record = dict[str, Any]


def ev(mid: str, profile: str, ts: int, name: str = "Play", **extra: Any) -> Record:
    return {"message_id": mid, "profile_id": profile, "name": name, "ts": ts, **extra}


def landed(folder: Path) -> list[Record]:
    return [json.loads(line) for f in sorted(folder.glob("*.ndjson"))
            for line in f.read_text().splitlines()]  # fmt: skip


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LullServer, Path]]:
    """A server that took some events (a retry, a refused one, an old session that was
    concluded and an event late for it), then stopped; and its sink folder."""
    tmp = tmp_path_factory.mktemp("sink")
    sink = tmp / "landing"
    with LullServer(tmp / "lull.duckdb") as server:
        keys = server.create_project("shop", sessions="on", timeout="1m")
        server.serve_args = ["--events-sink", str(sink)]
        server.start()
        send(server, keys)
        assert server.stop() == 0
        yield server, sink


def send(server: LullServer, keys: Keys) -> None:
    now = now_ms()
    batches = [
        [ev("a1", "ann", now), ev("b1", "bob", now - 60 * MIN, properties={"k": [1, "x"]})],
        [ev("a2", "ann", now + 1000, sent_at=now + 5000), ev("a1", "ann", now)],  # retry
        [
            ev("bad", "ann", now, name="Session Concluded"),
            ev("c1", "cy", now, name="App Installed"),
        ],
    ]
    for batch in batches:
        server.post_events(keys.web, batch)
    time.sleep(1.5)  # bob's session (an hour old) is concluded by the server's timer
    server.post_events(
        keys.ios, [ev("b2", "bob", now - 60 * MIN + 30_000), ev("a3", "ann", now + 2000)]
    )


def test_sink_holds_exactly_the_stored_events(served: tuple[LullServer, Path]) -> None:
    server, sink = served
    stored = [e for e in export(server.db, "shop", "events") if e["name"] != "Session Concluded"]
    got = landed(sink / "shop")
    keep = ("message_id", "profile_id", "name", "ts", "source", "received_at", "properties")
    assert sorted(got, key=lambda e: e["message_id"]) == sorted(
        ({k: e[k] for k in keep} for e in stored), key=lambda e: e["message_id"]
    )
    assert {e["message_id"] for e in got} == {"a1", "a2", "a3", "b1", "b2", "c1"}
    assert all(to_record(e).received_at is not None for e in got)  # canonical, with its clock
    assert not list(sink.glob("*/.*"))  # every file was published at the stop


def test_stream_over_the_sink_gives_the_servers_sessions(
    spark: SparkSession, served: tuple[LullServer, Path], tmp_path: Path
) -> None:
    server, sink = served
    stream(tmp_path / "d", sink / "shop", tmp_path / "out", tmp_path / "ck", timeout="1m")
    stored = export(server.db, "shop", "events")
    assert any(e["late"] for e in stored)  # the case is not trivial
    events = read(tmp_path / "out", "events")
    assert {e["message_id"]: (e["session_id"], e["late"]) for e in events} == {
        e["message_id"]: (e["session_id"], e["late"])
        for e in stored
        if e["name"] != "Session Concluded"
    }
    concluded = {s["session_id"] for s in export(server.db, "shop", "sessions") if s["concluded"]}
    assert {s["session_id"] for s in read(tmp_path / "out", "sessions")} == concluded


def test_a_file_is_published_whole_after_a_second(tmp_path: Path) -> None:
    sink = EventsSink(tmp_path, lambda pid: f"p{pid}", every=0.2)
    columns: dict[str, list[Any]] = {
        "project_id": [1, 2], "message_id": ["m1", "m2"], "profile_id": ["u", "v"],
        "name": ["Play", "Play"], "ts": [0, 1000], "source": ["web", "ios"],
        "received_at": [5, 1005], "properties": ['{"a":1}', "{}"],
    }  # fmt: skip
    sink.write(columns)
    assert landed(tmp_path / "p1") == [] and len(list(tmp_path.glob("p1/.*.tmp"))) == 1
    time.sleep(0.25)
    sink.tick()
    assert landed(tmp_path / "p1") == [
        {"message_id": "m1", "profile_id": "u", "name": "Play", "ts": "1970-01-01T00:00:00.000Z",
         "source": "web", "received_at": "1970-01-01T00:00:00.005Z", "properties": {"a": 1}}
    ]  # fmt: skip
    assert [e["message_id"] for e in landed(tmp_path / "p2")] == ["m2"]


def test_a_killed_servers_open_file_is_published_at_start(tmp_path: Path) -> None:
    folder = tmp_path / "shop"
    folder.mkdir()
    line = msgspec.json.encode(ev("m1", "u", 0, source="web", received_at=0)) + b"\n"
    (folder / ".0000000000001-1-000001.tmp").write_bytes(line + line[:10])  # cut mid-line
    EventsSink(tmp_path, str)
    assert [f.name for f in folder.iterdir()] == ["0000000000001-1-000001.ndjson"]
    assert landed(folder) == [json.loads(line)]


def test_a_quiet_project_gets_clock_files(tmp_path: Path) -> None:
    sink = EventsSink(tmp_path, lambda pid: f"p{pid}", every=0.05, beat=0.2)
    columns: dict[str, list[Any]] = {
        "project_id": [1], "message_id": ["m1"], "profile_id": ["u"], "name": ["Play"],
        "ts": [0], "source": ["web"], "received_at": [5], "properties": ["{}"],
    }  # fmt: skip
    sink.write(columns)
    time.sleep(0.1)
    sink.tick(7000)  # publishes the events; quiet for less than `beat` yet
    assert not list(tmp_path.glob("p1/*.clock"))
    time.sleep(0.25)
    sink.tick(9000)
    clocks = list(tmp_path.glob("p1/*.clock"))
    assert [json.loads(f.read_text()) for f in clocks] == [{"clock": "1970-01-01T00:00:09.000Z"}]
    assert sorted(tmp_path.glob("p1/*"))[-1] == clocks[0]  # named after the events file


def test_a_project_name_that_is_no_file_name_gets_a_plain_folder(tmp_path: Path) -> None:
    con = connect(str(tmp_path / "lull.duckdb"))
    try:
        shop, odd = project_id(con, "shop.eu"), project_id(con, "../etc")
        names = project_names(con)
        assert (names(shop), names(odd)) == ("shop.eu", f"project-{odd}")
    finally:
        con.close()
