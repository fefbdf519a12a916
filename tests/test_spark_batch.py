"""`lull spark resessionize` (src/lull/spark/batch.py) and reading its output back
(src/lull/spark/output.py, `lull board --from-parquet`). That it gives every engine's
sessions is tests/test_engines.py's job; here: moving a whole store up to it, its
outputs' shapes, raw Parquet input, and its errors."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lull.model import DEFAULT_EXCLUDED, format_time, session_id_for
from lullrun import lull, write_events

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

T = 60_000
BASE = 1_700_000_000_000  # 2023-11-14 22:13:20 UTC


def rows(query: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect()
    try:
        return sorted(con.sql(query).fetchall(), key=repr)
    finally:
        con.close()


def ev(mid: str, profile: str, ts: int, received: int, **more: str) -> dict[str, Any]:
    record = {"message_id": mid, "profile_id": profile, "name": "Song Played", "ts": ts}
    return record | {"source": "android", "received_at": received, "properties": {"n": 1}} | more


# Arrival order = file order. `late` comes after u's first session was concluded and
# before its horizon; `x` (excluded) and `y` (api) never get a session.
HISTORY = [
    ev("a", "u", BASE, BASE + 1),
    ev("b", "u", BASE + 10_000, BASE + 10_001, source="ios"),
    ev("x", "u", BASE + 20_000, BASE + 20_001, name=DEFAULT_EXCLUDED[2]),
    ev("c", "v", BASE + 5 * 3_600_000, BASE + 5 * 3_600_000 + 5, source="ios"),
    ev("late", "u", BASE + 30_000, BASE + 2 * 3_600_000),
    ev("y", "v", BASE + 5 * 3_600_000, BASE + 5 * 3_600_000 + 9, source="api"),
    ev("d", "v", BASE + 5 * 3_600_000 + 50_000, BASE + 5 * 3_600_000 + 50_005),
]


@pytest.fixture(scope="module")
def moved(tmp_path_factory: pytest.TempPathFactory, spark: SparkSession) -> tuple[Path, Path]:
    """A store with live sessions (one event late), its whole Parquet export run through
    the Spark job, then the store re-sessionized: (store, job output)."""
    tmp = tmp_path_factory.mktemp("moved")
    db, out = tmp / "s.duckdb", tmp / "out"
    zone = "America/New_York"
    assert lull(db, "settings", "--sessions", "on", "--timeout", "1m", "--timezone", zone).code == 0
    imported = lull(db, "import", str(write_events(tmp / "h.ndjson", HISTORY))).json()
    assert imported["late"] == 1
    events = exported(db, "events", "before")
    args = ("--events", str(events), "--out", str(out), "--timeout", "1m", "--timezone", zone)
    done = lull(db, "spark", "resessionize", *args)
    assert done.code == 0, done.err
    assert json.loads(done.out)["out"] == str(out)
    assert "writing sessions/" in done.err  # progress, on stderr
    assert lull(db, "resessionize").code == 0
    return db, out


def exported(db: Path, what: str, tag: str = "now") -> Path:
    """`lull export WHAT --format parquet` of the store, to a file named by `tag`."""
    target = db.with_name(f"{what}-{tag}.parquet")
    assert lull(db, "export", what, "--format", "parquet", "-o", str(target)).code == 0
    return target


def test_a_whole_store_moves_up(moved: tuple[Path, Path]) -> None:
    db, out = moved
    after = exported(db, "events")
    spark_events = f"read_parquet(['{out}/events/*.parquet', '{out}/concluded/*.parquet'])"
    assert rows(f"SELECT * FROM {spark_events}") == rows(f"SELECT * FROM '{after}'")
    # the late event is taken in (R5), the ineligible ones stay without a session
    got = dict(rows(f"SELECT message_id, session_id FROM {spark_events}"))
    assert got["late"] == got["a"] == session_id_for("u", "a")
    assert got["x"] is None and got["y"] is None
    assert got["d"] == got["c"] == session_id_for("v", "c")


def test_sessions_are_shaped_as_the_export(moved: tuple[Path, Path]) -> None:
    db, out = moved
    store = exported(db, "sessions")
    spark_sessions = f"'{out}/sessions/*.parquet'"
    assert rows(f"DESCRIBE SELECT * FROM {spark_sessions}") == rows(f"DESCRIBE '{store}'")
    assert rows(f"SELECT * FROM {spark_sessions}") == rows(f"SELECT * FROM '{store}'")
    assert rows(f"SELECT events, length_s, source FROM {spark_sessions}") == [
        (2, 50, "ios"),
        (3, 30, "android"),
    ]


@pytest.mark.parametrize("source", [None, "ios", "android"])
def test_board_from_parquet_equals_the_store_s(
    moved: tuple[Path, Path], source: str | None
) -> None:
    db, out = moved
    args = ["--until", "2023-11-15", "--days", "3", *(["--source", source] if source else [])]
    from_store = lull(db, "board", *args)
    from_parquet = lull(db, "board", "--from-parquet", str(out), *args)
    assert from_parquet.code == 0, from_parquet.err
    assert from_parquet.json() == from_store.json()
    assert from_store.json()["timezone"] == "America/New_York"
    assert from_store.json()["sessions"] == (1 if source else 2)


def test_raw_parquet_without_seq(tmp_path: Path, spark: SparkSession) -> None:
    now = time.time_ns() // 1_000_000
    table = pa.table(
        {
            "message_id": ["b", "a", "c", "d"],
            "profile_id": ["u", "u", "u", "w"],
            "name": ["Song Played"] * 4,
            # epoch ms; `c` claims a time after it was received: R5 takes received_at
            "ts": pa.array([BASE, BASE, BASE + 10 * T, now - 1_000], pa.int64()),
            "source": ["web", "ios", "web", "web"],
            "received_at": pa.array([BASE, BASE, BASE + 30_000, now], pa.int64()),
        }
    )
    pq.write_table(table, tmp_path / "raw.parquet")
    out = tmp_path / "out"
    args = ("--events", str(tmp_path / "raw.parquet"), "--out", str(out), "--timeout", "1m")
    done = lull(tmp_path / "unused.duckdb", "spark", "resessionize", *args)
    assert done.code == 0, done.err
    columns = "session_id, first_ts, last_ts, events, source, concluded"
    sessions = set(rows(f"SELECT {columns} FROM '{out}/sessions/*.parquet'"))
    # ties: the row order decides that `b` is first; the last session of `w` is still open
    first, last, recent = (
        "2023-11-14T22:13:20.000Z",
        "2023-11-14T22:13:50.000Z",
        format_time(now - 1_000),
    )
    assert sessions == {
        (session_id_for("u", "b"), first, last, 3, "web", True),
        (session_id_for("w", "d"), recent, recent, 1, "web", False),
    }
    assert rows(f"SELECT message_id, ts FROM '{out}/concluded/*.parquet'") == [
        ("sc-" + session_id_for("u", "b"), "2023-11-14T22:13:50.000Z")
    ]
    assert rows(f"SELECT ts FROM '{out}/events/*.parquet' WHERE message_id = 'c'") == [
        ("2023-11-14T22:13:50.000Z",)
    ]


def test_bad_inputs_are_named(tmp_path: Path, spark: SparkSession) -> None:
    db = tmp_path / "unused.duckdb"
    no_ts = tmp_path / "no_ts.parquet"
    pq.write_table(pa.table({"message_id": ["m"], "profile_id": ["u"], "name": ["n"]}), no_ts)
    bad_ts = tmp_path / "bad_ts.parquet"
    pq.write_table(pa.table({k: ["x"] for k in ("message_id", "profile_id", "name", "source")})
                   .append_column("ts", pa.array([1.5])), bad_ts)  # fmt: skip
    not_a_time = tmp_path / "not_a_time.parquet"
    pq.write_table(pa.table({k: ["x"] for k in ("message_id", "profile_id", "name", "source")})
                   .append_column("ts", pa.array(["yesterday"])), not_a_time)  # fmt: skip
    not_parquet = tmp_path / "events.ndjson"
    not_parquet.write_text('{"message_id": "m"}\n')
    full = tmp_path / "full"
    (full / "events").mkdir(parents=True)
    cases = {
        no_ts: "missing column(s) ts, source",
        bad_ts: "column ts is double, expected ISO-8601 text",
        not_parquet: "not readable as Parquet",
        not_a_time: "the job failed: column ts: 'yesterday' is not an ISO-8601 time",
        tmp_path / "nowhere": "no such file or directory",
    }
    for events, message in cases.items():
        done = lull(
            db, "spark", "resessionize", "--events", str(events), "--out", str(tmp_path / "o")
        )
        assert done.code == 1 and message in done.err, done.err
        said = [line for line in done.err.splitlines() if not line.startswith("[")]
        assert len(said) == 1, done.err  # one line, no stack trace (beside the progress)
    done = lull(db, "spark", "resessionize", "--events", str(no_ts), "--out", str(full))
    assert done.code == 1 and "not empty" in done.err
    done = lull(
        db, "spark", "resessionize", "--events", str(no_ts), "--out", "o", "--timeout", "0m"
    )
    assert done.code == 1 and "out of range" in done.err
    done = lull(db, "board", "--from-parquet", str(tmp_path))
    assert done.code == 1 and "no settings.json" in done.err
