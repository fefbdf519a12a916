"""lull's Spark jobs on a Spark standalone cluster (tests/sparkcluster.py): a master and two
one-core workers, separate JVMs on 127.0.0.1, the jobs sent by `spark-submit` with the
paths relative to the driver's folder (executors run elsewhere). The cross-engine
fixtures of tests/test_engines.py and the stream's history of tests/test_spark_stream.py
give the embedded engine's answers there; a worker killed with SIGKILL while the stream
runs changes nothing: every event once, every session concluded once."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest

from lull.model import Settings, format_duration, session_id_for
from lullrun import lull
from sparkcluster import SparkCluster
from test_engines import (
    CASES,
    NASA,
    ON,
    Outcome,
    Record,
    Runner,
    Workspace,
    outcome,
    read_parquet,
    run_import,
    through_every_engine,
)
from test_spark_stream import fixture_history, land, read, sessions_of, want
from test_spark_stream import outcome as stream_outcome

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["fixture_history", "want"]  # the stream's fixtures, used here too
STREAM_DAEMON = {"spark.python.daemon.module": "lull.spark.stream_daemon"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkCluster]:
    with SparkCluster(tmp_path_factory.mktemp("cluster")) as c:
        yield c
    assert c.leftovers() == [], "processes of the cluster outlived it"


@dataclass
class ClusterSpace(Workspace):
    cluster: SparkCluster | None = None

    def submit(self, *args: str, name: str = "job") -> None:
        """spark-submit of `lull ARGS` from the workspace's folder, to its end."""
        assert self.cluster is not None
        done = self.cluster.submit(*args, db=self.db, cwd=self.tmp, conf=STREAM_DAEMON)
        # (the driver's Python writes to spark-submit's stdout, Spark's JVM to its stderr)
        assert done.code == 0, f"{name}: {done.out[-3000:]}\n{done.err[-3000:]}"


@pytest.fixture(scope="module")
def space(tmp_path_factory: pytest.TempPathFactory, cluster: SparkCluster) -> ClusterSpace:
    # no local Spark here: the cluster is the only one
    return ClusterSpace(
        tmp_path_factory.mktemp("engines"), cast("SparkSession", None), cluster=cluster
    )


def run_cluster_batch(records: list[Record], settings: Settings, space: Workspace) -> Outcome:
    """As test_engines.run_spark_batch, the job on the cluster."""
    assert isinstance(space, ClusterSpace)
    project = space.project(settings, sessions=False)
    project.load(records)
    events, out = project.path("events.parquet"), project.path("spark")
    project.run("export", "events", "--format", "parquet", "-o", str(events))
    space.submit(
        *("spark", "resessionize", "--events", events.name, "--out", out.name),
        *("--timeout", format_duration(settings.timeout_ms)),
        *("--excluded", ",".join(settings.excluded), "--timezone", settings.timezone),
        name="resessionize",
    )
    return outcome(read_parquet(out / "sessions"), read_parquet(out / "events"))


def run_cluster_stream(records: list[Record], settings: Settings, space: Workspace) -> Outcome:
    """As test_engines.run_spark_stream (a clock line at now), the job on the cluster."""
    assert isinstance(space, ClusterSpace)
    project = space.project(settings, sessions=True)
    now = time.time_ns() // 1_000_000
    landing, out, ck = project.path("landing"), project.path("stream"), project.path("ck")
    land(landing, [{"received_at": now} | r for r in records], parts=2)
    (landing / "9999.clock").write_text(json.dumps({"clock": now}) + "\n")
    space.submit(
        *("spark", "stream", "--landing", landing.name, "--out", out.name),
        *("--checkpoint", ck.name, "--until-idle", "--excluded", ",".join(settings.excluded)),
        *("--timeout", format_duration(settings.timeout_ms)),
        name="stream",
    )
    return outcome(sessions_of(out), read(out, "events"))


def running_batch(ck: Path) -> int | None:
    """The micro-batch the stream is running: planned in offsets/, not yet committed."""
    planned = [int(p.stem) for p in ck.glob("offsets/*.json")]
    n = max(planned, default=None)
    return n if n is not None and not (ck / f"commits/{n}.json").exists() else None


