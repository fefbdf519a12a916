"""The durable ingest log (lull.store.log), on real files: round trips, rotation, torn and
corrupted tails, concurrent appenders, a full disk, and any truncation of a segment."""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lull.store.log import (
    EVENT_SCHEMA,
    HEADER_SIZE,
    START,
    CorruptLogError,
    IngestLog,
    LogError,
    LogWriteError,
    OnCorrupt,
    Position,
    Tail,
    read_log,
    read_segment,
    segments,
)


def events(n: int, tag: str = "a", pad: int = 0) -> pa.RecordBatch:
    return pa.record_batch(
        {
            "project": ["music"] * n,
            "message_id": [f"{tag}-{i}" for i in range(n)],
            "profile_id": [f"u-{i % 7}" for i in range(n)],
            "name": ["Song Played"] * n,
            "ts": [1_790_000_000_000 + i for i in range(n)],
            "source": ["android"] * n,
            "received_at": [1_790_000_001_000] * n,
            "sent_at": [None if i % 2 else 1_790_000_000_900 for i in range(n)],
            "properties": [f'{{"genre": "jazz", "pad": "{"x" * pad}"}}'] * n,
            "kind": [0] * n,
        },
        schema=EVENT_SCHEMA,
    )


def ids(batches: list[pa.RecordBatch]) -> list[str]:
    return [m for b in batches for m in b.column("message_id").to_pylist()]


def read_ids(log: IngestLog, after: Position = START, on_corrupt: OnCorrupt = "raise") -> list[str]:
    return ids([r.batch for r in log.read(after, on_corrupt=on_corrupt)])


def open_segment(directory: Path) -> Path:
    (seg,) = [s for s in segments(directory, closed_only=False) if not s.closed]
    return seg.path


def test_round_trip(tmp_path: Path) -> None:
    with IngestLog(tmp_path) as log:
        sent = [events(10 + i, f"b{i}") for i in range(5)]
        positions = [log.append(b) for b in sent]
        assert positions == sorted(positions) and len(set(positions)) == 5
        assert log.fsyncs == 5 and log.position == positions[-1]
        records = list(log.read())
        assert [r.position for r in records] == positions
        assert [r.seq for r in records] == [0, 1, 2, 3, 4]
        assert all(r.batch.equals(b) for r, b in zip(records, sent, strict=True))
        assert read_ids(log, positions[2]) == ids(sent[3:])
        assert read_ids(log, positions[-1]) == []
        # a Table of several chunks is one append
        table = pa.Table.from_batches([events(3, "t1"), events(2, "t2")])
        p = log.append(table)
        assert [r.batch.num_rows for r in log.read(positions[-1])] == [5]
        assert list(log.read(p)) == []
        with pytest.raises(ValueError, match="schema"):
            log.append(pa.record_batch({"x": [1]}))
    # closed on exit: its segment is closed (a .seg) and readable without a writer
    assert [s.closed for s in segments(tmp_path)] == [True]
    assert len(ids([r.batch for r in read_log(tmp_path, "main")])) == 60 + 5


def test_reopen_goes_on(tmp_path: Path) -> None:
    log = IngestLog(tmp_path)
    first = log.append(events(4, "x"))
    log.close(seal=False)  # as after a crash: the segment stays open
    log = IngestLog(tmp_path)
    assert log.recovery == [] and log.position == first
    second = log.append(events(4, "y"))
    assert second.segment == first.segment and second > first
    assert [r.seq for r in log.read()] == [0, 1]
    log.close()
    log = IngestLog(tmp_path)  # after a clean close: a new segment, seq goes on
    third = log.append(events(1, "z"))
    assert third.segment == first.segment + 1
    assert [r.seq for r in log.read(second)] == [2]
    log.close()


