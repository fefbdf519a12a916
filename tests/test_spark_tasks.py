"""The stream's Python tasks (`spark/tasks.py`) without Spark: the arrival numbering
without a global sort, the bucket hash, and R6's ids across micro-batches with a window."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lull.spark import tasks
from lullrun import lull

DAY = 86_400_000


def test_fnv1a_is_the_published_function() -> None:
    got = tasks.fnv1a(pa.array(["", "a", "foobar", "é"]))
    assert [hex(int(h)) for h in got[:3]] == [
        "0xcbf29ce484222325", "0xaf63dc4c8601ec8c", "0x85944171f73967e8",
    ]  # fmt: skip
    assert got[3] == tasks.fnv1a(pa.array(["x", "é"]))[1]  # by bytes, whatever the neighbours


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5)), min_size=1, max_size=40))
def test_ranks_number_rows_in_arrival_order(rows: list[tuple[int, int]]) -> None:
    """A row's rank from each file's sorted times equals its place in (r, file, line)."""
    f = np.array([x[0] for x in rows], dtype=np.int32)
    r = np.array([x[1] for x in rows], dtype=np.int64)
    pos = np.arange(len(rows), dtype=np.int64)  # lines numbered through all files
    frank = np.empty(len(rows), dtype=np.int64)
    orders = []
    for g in sorted(set(f.tolist())):
        mine = np.flatnonzero(f == g)
        order = mine[np.lexsort((pos[mine], r[mine]))]
        frank[order] = np.arange(len(order))
        orders.append((g, r[order]))
    table = pa.table({"r": r, "f": f, "pos": pos, "frank": frank})
    want = np.empty(len(rows), dtype=np.int64)
    want[np.lexsort((pos, f, r))] = np.arange(len(rows))
    assert tasks.ranks(table, orders).tolist() == want.tolist()


def _plan(ck: Path, batch: int, watermark: int, committed: int) -> tasks.Plan:
    return tasks.Plan(batch, str(ck / "out"), str(ck), str(ck), (), "p", 2, 60_000, (),
                      watermark, committed, 7 * DAY)  # fmt: skip


def _ids(ck: Path, plan: tasks.Plan, ids: list[str], r: int) -> None:
    """Batch `plan.batch`'s ids as the parse tasks leave them, all in partition 0."""
    n = len(ids)
    one = pa.array([0] * n, pa.int32())
    table = pa.table({"message_id": ids, "r": [r] * n, "f": one, "pos": list(range(1, n + 1)),
                      "bucket": pa.array([1] * n, pa.int32())})  # fmt: skip
    fs, work = tasks.fs_path(plan.work)
    tasks.cut(fs, f"{work}/ids/g-00000.arrow", table, np.zeros(n, dtype=np.int64), 2)


def test_ids_are_kept_a_window_past_the_clock_then_merged_away(tmp_path: Path) -> None:
    """A batch every 8 hours for 20 days (three windows of 7 days): every id within the
    window of the clock is held (repeats of it dropped), and at most the ids of the
    `_MERGE_AFTER` + 1 batches before the window besides (whole files past the window
    go, and many files are merged, less the ids past it)."""
    ck, hours = tmp_path / "ck", DAY // 3
    plan = _plan(ck, 0, 0, -1)
    _ids(ck, plan, ["old", "old", "a"], r=0)
    assert tasks.dedupe(plan, [0])[0] == 1  # the second copy in the batch
    accepted = {"old": 0, "a": 0}
    merged = False
    for n in range(1, 61):
        plan = _plan(ck, n, n * hours, n - 1)
        repeat = "a" if n == 3 else f"m{n - 5}" if n > 40 else f"k{n}"
        _ids(ck, plan, [f"m{n}", repeat], r=n * hours)
        dropped, held = tasks.dedupe(plan, [0])
        assert dropped == (1 if repeat in accepted else 0)
        accepted |= {i: n * hours for i in (f"m{n}", repeat) if i not in accepted}
        within = sum(r >= n * hours - 7 * DAY for r in accepted.values())
        assert within <= held[0][0] <= within + 2 * (tasks._MERGE_AFTER + 1)
        folder = ck / "ids" / "p=00000"
        assert held[0][1] == sum(p.stat().st_size for p in folder.iterdir())
        merged = merged or any(p.name.endswith(".m.arrow") for p in folder.iterdir())
        assert len(list(folder.iterdir())) <= tasks._MERGE_AFTER + 2
    assert merged
    plan = _plan(ck, 61, 61 * hours, 60)
    _ids(ck, plan, ["old", "m55"], r=61 * hours)
    # "old" came 20 days ago, past the window: forgotten; "m55" within it: a repeat
    assert tasks.dedupe(plan, [0])[0] == 1