def test_two_one_core_workers(cluster: SparkCluster) -> None:
    state = cluster.state()
    assert state["status"] == "ALIVE"
    assert [(w["state"], w["cores"], w["host"]) for w in state["workers"]] == [
        ("ALIVE", 1, "127.0.0.1")
    ] * 2


def test_cross_engine_fixtures_on_the_cluster(space: ClusterSpace) -> None:
    """test_engines.CASES (each case's ids under its name) and the NASA day, in one input,
    through the batch job and the stream on the cluster (one spark-submit each): the
    embedded engine's sessions and ids, and those of R2 as each case states them."""
    ndjson = space.tmp / "nasa.ndjson"
    assert lull(space.db, "convert-nasa", str(NASA), "-o", str(ndjson)).code == 0
    nasa = [json.loads(line) for line in ndjson.read_text().splitlines()]
    records: list[Record] = []
    want_ids: dict[str, str | None] = {}
    for case, (events, groups) in sorted(CASES.items()):
        named = [r | {"message_id": f"{case}.{r['message_id']}",
                      "profile_id": f"{case}.{r['profile_id']}"} for r in events]  # fmt: skip
        records += named
        profile = {r["message_id"]: r["profile_id"] for r in named}
        want_ids |= {r["message_id"]: None for r in named}
        for g in groups:
            first = f"{case}.{g[0]}"
            want_ids |= {f"{case}.{m}": session_id_for(profile[first], first) for m in g}
    engines: list[Runner] = [run_import, run_cluster_batch, run_cluster_stream]
    got = through_every_engine(records + nasa, ON, space, engines)["run_import"]
    assert {m: got.event_sessions[m] for m in want_ids} == want_ids
    cases = [s for s in got.sessions if s["profile_id"] in {r["profile_id"] for r in records}]
    assert len(cases) == sum(len(g) for _, g in CASES.values())
    assert sum(s["events"] for s in got.sessions) - sum(s["events"] for s in cases) == len(nasa)
    assert len(nasa) == 30969


def test_a_worker_killed_mid_stream_changes_nothing(
    cluster: SparkCluster, space: ClusterSpace, fixture_history: list[Record], want: dict[str, Any]
) -> None:
    """A micro-batch a file; while batch 2 runs, one worker's JVM is killed (SIGKILL). The
    master finds it dead; Spark runs its lost tasks again on the other executor, and each
    task's output is a whole file named after its batch and part in the checkpoint or
    --out, so a task run twice writes the same file: the stream goes on and ends with
    the answer of a stream that lost nothing. (Runs last: the cluster has one worker
    after it.)"""
    tmp = space.tmp / "killed"
    land(tmp / "landing", fixture_history, parts=8)
    ck = tmp / "ck"
    proc = cluster.start_submit(
        *("spark", "stream", "--landing", "landing", "--out", "out", "--checkpoint", "ck"),
        *("--timeout", "10m", "--until-idle", "--max-files", "1"),
        db=space.db, cwd=tmp, log="killed-stream.log", conf=STREAM_DAEMON,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while (running_batch(ck) or 0) < 2:  # the kill comes in batch 2 (or a later one)
        assert proc.poll() is None and time.monotonic() < deadline, cluster.log_tail()
        time.sleep(0.005)
    cluster.kill_worker(0)
    state = cluster.wait_for(lambda s: cluster.alive_workers(s) == 1, "the worker's loss", 60)
    assert len(state["workers"]) == 2
    assert proc.wait(timeout=180) == 0, cluster.log_tail()
    log = (cluster.logs / "killed-stream.log").read_text()
    assert "Lost executor" in log or "ExecutorLostFailure" in log, log[-3000:]
    assert stream_outcome(tmp / "out") | {"db": want["db"]} == want
    ids = [s["session_id"] for s in read(tmp / "out", "sessions")]
    assert len(ids) == len(set(ids)) == len(want["concluded"])
    ran = {int(n) for n in re.findall(r"^lull: batch (\d+):", log, re.MULTILINE)}
    assert ran == set(range(len(ran))) and len(ran) >= 8  # a batch a file, none lost