def test_rotation_by_size_and_age(tmp_path: Path) -> None:
    with IngestLog(tmp_path, segment_bytes=4000) as log:
        positions = [log.append(events(20, f"r{i}")) for i in range(12)]
        closed = segments(tmp_path)
        assert len(closed) >= 3
        assert [s.number for s in closed] == sorted(s.number for s in closed)
        assert positions == sorted(positions)
        assert len({p.segment for p in positions}) >= 4
        assert read_ids(log) == ids([events(20, f"r{i}") for i in range(12)])
        assert read_ids(log, positions[5]) == ids([events(20, f"r{i}") for i in range(6, 12)])
        # closed segments are immutable: their bytes do not change with later appends
        before = {s.path: s.path.read_bytes() for s in closed}
        log.append(events(20, "later"))
        assert {p: p.read_bytes() for p in before} == before
    age = tmp_path / "age"
    with IngestLog(age, segment_seconds=0.2) as log:
        log.append(events(3, "a"))
        deadline = threading.Event()
        for _ in range(50):
            if segments(age):
                break
            deadline.wait(0.05)
        assert [s.number for s in segments(age)] == [1]  # closed by age, with no append
        assert log.append(events(1, "b")).segment == 2


def test_writers_share_a_directory(tmp_path: Path) -> None:
    a, b = IngestLog(tmp_path, writer="a"), IngestLog(tmp_path, writer="b")
    with pytest.raises(LogError, match="in use"):
        IngestLog(tmp_path, writer="a")
    a.append(events(2, "from-a"))
    b.append(events(3, "from-b"))
    a.close()
    b.close()
    assert [(s.writer, s.number) for s in segments(tmp_path)] == [("a", 1), ("b", 1)]
    assert ids([r.batch for r in read_log(tmp_path, "b")]) == ids([events(3, "from-b")])
    with pytest.raises(ValueError, match="writer id"):
        IngestLog(tmp_path, writer="no/slash")


def _crash_with(tmp_path: Path, n: int = 5) -> tuple[Path, list[Position]]:
    log = IngestLog(tmp_path)
    positions = [log.append(events(10, f"c{i}")) for i in range(n)]
    log.close(seal=False)
    return open_segment(tmp_path), positions


def test_torn_tail_is_dropped_and_the_writer_goes_on(tmp_path: Path) -> None:
    path, positions = _crash_with(tmp_path)
    cut = positions[3].offset + HEADER_SIZE + 40  # in the middle of the last frame
    os.truncate(path, cut)
    assert len(ids([r.batch for r in read_log(tmp_path, "main")])) == 40  # read as it is
    log = IngestLog(tmp_path)
    assert len(log.recovery) == 1 and "torn tail" in log.recovery[0]
    assert path.stat().st_size == positions[3].offset
    assert read_ids(log) == ids([events(10, f"c{i}") for i in range(4)])
    p = log.append(events(2, "after"))
    assert p.segment == positions[3].segment and p > positions[3]
    assert read_ids(log, positions[3]) == ["after-0", "after-1"]
    assert [r.seq for r in log.read()] == [0, 1, 2, 3, 4]
    log.close()


def test_zeros_after_a_crash_are_a_torn_tail(tmp_path: Path) -> None:
    path, _positions = _crash_with(tmp_path)
    with path.open("ab") as f:
        f.write(b"\x00" * 8192)  # blocks allocated, data never written
    with IngestLog(tmp_path) as log:
        assert "torn tail of 8192 bytes" in log.recovery[0]
        assert len(read_ids(log)) == 50


@pytest.mark.parametrize("where", ["header", "payload", "padding-length"])
def test_flipped_bytes_in_the_last_frame(tmp_path: Path, where: str) -> None:
    path, positions = _crash_with(tmp_path)
    at = {
        "header": positions[3].offset + 9,  # in its seq
        "payload": positions[4].offset - 30,
        "padding-length": positions[3].offset + 5,  # in its length
    }[where]
    data = bytearray(path.read_bytes())
    data[at] ^= 0x5A
    path.write_bytes(bytes(data))
    log = IngestLog(tmp_path)
    assert "torn tail" in log.recovery[0]
    assert read_ids(log) == ids([events(10, f"c{i}") for i in range(4)])  # never half-read
    log.append(events(1, "more"))
    assert len(read_ids(log)) == 41
    log.close()


