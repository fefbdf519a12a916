"""`lull spark stream`: the same sessions as the embedded engine, across restarts.

The embedded engine here is `lull import --keep-open` of the same lines (the live replay
on received_at, with the clock left at the last arrival, as the stream's is)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pytest

from lull.model import DEFAULT_EXCLUDED
from lullrun import LULL, lull, write_events

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

MIN = 60_000
BASE = 1_700_000_000_000
Record = dict[str, Any]


def history(seed: int, n: int = 160) -> list[Record]:
    """Events in arrival order: received_at never goes back, several share an instant;
    some come long after their time (out of order, late), some are not eligible."""
    rng = random.Random(seed)
    r, out = BASE, []
    for i in range(n):
        r += rng.choice([0, 0, 1000, 30_000, 2 * MIN, 7 * MIN, 11 * MIN, 25 * MIN])
        delay = rng.choice([0, 0, 0, 5000, 3 * MIN, 10 * MIN, 40 * MIN, 90 * MIN])
        name = rng.choice(["Play", "Play", "Pause", DEFAULT_EXCLUDED[0]])
        source = rng.choice(["ios", "web", "android", "api"])
        out.append(
            {
                "message_id": f"m{seed}-{i}",
                "profile_id": f"u{rng.randrange(5)}",
                "name": name,
                "ts": r - delay,
                "source": source,
                "received_at": r,
                "properties": {"i": i},
            }
        )
    return out


def land(folder: Path, records: list[Record], parts: int, start: int = 0) -> None:
    """Write the records as `parts` files whose name order is their arrival order."""
    folder.mkdir(parents=True, exist_ok=True)
    size = -(-len(records) // parts)
    for k in range(parts):
        chunk = records[k * size : (k + 1) * size]
        tmp = folder / f".{start + k:04d}.tmp"
        write_events(tmp, chunk)
        tmp.rename(folder / f"{start + k:04d}.ndjson")


def stream(
    db: Path, landing: Path, out: Path, checkpoint: Path, *extra: str, timeout: str = "10m"
) -> None:
    """`lull spark stream ... --until-idle` in this process (on the tests' Spark)."""
    done = lull(
        db,
        *("spark", "stream", "--landing", str(landing), "--out", str(out)),
        *("--checkpoint", str(checkpoint), "--timeout", timeout, "--until-idle"),
        *("--partitions", "2", *extra),
    )
    assert done.code == 0, done.err


def read(out: Path, what: str) -> list[Record]:
    files = list((out / what).glob("batch=*/*.parquet"))
    if not files:
        return []
    con = duckdb.connect()
    try:
        rows: list[Record] = (
            con.sql(f"SELECT * FROM read_parquet('{out / what}/batch=*/*.parquet')")
            .to_arrow_table()
            .to_pylist()
        )
    finally:
        con.close()
    return rows


def sessions_of(out: Path) -> list[Record]:
    """The stream's sessions as `lull export sessions` has them: the concluded ones, and
    the latest snapshot of each one still open."""
    concluded = read(out, "sessions")
    done = {s["session_id"] for s in concluded}
    latest: dict[str, Record] = {}
    for s in sorted(read(out, "open"), key=lambda s: (s["as_of"], s["batch"], s["events"])):
        if s["session_id"] not in done:
            latest[s["session_id"]] = s
    keep = ("session_id", "profile_id", "first_ts", "last_ts", "length_s", "events", "source",
            "concluded")  # fmt: skip
    return [{k: s[k] for k in keep} for s in [*concluded, *latest.values()]]


def outcome(out: Path) -> dict[str, Any]:
    """What the stream made, in the shape of `lull export`: events, sessions and Session
    Concluded events."""
    return {
        "events": _events(read(out, "events")),
        "sessions": sorted(sessions_of(out), key=lambda s: s["session_id"]),
        "concluded": _events(read(out, "concluded")),
    }


def _events(rows: list[Record]) -> list[Record]:
    keep = ("message_id", "profile_id", "name", "ts", "source", "received_at", "session_id",
            "late")  # fmt: skip
    out = [{k: e[k] for k in keep} | {"properties": json.loads(e["properties"])} for e in rows]
    return sorted(out, key=lambda e: e["message_id"])


def embedded(db: Path, tmp: Path, records: list[Record]) -> dict[str, Any]:
    for args in (("project", "create", "p"), ("settings", "--project", "p", "--sessions", "on",
                 "--timeout", "10m")):  # fmt: skip
        assert lull(db, *args).code == 0
    done = lull(db, "import", str(write_events(tmp / "all.ndjson", records)), "--project", "p",
                "--keep-open")  # fmt: skip
    assert done.code == 0, done.err
    events = [e for e in export_p(db, "events", tmp)]
    return {
        "db": db,
        "events": _events([e for e in events if e["name"] != "Session Concluded"]),
        "sessions": sorted(export_p(db, "sessions", tmp), key=lambda s: s["session_id"]),
        "concluded": _events([e for e in events if e["name"] == "Session Concluded"]),
    }


def export_p(db: Path, what: str, tmp: Path) -> list[Record]:
    target = tmp / f"{what}.ndjson"
    assert lull(db, "export", what, "--project", "p", "-o", str(target)).code == 0
    return [
        {**r, "properties": json.dumps(r["properties"])} if "properties" in r else r
        for r in map(json.loads, target.read_text().splitlines())
    ]


@pytest.fixture(scope="module")
def fixture_history() -> list[Record]:
    records = history(7)
    records.insert(40, dict(records[39]))  # a producer's retry: the same line again (R6)
    # the same message id again under another profile, later (R6: still a repeat)
    records.insert(
        120, records[20] | {"profile_id": "u9", "received_at": records[119]["received_at"]}
    )
    return records


@pytest.fixture(scope="module")
def want(tmp_path_factory: pytest.TempPathFactory, fixture_history: list[Record]) -> Any:
    tmp = tmp_path_factory.mktemp("embedded")
    return embedded(tmp / "lull.duckdb", tmp, fixture_history)


BOARD = ("board", "--days", "30", "--until", "2023-11-20")


@pytest.fixture(scope="module")
def want_board(want: dict[str, Any]) -> Any:
    """The embedded store's session board (R7), as `lull board` prints it."""
    done = lull(want["db"], *BOARD, "--project", "p")
    assert done.code == 0, done.err
    return done.json()


def test_the_history_exercises_every_rule(want: dict[str, Any]) -> None:
    events = want["events"]
    assert sum(e["late"] for e in events) >= 3
    assert sum(e["session_id"] is None and not e["late"] for e in events) >= 10
    assert len(want["concluded"]) >= 10
    assert any(not s["concluded"] for s in want["sessions"])


def test_stream_gives_the_embedded_engines_sessions(
    spark: SparkSession,
    tmp_path: Path,
    fixture_history: list[Record],
    want: dict[str, Any],
    want_board: Any,
) -> None:
    land(tmp_path / "landing", fixture_history, parts=3)
    stream(tmp_path / "x.duckdb", tmp_path / "landing", tmp_path / "out", tmp_path / "ck")
    assert outcome(tmp_path / "out") | {"db": want["db"]} == want
    by_seq = sorted(read(tmp_path / "out", "events"), key=lambda e: e["seq"])
    arrival = list(dict.fromkeys(r["message_id"] for r in fixture_history))
    assert [e["message_id"] for e in by_seq] == arrival  # seq: the arrival order
    board = lull(tmp_path / "x.duckdb", *BOARD, "--from-parquet", str(tmp_path / "out"))
    assert board.code == 0, board.err
    assert board.json() == want_board
    assert sum(d["sessions"] for d in want_board["per_day"]) == len(want["concluded"])


def test_restart_from_the_checkpoint_concludes_nothing_twice(
    spark: SparkSession, tmp_path: Path, fixture_history: list[Record], want: dict[str, Any]
) -> None:
    landing, out, ck, db = tmp_path / "landing", tmp_path / "out", tmp_path / "ck", tmp_path / "d"
    half = len(fixture_history) // 2
    land(landing, fixture_history[:half], parts=2)
    stream(db, landing, out, ck)
    land(landing, fixture_history[half:], parts=2, start=2)
    stream(db, landing, out, ck)
    # A crash after the outputs of the last batches were written but before they were
    # noted as done: the stream runs those batches again from the checkpoint.
    commits = sorted((ck / "commits").glob("*.json"), key=lambda p: int(p.stem))
    assert len(commits) >= 3
    for done in commits[-2:]:
        done.unlink()
    stream(db, landing, out, ck)
    assert outcome(out) | {"db": want["db"]} == want
    ids = [s["session_id"] for s in read(out, "sessions")]
    assert len(ids) == len(set(ids)) == len(want["concluded"])
    # A file from a server whose clock is behind: its events are not dropped by Spark's
    # watermark (R5 alone decides what is late); a new profile's event gets a session.
    first = fixture_history[0]
    behind = [
        first | {"message_id": "behind", "profile_id": "new", "name": "Play", "source": "web"}
    ]
    land(landing, behind, parts=1, start=9)
    stream(db, landing, out, ck)
    events = {e["message_id"]: e for e in read(out, "events")}
    assert events["behind"]["session_id"] is not None and not events["behind"]["late"]


def test_rejected_lines_are_kept_with_their_reason(spark: SparkSession, tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    good = history(3, n=4)
    lines = [
        json.dumps(good[0]),
        "{not json",
        json.dumps({k: v for k, v in good[1].items() if k != "received_at"}),
        json.dumps(good[2] | {"name": "Session Concluded"}),
        json.dumps(good[3]),
        json.dumps({"clock": "yesterday"}),
    ]
    (landing / "0001.ndjson").write_text("\n".join(lines) + "\n")
    write_events(landing / ".0002.tmp", history(6, n=3))  # being written: not read yet
    stream(tmp_path / "d", landing, tmp_path / "out", tmp_path / "ck")
    rejected = sorted(read(tmp_path / "out", "rejected"), key=lambda r: r["line"])
    assert [r["line"] for r in rejected] == [2, 3, 4, 6]
    assert rejected[0]["reason"].startswith("malformed JSON")
    assert "received_at" in rejected[1]["reason"]
    assert "system event" in rejected[2]["reason"]
    assert "'clock'" in rejected[3]["reason"] and rejected[3]["raw"] == lines[5]
    assert all(r["file"].endswith("0001.ndjson") for r in rejected)
    got = {e["message_id"] for e in read(tmp_path / "out", "events")}
    assert got == {good[0]["message_id"], good[3]["message_id"]}


def test_kill_9_mid_stream_then_restart_gives_each_event_and_session_once(
    spark: SparkSession, tmp_path: Path, fixture_history: list[Record], want: dict[str, Any]
) -> None:
    """`lull spark stream` in a process of its own (its JVM and Python workers with it),
    a micro-batch a file, killed with SIGKILL at some moment after its second batch; the
    stream started again on the same checkpoint ends with what a stream that never
    stopped gives."""
    landing, out, ck, db = tmp_path / "landing", tmp_path / "out", tmp_path / "ck", tmp_path / "d"
    land(landing, fixture_history, parts=8)
    args = [LULL, "--db", str(db), "spark", "stream", "--landing", str(landing), "--out",
            str(out), "--checkpoint", str(ck), "--timeout", "10m", "--until-idle",
            "--max-files", "1", "--master", "local[2]"]  # fmt: skip
    proc = subprocess.Popen(args, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while len(list((ck / "commits").glob("*.json"))) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, "no second batch"
            time.sleep(0.02)
        time.sleep(random.Random(1).uniform(0, 0.8))  # somewhere in a later batch
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done = len(list((ck / "commits").glob("*.json")))
    assert done < 9, "the stream had finished before it was killed"
    stream(db, landing, out, ck)
    assert outcome(out) | {"db": want["db"]} == want
    ids = [s["session_id"] for s in read(out, "sessions")]
    assert len(ids) == len(set(ids)) == len(want["concluded"])


HOUR, DAY = 60 * MIN, 24 * 60 * MIN


def five_weeks(days: int = 35) -> list[Record]:
    """A small app over five weeks, in arrival order: six listeners who come back twice a
    day, and three who come for one week only; events sent up to three hours late (some
    late by R5, some out of order), and each day a producer's retry of a line of the day
    before (R6, within the window)."""
    rng = random.Random(15)
    out: list[Record] = []
    for d in range(days):
        for user in [f"u{k}" for k in range(6)] + [f"w{d // 7}-{k}" for k in range(3)]:
            for half in range(2):
                ts = BASE + d * DAY + half * 12 * HOUR + rng.randrange(10) * HOUR
                for _ in range(rng.randint(1, 4)):
                    ts += rng.choice([MIN, 3 * MIN, 8 * MIN, 12 * MIN])
                    r = ts + rng.choice([0, 0, 1000, 5 * MIN, 30 * MIN, 3 * HOUR])
                    out.append({"message_id": f"m{len(out)}", "profile_id": user,
                                "name": rng.choice(["Play", "Play", DEFAULT_EXCLUDED[0]]),
                                "ts": ts, "source": rng.choice(["ios", "web"]),
                                "received_at": r, "properties": {"d": d}})  # fmt: skip
        if d:
            retry = rng.choice([e for e in out if (d - 1) * DAY <= e["ts"] - BASE < d * DAY])
            out.append(retry | {"received_at": BASE + d * DAY + 23 * HOUR})
    return sorted(out, key=lambda e: e["received_at"])


def test_the_state_stays_bounded_over_five_weeks(spark: SparkSession, tmp_path: Path) -> None:
    """35 days, a micro-batch a day, a late horizon of one day and R6's window of 7: the
    state each batch reports stays within what the horizon and the window must hold
    (every figure checked against the events), week after week; what the clock has
    passed is gone from the checkpoint; the answers are the embedded engine's; a restart
    halfway reads the folded offsets."""
    from lull.spark import state_codec

    records, days, late = five_weeks(), 35, DAY
    files = [[e for e in records if d * DAY <= e["received_at"] - BASE < (d + 1) * DAY]
             for d in range(days)]  # fmt: skip
    landing, out, ck, db = tmp_path / "landing", tmp_path / "out", tmp_path / "ck", tmp_path / "d"
    reports: list[dict[str, int]] = []
    for first, last in ((0, 20), (20, days)):  # a restart after 20 days
        for d in range(first, last):
            land(landing, files[d], parts=1, start=d)
        done = lull(
            db, "spark", "stream", "--landing", str(landing), "--out", str(out),
            "--checkpoint", str(ck), "--timeout", "10m", "--until-idle", "--max-files", "1",
            "--buckets", "4", "--late-horizon", "1d",
        )  # fmt: skip
        assert done.code == 0, done.err
        reports += [json.loads(line.split(" state: ", 1)[1]) for line in done.err.splitlines()
                    if line.startswith("lull: batch ") and " state: " in line]  # fmt: skip
    assert len(reports) >= days
    want = embedded(tmp_path / "e.duckdb", tmp_path, records)
    assert outcome(out) | {"db": want["db"]} == want  # the same answers, every one

    ended = [s for s in want["sessions"] if s["concluded"]]
    due = [_ms(s["last_ts"]) + 10 * MIN for s in ended]
    for state in reports[1:]:  # (the clock before the batch: what it forgets by)
        clock = state["clock_before"]
        assert state["concluded_sessions"] <= sum(t > clock - 2 * late - 10 * MIN for t in due)
        recent = {e["profile_id"] for e in records if e["received_at"] > clock - late - 10 * MIN}
        assert state["profiles"] <= len(recent)
        so_far = [e for e in records if e["received_at"] <= state["clock"]]
        window = list({e["message_id"]: e["received_at"] for e in reversed(so_far)}.values())
        assert sum(r >= clock - 7 * DAY for r in window) <= state["ids"]  # R6's window held
        assert state["ids"] <= sum(r >= clock - 9 * DAY for r in window)
        assert state["log_files"] <= 40  # offsets/ and commits/ folded every 10 batches
    weekly = [max(s["state_bytes"] + s["ids_bytes"] for s in reports[w * 7 : w * 7 + 7])
              for w in range(1, 5)]  # fmt: skip
    assert max(weekly[1:]) <= 1.5 * weekly[0]  # flat after the first window, not growing

    kept = [state_codec.decode(p.read_bytes(), 4) for p in (ck / "state").glob("*/*.state")]
    held = {str(p) for b in kept for p in b.table.profile_id}
    assert not any(p.startswith(("w0-", "w1-", "w2-", "w3-")) for p in held)  # gone
    assert sum(b.history.shape[1] for b in kept) < len(ended) / 10
    clock = max(e["received_at"] for e in records)
    ids = pa_ids(ck)
    assert min(ids.values()) >= clock - 9 * DAY and "m0" not in ids
    assert len(list((ck / "offsets").glob("*.json"))) < 20 and (ck / "taken.json").exists()


def pa_ids(ck: Path) -> dict[str, int]:
    """The message ids the checkpoint keeps (R6), with their received_at."""
    import pyarrow.ipc as ipc

    kept: dict[str, int] = {}
    for path in (ck / "ids").glob("*/*.arrow"):
        table = ipc.open_file(path.read_bytes()).read_all()
        kept |= dict(zip(table["message_id"].to_pylist(), table["r"].to_pylist(), strict=True))
    return kept


def _ms(iso: str) -> int:
    from lull.model import parse_time

    return parse_time(iso, "time")