def test_a_window_below_r6s_seven_days_is_refused(tmp_path: Path) -> None:
    done = lull(
        tmp_path / "d", "spark", "stream", "--landing", str(tmp_path), "--out",
        str(tmp_path / "o"), "--checkpoint", str(tmp_path / "c"), "--duplicates-window", "1d",
    )  # fmt: skip
    assert done.code != 0 and "7 days" in done.err
    assert not (tmp_path / "c").exists()


def test_a_checkpoint_of_another_bucket_count_is_refused(tmp_path: Path) -> None:
    from lull.errors import BadInput
    from lull.spark.driver import Checkpoint

    Checkpoint(str(tmp_path)).check(32)
    Checkpoint(str(tmp_path)).check(32)  # the same count goes on
    with pytest.raises(BadInput, match="--buckets 32"):
        Checkpoint(str(tmp_path)).check(16)


def test_a_segment_read_column_wise(tmp_path: Path) -> None:
    """`landing.segment_rows`: the project's events with R5's clock fix, clock rows, other
    projects' rows left out, and a damaged frame said in a rejected row."""
    from lull.ingest.records import Event, corrected_time
    from lull.server.door import Batch, to_arrow
    from lull.server.ingest_only import clock_row
    from lull.spark.landing import CLOCK, segment_rows
    from lull.store.log import IngestLog, segments

    now = 1_800_000_000_000
    first = [Event("a", "u", "Play", now - 5000, "web", now - 1000, {"k": 1}),
             Event("b", "v", "Play", now - 9000, "ios", None, {}),
             # a fast client clock: corrected past its arrival, so taken as its arrival
             Event("e", "v", "Play", now, "ios", now - 1000, {})]  # fmt: skip
    with IngestLog(tmp_path, writer="w") as w:
        w.append(to_arrow("shop", Batch(1, now, first)))
        w.append(to_arrow("other", Batch(2, now, [Event("c", "u", "P", now, "web", None, {})])))
        w.append(clock_row(now + 10))
        w.append(to_arrow("shop", Batch(1, now + 20, [Event("d", "u", "P", now, "web", None, {})])))
    (seg,) = segments(tmp_path)
    data = seg.path.read_bytes()
    rows = segment_rows("shop", str(seg.path), pa.py_buffer(data)).to_pylist()
    got = [(x["message_id"], x["ts"], x["r"], x["pos"], x["dedupe"]) for x in rows]
    assert got == [
        ("a", corrected_time(now - 5000, now - 1000, now), now, 1, "a"),
        ("b", now - 9000, now, 2, "b"),
        ("e", now, now, 3, "e"),
        (None, None, now + 10, 5, CLOCK),
        ("d", now, now + 20, 6, "d"),
    ]
    assert rows[0]["properties"] == '{"k":1}' and rows[0]["origin"] == str(seg.path)
    damaged = bytearray(data)
    damaged[len(data) // 2] ^= 0xFF  # a byte inside a frame in the middle
    rows = segment_rows("shop", str(seg.path), pa.py_buffer(bytes(damaged))).to_pylist()
    lost = [x for x in rows if x["error"] is not None]
    assert len(lost) == 1 and "lost" in lost[0]["error"]
    assert 0 < lost[0]["pos"] <= len(data) // 2  # the damaged frame's byte offset
    kept = [(x["message_id"], x["ts"], x["r"], x["dedupe"]) for x in rows if x not in lost]
    assert set(kept) <= {(m, t, r, d) for m, t, r, _, d in got}