def test_a_bad_middle_frame_stops_readers_loudly(tmp_path: Path) -> None:
    path, positions = _crash_with(tmp_path)
    data = bytearray(path.read_bytes())
    data[positions[2].offset - 50] ^= 0xFF  # in frame 2's payload; frames 3, 4 are fine
    path.write_bytes(bytes(data))
    want = ids([events(10, f"c{i}") for i in range(5)])
    log = IngestLog(tmp_path)
    # not a torn tail: nothing is truncated; the segment is closed as it is
    assert "CORRUPT frame at byte" in log.recovery[0]
    assert segments(tmp_path)[0].path.read_bytes() == bytes(data)
    seen: list[str] = []
    with pytest.raises(CorruptLogError, match="checksum mismatch") as caught:
        for r in log.read():
            seen.extend(r.batch.column("message_id").to_pylist())
    assert seen == want[:20] and caught.value.offset == positions[1].offset
    with pytest.warns(RuntimeWarning, match="skipping a corrupt frame"):
        assert read_ids(log, on_corrupt="skip") == want[:20] + want[30:]
    # reading past it (the store had applied it) is no error; the writer goes on
    assert read_ids(log, positions[2]) == want[30:]
    p = log.append(events(1, "new"))
    assert p.segment == positions[0].segment + 1
    assert read_ids(log, positions[-1]) == ["new-0"]
    assert [r.seq for r in log.read(positions[-1])] == [5]
    log.close()


def test_a_closed_segment_is_never_read_past_damage(tmp_path: Path) -> None:
    with IngestLog(tmp_path) as log:
        positions = [log.append(events(5, f"s{i}")) for i in range(3)]
    (seg,) = segments(tmp_path)
    data = bytearray(seg.path.read_bytes())
    data[-3] ^= 1  # even the last frame: a closed segment has no torn tail
    seg.path.write_bytes(bytes(data))
    got = []
    with pytest.raises(CorruptLogError):
        for _end, _seq, batch in read_segment(seg.path):
            got.append(batch)
    assert len(got) == 2
    # the bytes of a file (as Spark's binaryFile source gives them) read the same
    with pytest.raises(CorruptLogError):
        list(read_segment("spark://x", data=bytes(data)))
    assert [e for e, _, _ in read_segment("x", data=bytes(data[: positions[1].offset]))] == [
        p.offset for p in positions[:2]
    ]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=30),
    reads=st.lists(st.integers(0, 30), max_size=8),
)
def test_a_tail_reads_each_frame_once_as_the_log_grows(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[int], reads: list[int]
) -> None:
    """Another process's view of the log (`lull serve`'s store process): read up to
    durable positions reported at any moment, across segments closed in between, it gives
    every frame once, in order, with the position the writer gave it."""
    directory = tmp_path_factory.mktemp("tail")
    log = IngestLog(directory, segment_bytes=3_000)  # a new segment every few frames
    tail = Tail(directory, log.writer, START)
    written: list[tuple[Position, list[str]]] = []
    got: list[tuple[Position, list[str]]] = []
    for k, n in enumerate(sizes):
        batch = events(n, tag=f"f{k}")
        written.append((log.append(batch), ids([batch])))
        if k in reads:
            got += [(r.position, ids([r.batch])) for r in tail.read(written[-1][0])]
    log.close()
    got += [(r.position, ids([r.batch])) for r in tail.read(written[-1][0])]
    assert list(tail.read(written[-1][0])) == []  # nothing twice
    tail.close()
    assert got == written


def test_concurrent_appenders_share_fsyncs(tmp_path: Path) -> None:
    per_thread, threads = 25, 8
    got: dict[str, Position] = {}
    with IngestLog(tmp_path, segment_bytes=200_000) as log:

        def work(t: int) -> None:
            for i in range(per_thread):
                batch = events(50, f"t{t}-{i}")
                got[f"t{t}-{i}"] = log.append(batch)

        workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert log.appended == per_thread * threads
        assert log.fsyncs <= log.appended
        records = list(log.read())
    assert len(set(got.values())) == per_thread * threads
    # read order is position order, and every append is there exactly once
    assert [r.position for r in records] == sorted(got.values())
    assert [r.seq for r in records] == list(range(per_thread * threads))
    by_position = {p: tag for tag, p in got.items()}
    for r in records:
        assert r.batch.column("message_id")[0].as_py() == f"{by_position[r.position]}-0"


def test_async_appends(tmp_path: Path) -> None:
    async def main(log: IngestLog) -> list[Position]:
        return await asyncio.gather(*(log.append_async(events(3, f"q{i}")) for i in range(20)))

    with IngestLog(tmp_path) as log:
        positions = asyncio.run(main(log))
        assert len(set(positions)) == 20
        assert log.fsyncs < 20  # appends that waited together shared an fsync
        assert sorted(read_ids(log)) == sorted(ids([events(3, f"q{i}") for i in range(20)]))


def _mount_small(where: Path) -> bool:
    where.mkdir()
    if os.geteuid() != 0:
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)], capture_output=True
    )
    return done.returncode == 0


def test_disk_full_fails_clearly_and_resumes(tmp_path: Path) -> None:
    disk = tmp_path / "small"
    if not _mount_small(disk):
        pytest.skip("cannot mount a small tmpfs here (test_file_size_limit covers the fault)")
    try:
        filler = disk / "filler"
        filler.write_bytes(b"\x01" * 400_000)
        log = IngestLog(disk / "log", segment_bytes=10 << 20)
        kept: list[str] = []
        error: LogWriteError | None = None
        for i in range(40):
            batch = events(100, f"d{i}", pad=200)  # ~30 KB a frame
            try:
                log.append(batch)
            except LogWriteError as e:
                error = e
                break
            kept.extend(batch.column("message_id").to_pylist())
        assert error is not None and error.errno == errno.ENOSPC
        assert "not durable" in str(error) and "ENOSPC" in str(error)
        end = log.position
        assert (open_segment(disk / "log")).stat().st_size == end.offset  # cut back
        assert read_ids(log) == kept
        with pytest.raises(LogWriteError):  # still full: still refused
            log.append(events(100, "again", pad=200))
        filler.unlink()  # space is back: the writer goes on by itself
        p = log.append(events(100, "back", pad=200))
        assert p > end
        assert read_ids(log) == [*kept, *(f"back-{i}" for i in range(100))]
        log.close()
        with IngestLog(disk / "log") as again:
            assert again.recovery == []
            assert len(read_ids(again)) == len(kept) + 100
    finally:
        subprocess.run(["umount", str(disk)], check=False)


_FSIZE = textwrap.dedent(
    """
    import resource, signal, sys
    sys.path[:0] = [sys.argv[2]]
    from test_ingest_log import events, read_ids
    from lull.store.log import IngestLog, LogWriteError

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, resource.RLIM_INFINITY))
    log = IngestLog(sys.argv[1], segment_bytes=10 << 20)
    n = 0
    for i in range(10):
        try:
            log.append(events(100, f"f{i}", pad=100))
            n += 1
        except LogWriteError as e:
            print("refused", e.errno, e)
            break
    assert n and read_ids(log) == [f"f{i}-{j}" for i in range(n) for j in range(100)]
    resource.setrlimit(resource.RLIMIT_FSIZE, (10 << 20, resource.RLIM_INFINITY))
    log.append(events(100, "back"))  # the cause is gone: appends work again
    assert len(read_ids(log)) == (n + 1) * 100
    log.close()
    print("ok", n)
    """
)


def test_file_size_limit_fails_clearly_and_resumes(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _FSIZE, str(tmp_path / "log"), str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    refused, ok = done.stdout.splitlines()
    assert refused.startswith(f"refused {errno.EFBIG} ") and "not durable" in refused
    assert ok.startswith("ok ") and int(ok.split()[1]) >= 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=st.lists(st.integers(0, 30), min_size=1, max_size=8),
    cut=st.floats(0, 1),
)
def test_any_truncation_reads_a_prefix(sizes: list[int], cut: float) -> None:
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent.parent) as d:
        whole = Path(d) / "whole"
        log = IngestLog(whole)
        sent = [events(n, f"p{i}") for i, n in enumerate(sizes)]
        positions = [log.append(b) for b in sent]
        log.close(seal=False)
        data = open_segment(whole).read_bytes()
        length = round(cut * len(data))
        cut_dir = Path(d) / "cut"
        cut_dir.mkdir()
        (cut_dir / open_segment(whole).name).write_bytes(data[:length])
        k = sum(p.offset <= length for p in positions)
        got = [r.batch for r in read_log(cut_dir, "main")]
        assert len(got) == k and all(a.equals(b) for a, b in zip(got, sent, strict=False))
        with IngestLog(cut_dir) as again:  # the writer recovers it and goes on
            assert [r.batch.num_rows for r in again.read()] == sizes[:k]
            again.append(events(1, "next"))
            assert read_ids(again)[-1] == "next-0"
