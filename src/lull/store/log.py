"""The durable ingest log: validated events appended to segment files, fsynced, replayable.

A 2xx means the accepted events are durable (docs/sessions.md, "Acknowledgement"). This
module is where that becomes true: `IngestLog.append` returns only once the events are on
disk (written and fdatasync'ed), and a crash after it loses none of them. Many request
handlers append at once; one writer thread takes every append that is waiting and writes
them with one `write` and one `fdatasync` (group commit).

On disk (see docs/ingest-log.md for the choice and the figures): a directory of segment
files, each a sequence of frames::

    frame  = header (24 bytes, little-endian) + payload + zero padding to 8 bytes
    header = magic b"LLF1" | length u32 (payload bytes) | seq u64 | kind u16 | 0 u16 | crc u32
    crc    = CRC-32 (zlib) of the payload followed by header bytes 4..19

The first frame of a segment (kind 1) holds the Arrow schema of its batches (Arrow IPC
schema message) and, as its seq, the seq of the segment's first batch. Every other frame
(kind 2) holds one appended batch as one Arrow IPC record batch message; its seq is the
writer's frame counter, one more than the frame before, across segments.

A segment is named `<writer>-<number>` (number: 12 digits, from 1): `.open` while its
writer appends to it, `.seg` once closed (renamed after its last fsync; never written
again). Readers such as `lull spark stream` take `*.seg` files only, ordered by writer and
number. Several writer processes may share one directory, each with its own writer id
(a lock file `<writer>.lock` keeps two processes off one id); a writer that restarts under
the same id recovers its `.open` segment and goes on.

Crash safety: every frame is checked by its CRC, magic, length and seq, so a torn tail
(a write cut short, or blocks of zeros or garbage after a crash) is detected and never
half-read. On reopen the writer truncates its open segment at the first bad frame when no
valid frame follows it (a torn tail: nothing there was acknowledged, except when the last
acknowledged frame itself was damaged on disk, which cannot be told apart). A bad frame
followed by valid ones is corruption, not a torn write: nothing is truncated, the segment
is closed as it is and reported, and readers stop at the bad frame with `CorruptLogError`
(or, asked to `skip`, report it and go on at the next valid frame).

I/O errors (ENOSPC, EIO...): the appends of the failed group get `LogWriteError` and are
not durable; the segment is cut back to its last durable end, the file reopened, and the
next append tries again, so the writer resumes by itself once the cause is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import queue
import re
import struct
import sys
import threading
import time
import warnings
import zlib
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import pyarrow as pa

# The canonical events as the log holds them: one place for their columns.
EVENT_SCHEMA = pa.schema(
    [
        ("project", pa.string()),  # the project's name
        ("message_id", pa.string()),
        ("profile_id", pa.string()),
        ("name", pa.string()),
        ("ts", pa.int64()),  # event time as sent (epoch ms), before R5's clock fix
        ("source", pa.string()),  # web, ios, android, api
        ("received_at", pa.int64()),  # epoch ms
        ("sent_at", pa.int64()),  # epoch ms, null when the client sent none
        ("properties", pa.string()),  # JSON text
        # 0: an event; 1: an identity link (anonymous id in message_id, tied to
        # profile_id); 2: profile properties set (properties, at ts); 3: a clock row
        # (no event: `lull serve --ingest-only` appends one while quiet, project "", so
        # that the stream's clock reaches received_at). lull spark stream takes 0 and 3.
        ("kind", pa.int8()),
    ]
)

MAGIC = b"LLF1"
HEADER = struct.Struct("<4sIQHHI")
HEADER_SIZE = HEADER.size  # 24
KIND_SCHEMA = 1
KIND_BATCH = 2
OPEN = ".open"
CLOSED = ".seg"
_WRITER = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_NAME = re.compile(r"^([A-Za-z0-9_]{1,64})-(\d{12})\.(open|seg)$")
_fdatasync = getattr(os, "fdatasync", os.fsync)
# Why a tail frame is bad when a write was cut short (or never reached the disk): no whole
# frame is there. Any other reason (a checksum, a kind, a seq) means a whole frame is damaged.
_TORN = ("incomplete header", "incomplete frame", "bad magic")


class Position(NamedTuple):
    """Where a frame ends in its writer's log: (segment number, byte offset of its end).
    Positions of one writer grow with every append; `read(after=p)` goes on past `p`."""

    segment: int
    offset: int


START = Position(0, 0)


class Record(NamedTuple):
    position: Position
    seq: int
    batch: pa.RecordBatch


class LogError(Exception):
    """Something the ingest log could not do."""


class LogWriteError(LogError):
    """An append that is NOT durable (the write or the fsync failed); retry later."""

    def __init__(self, cause: OSError) -> None:
        self.errno = cause.errno
        what = errno.errorcode.get(cause.errno or 0, "I/O error")
        super().__init__(f"ingest log: not durable, {what}: {cause.strerror or cause}")


class CorruptLogError(LogError):
    """A frame that fails its checks where no torn tail can be (a closed segment, or
    before valid frames): the log is damaged, not cut short."""

    def __init__(self, path: Path | str, offset: int, reason: str) -> None:
        self.path, self.offset, self.reason = str(path), offset, reason
        super().__init__(f"ingest log: corrupt frame in {path} at byte {offset}: {reason}")


class LogClosedError(LogError):
    pass


def _pad(n: int) -> int:
    return -n % 8


def _frame_header(kind: int, seq: int, payload_crc: int, length: int) -> bytes:
    fields = struct.pack("<IQHH", length, seq, kind, 0)
    return HEADER.pack(MAGIC, length, seq, kind, 0, zlib.crc32(fields, payload_crc))


def _frame(kind: int, seq: int, payload: pa.Buffer | bytes) -> bytes:
    body = bytes(payload)
    header = _frame_header(kind, seq, zlib.crc32(body), len(body))
    return header + body + b"\x00" * _pad(len(body))


# -- reading ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Frame:
    offset: int
    end: int
    seq: int
    kind: int
    payload: pa.Buffer


def _check(buf: pa.Buffer, view: memoryview, at: int) -> _Frame | str:
    """The frame at `at`, or why there is none."""
    size = buf.size
    if size - at < HEADER_SIZE:
        return "incomplete header"
    magic, length, seq, kind, zero, crc = HEADER.unpack_from(view, at)
    if magic != MAGIC:
        return "bad magic"
    end = at + HEADER_SIZE + length + _pad(length)
    if end > size:
        return "incomplete frame"
    start = at + HEADER_SIZE
    if zlib.crc32(view[at + 4 : at + 20], zlib.crc32(view[start : start + length])) != crc:
        return "checksum mismatch"
    if kind not in (KIND_SCHEMA, KIND_BATCH) or zero:
        return f"unknown frame kind {kind}"
    return _Frame(at, end, seq, kind, buf.slice(start, length))


def _resync(buf: pa.Buffer, view: memoryview, at: int, after_seq: int) -> _Frame | None:
    """The next valid batch frame after a bad one at `at` (whose seq follows `after_seq`)."""
    data = view.obj if isinstance(view.obj, bytes) else bytes(view)
    i = at + 1
    while True:
        i = data.find(MAGIC, i)
        if i < 0:
            return None
        found = _check(buf, view, i)
        if isinstance(found, _Frame) and found.kind == KIND_BATCH and found.seq > after_seq:
            return found
        i += 1


def _out_of_place(frame: _Frame, seq: int | None) -> str:
    if frame.kind != KIND_BATCH:
        return "a schema frame inside the segment"
    return f"frame seq {frame.seq} where {seq} was due"


@dataclass(slots=True)
class _Scan:
    schema: pa.Schema | None
    base_seq: int  # seq of the segment's first batch (from its schema frame)
    frames: list[_Frame]
    good_end: int  # end of the last valid frame before any bad one
    bad: tuple[int, str] | None  # (offset, reason) of the first bad frame
    resumes: bool  # a valid frame follows the bad one: corruption, not a torn tail


def _load(path: Path, limit: int | None = None) -> pa.Buffer:
    with pa.OSFile(str(path), "r") as f:
        return f.read_buffer(limit) if limit is not None else f.read_buffer()


def _scan(buf: pa.Buffer) -> _Scan:
    view = memoryview(buf)
    first = _check(buf, view, 0)
    if not isinstance(first, _Frame) or first.kind != KIND_SCHEMA:
        reason = first if isinstance(first, str) else "no schema frame"
        if buf.size == 0:
            return _Scan(None, 0, [], 0, None, False)
        return _Scan(None, 0, [], 0, (0, reason), _resync(buf, view, 0, -1) is not None)
    schema = pa.ipc.read_schema(first.payload)
    frames: list[_Frame] = []
    at, seq = first.end, first.seq
    while at < buf.size:
        found = _check(buf, view, at)
        if isinstance(found, _Frame) and (found.kind != KIND_BATCH or found.seq != seq):
            found = _out_of_place(found, seq)
        if isinstance(found, str):
            return _Scan(
                schema,
                first.seq,
                frames,
                at,
                (at, found),
                _resync(buf, view, at, seq - 1) is not None,
            )
        frames.append(found)
        at, seq = found.end, seq + 1
    return _Scan(schema, first.seq, frames, at, None, False)


def _parse_name(name: str) -> tuple[str, int, bool] | None:
    m = _NAME.match(name)
    if m is None:
        return None
    return m.group(1), int(m.group(2)), m.group(3) == "open"


def _segment_name(writer: str, number: int, suffix: str) -> str:
    return f"{writer}-{number:012d}{suffix}"


@dataclass(frozen=True, slots=True)
class Segment:
    path: Path
    writer: str
    number: int
    closed: bool


def segments(
    directory: Path | str, writer: str | None = None, closed_only: bool = True
) -> list[Segment]:
    """The segments in `directory` (of one writer, or all), ordered by writer and number."""
    out = []
    for entry in os.scandir(directory):
        parsed = _parse_name(entry.name)
        if parsed is None or (writer is not None and parsed[0] != writer):
            continue
        if closed_only and parsed[2]:
            continue
        out.append(Segment(Path(entry.path), parsed[0], parsed[1], not parsed[2]))
    return sorted(out, key=lambda s: (s.writer, s.number, s.closed))


OnCorrupt = Literal["raise", "skip"]


def read_segment(
    path: Path | str,
    after: int = 0,
    *,
    torn_tail_ok: bool = False,
    on_corrupt: OnCorrupt = "raise",
    limit: int | None = None,
    data: pa.Buffer | bytes | None = None,
) -> Iterator[tuple[int, int, pa.RecordBatch]]:
    """The batches of one segment file as (end offset, seq, batch), those that end after
    byte `after`. A bad frame raises `CorruptLogError` once the frames before it are
    given, except a torn tail (no valid frame after it) when `torn_tail_ok` (a writer's
    open segment after a crash). With `on_corrupt="skip"` a bad frame is reported (a
    warning) and reading goes on at the next valid frame. `data`: the file's bytes
    (from Spark's binaryFile source, say) instead of reading `path`."""
    buf = (
        _load(Path(path), limit)
        if data is None
        else (data if isinstance(data, pa.Buffer) else pa.py_buffer(data))
    )
    view = memoryview(buf)
    head = _check(buf, view, 0)
    if not isinstance(head, _Frame) or head.kind != KIND_SCHEMA:
        if buf.size == 0 or (torn_tail_ok and _resync(buf, view, 0, -1) is None):
            return
        reason = head if isinstance(head, str) else "no schema frame"
        raise CorruptLogError(path, 0, reason)
    schema = pa.ipc.read_schema(head.payload)
    at = max(head.end, after)
    seq: int | None = head.seq if at == head.end else None  # unknown when we jumped
    while at < buf.size:
        found = _check(buf, view, at)
        if isinstance(found, _Frame) and (
            found.kind != KIND_BATCH or (seq is not None and found.seq != seq)
        ):
            found = _out_of_place(found, seq)
        if isinstance(found, str):
            last = -1 if seq is None else seq - 1
            following = _resync(buf, view, at, last)
            if following is None and torn_tail_ok:
                return
            if on_corrupt == "raise":
                raise CorruptLogError(path, at, found)
            lost = "the rest of the segment" if following is None else f"to byte {following.offset}"
            warnings.warn(
                f"ingest log: skipping a corrupt frame in {path} at byte {at} ({found}): {lost}",
                RuntimeWarning,
                stacklevel=2,
            )
            if following is None:
                return
            found = following
        yield found.end, found.seq, pa.ipc.read_record_batch(found.payload, schema)
        at, seq = found.end, found.seq + 1


def read_log(
    directory: Path | str,
    writer: str,
    after: Position = START,
    *,
    on_corrupt: OnCorrupt = "raise",
    open_limit: int | None = None,
) -> Iterator[Record]:
    """Every batch a writer appended past `after`, in order: its closed segments, then its
    open one (up to `open_limit` bytes when given; a torn tail there ends the log)."""
    for seg in segments(directory, writer, closed_only=False):
        if seg.number < after.segment:
            continue
        start = after.offset if seg.number == after.segment else 0
        path = seg.path
        try:
            data = _load(path, None if seg.closed else open_limit)
        except FileNotFoundError:
            if seg.closed:
                raise
            path = path.with_name(_segment_name(writer, seg.number, CLOSED))  # closed since
            data = _load(path, open_limit)
        for end, seq, batch in read_segment(
            path, start, torn_tail_ok=not seg.closed, on_corrupt=on_corrupt, data=data
        ):
            yield Record(Position(seg.number, end), seq, batch)


class Tail:
    """A writer's log read forward as it grows, by another process: the frames up to a
    durable position its writer reports (`lull serve`'s store process follows the front
    process's log this way). Each call reads only the bytes past the last one, by `pread`
    on the open file (which a rename at the segment's close does not disturb)."""

    def __init__(self, directory: Path | str, writer: str, after: Position) -> None:
        self.directory = Path(directory)
        self.writer = writer
        self.at = after
        self._fd: int | None = None
        self._schema: pa.Schema | None = None

    def read(self, until: Position) -> Iterator[Record]:
        """The frames past the last read, up to `until` (a frame's end, durable)."""
        if self.at.segment == 0 and self.at < until:  # nothing read yet: the first segment
            self.at = Position(self._following(until), 0)
        while self.at < until:
            if self._fd is None:
                self._open(self.at.segment)
            end = until.offset if self.at.segment == until.segment else None
            yield from self._frames(end)
            if end is None:  # that segment is complete: on to the next
                self._close()
                self.at = Position(self._following(until), 0)

    def _following(self, until: Position) -> int:
        """The number of the writer's segment after the one being read."""
        numbers = [s.number for s in segments(self.directory, self.writer, False)]
        number = min((n for n in numbers if n > self.at.segment), default=None)
        if number is None or number > until.segment:
            raise CorruptLogError(self.directory, 0, f"no segment after {tuple(self.at)}")
        return number

    def close(self) -> None:
        self._close()

    def _open(self, number: int) -> None:
        for suffix in (OPEN, CLOSED):  # it may be closed (renamed) since
            path = self.directory / _segment_name(self.writer, number, suffix)
            with contextlib.suppress(FileNotFoundError):
                self._fd = os.open(path, os.O_RDONLY)
                break
        else:
            raise CorruptLogError(self.directory, 0, f"segment {number} of {self.writer} is gone")
        head = os.pread(self._fd, HEADER_SIZE, 0)
        length = HEADER.unpack_from(head)[1] if len(head) == HEADER_SIZE else 0
        buf = pa.py_buffer(os.pread(self._fd, HEADER_SIZE + length + _pad(length), 0))
        first = _check(buf, memoryview(buf), 0)
        if not isinstance(first, _Frame) or first.kind != KIND_SCHEMA:
            raise CorruptLogError(path, 0, first if isinstance(first, str) else "no schema frame")
        self._schema = pa.ipc.read_schema(first.payload)
        if self.at.offset < first.end:
            self.at = Position(number, first.end)

    def _frames(self, end: int | None) -> Iterator[Record]:
        assert self._fd is not None and self._schema is not None
        start = self.at.offset
        size = (os.fstat(self._fd).st_size if end is None else end) - start
        buf = pa.py_buffer(os.pread(self._fd, size, start)) if size > 0 else pa.py_buffer(b"")
        view = memoryview(buf)
        at = 0
        while at < buf.size:
            found = _check(buf, view, at)
            if isinstance(found, str):
                raise CorruptLogError(self.directory, start + at, found)
            batch = pa.ipc.read_record_batch(found.payload, self._schema)
            at = found.end
            self.at = Position(self.at.segment, start + at)
            yield Record(self.at, found.seq, batch)

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


# -- writing ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Append:
    payload: pa.Buffer
    crc: int
    future: Future[Position]


_STOP = object()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        if n == 0:
            raise OSError(errno.EIO, "write returned 0")
        view, offset = view[n:], offset + n


class IngestLog:
    """An append-only, checksummed, group-committed log of Arrow record batches.

    `append` (blocking), `submit` (a Future) and `append_async` (asyncio) return the
    batch's Position once it is durable. One writer thread does the I/O."""

    def __init__(
        self,
        directory: Path | str,
        *,
        writer: str = "main",
        schema: pa.Schema = EVENT_SCHEMA,
        segment_bytes: int = 64 << 20,
        segment_seconds: float | None = None,
        group_bytes: int = 32 << 20,
    ) -> None:
        if not _WRITER.match(writer):
            raise ValueError(f"writer id must be 1-64 letters, digits or _: {writer!r}")
        self.directory = Path(directory)
        self.writer = writer
        self.schema = schema
        self.segment_bytes = segment_bytes
        self.segment_seconds = segment_seconds
        self.group_bytes = group_bytes
        self.fsyncs = 0  # group commits done (one fdatasync each)
        self.appended = 0  # batches made durable
        self.recovery: list[str] = []  # what reopening found (torn tail dropped, ...)
        # Where reopening dropped a whole frame that failed its checks at the end of the log
        # (not a write cut short): it may have been acknowledged; the store can tell.
        self.damaged: list[Position] = []
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.directory / f"{writer}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise LogError(
                f"ingest log: writer {writer!r} of {self.directory} is in use by another process"
            ) from None
        self._schema_payload = schema.serialize()
        self._fd: int | None = None
        self._number = 0  # the open segment (0: none yet)
        self._path: Path | None = None  # the open segment's file while it is open
        self._size = 0  # its durable end
        self._frames = 0  # batch frames in it
        self._opened = time.monotonic()
        self._retry_at = 0.0
        self._next_seq = 0
        self._state = threading.Lock()  # (number, size) as readers see them
        self._queue: queue.SimpleQueue[_Append | object] = queue.SimpleQueue()
        self._closed = False
        try:
            self._recover()
        except BaseException:
            self._release()
            raise
        self._thread = threading.Thread(target=self._run, name=f"lull-log-{writer}", daemon=True)
        self._thread.start()

    # -- API -------------------------------------------------------------------------

    def submit(self, batch: pa.RecordBatch | pa.Table) -> Future[Position]:
        """Queue a batch; the future resolves to its Position once durable, or fails with
        `LogWriteError` (not durable)."""
        if isinstance(batch, pa.Table):
            batches = batch.to_batches()
            batch = (
                pa.concat_batches(batches)
                if batches
                else pa.RecordBatch.from_pylist([], schema=batch.schema)
            )
        if not batch.schema.equals(self.schema):
            raise ValueError(
                "ingest log: the batch's schema is not the log's:\n"
                f"{batch.schema}\n--- expected:\n{self.schema}"
            )
        payload = batch.serialize()
        future: Future[Position] = Future()
        if self._closed:
            raise LogClosedError("ingest log: closed")
        self._queue.put(_Append(payload, zlib.crc32(memoryview(payload)), future))
        return future

    def append(self, batch: pa.RecordBatch | pa.Table, timeout: float | None = None) -> Position:
        """Append and wait until durable; raises `LogWriteError` if it is not."""
        return self.submit(batch).result(timeout)

    async def append_async(self, batch: pa.RecordBatch | pa.Table) -> Position:
        return await asyncio.wrap_future(self.submit(batch))

    def read(self, after: Position = START, *, on_corrupt: OnCorrupt = "raise") -> Iterator[Record]:
        """What this writer appended past `after` (durable frames only), for replay."""
        with self._state:
            number, size = self._number, self._size
        for record in read_log(self.directory, self.writer, after, on_corrupt=on_corrupt,
                               open_limit=size):  # fmt: skip
            if record.position.segment > number:
                return
            yield record

    @property
    def position(self) -> Position:
        """The end of the durable log (the position of the last durable append)."""
        with self._state:
            return Position(self._number, self._size)

    def close(self, seal: bool = True) -> None:
        """Commit what is queued, stop the writer, and (with `seal`) close the open
        segment if it holds any batch, so that readers of closed segments get it."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join()
        while True:  # appends that raced with close
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Append):
                item.future.set_exception(LogClosedError("ingest log: closed"))
        try:
            if seal and self._frames and self._fd is not None:
                self._seal()
        finally:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self._release()

    def __enter__(self) -> IngestLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- start-up --------------------------------------------------------------------

    def _release(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._lock_fd)

    def _say(self, message: str) -> None:
        self.recovery.append(message)
        print(f"lull: ingest log: {message}", file=sys.stderr, flush=True)

    def _recover(self) -> None:
        """Bring this writer's files to a clean state: its last open segment with a torn
        tail cut off, to go on with; older open ones (a crash between a close and its
        rename) closed."""
        for leftover in self.directory.glob(f".{self.writer}-*.new"):
            leftover.unlink()
        mine = segments(self.directory, self.writer, closed_only=False)
        last_closed = max((s.number for s in mine if s.closed), default=0)
        opened = [s for s in mine if not s.closed]
        for seg in opened:
            buf = _load(seg.path)
            scan = _scan(buf)
            if scan.bad is not None and scan.resumes:
                self._say(
                    f"{seg.path.name}: CORRUPT frame at byte {scan.bad[0]} ({scan.bad[1]}) "
                    "with valid frames after it: the segment is closed as it is, and readers "
                    "stop there (CorruptLogError) unless told to skip it"
                )
                self._rename_closed(seg.path)
                continue
            if scan.bad is not None:
                damaged = ""
                if scan.bad[1] not in _TORN:  # a whole frame is there, and it fails its checks
                    self.damaged.append(Position(seg.number, scan.good_end))
                    damaged = (
                        ": a whole frame there is DAMAGED; if it was acknowledged, its events "
                        "are LOST unless the store had applied them"
                    )
                self._say(
                    f"{seg.path.name}: dropped a torn tail of {buf.size - scan.good_end} "
                    f"bytes at byte {scan.good_end} ({scan.bad[1]}){damaged}"
                )
                self._cut(seg.path, scan.good_end)
            usable = scan.schema is not None and scan.schema.equals(self.schema)
            if seg is opened[-1] and seg.number > last_closed and usable:
                self._continue(seg, scan)
            elif scan.frames:
                self._rename_closed(seg.path)
            else:
                seg.path.unlink()  # not a batch in it
        if opened:
            _fsync_dir(self.directory)
        if self._path is None:
            self._number = max([last_closed, *(s.number for s in opened)])
            self._next_seq = self._last_seq() + 1
            last = self.directory / _segment_name(self.writer, self._number, CLOSED)
            self._size = last.stat().st_size if last.exists() else 0

    def _continue(self, seg: Segment, scan: _Scan) -> None:
        self._fd = os.open(seg.path, os.O_WRONLY)
        self._path, self._number, self._size = seg.path, seg.number, scan.good_end
        self._frames = len(scan.frames)
        self._next_seq = scan.frames[-1].seq + 1 if scan.frames else scan.base_seq
        self._opened = time.monotonic()

    def _cut(self, path: Path, end: int) -> None:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.ftruncate(fd, end)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _rename_closed(self, path: Path) -> None:
        parsed = _parse_name(path.name)
        assert parsed is not None
        os.rename(path, path.with_name(_segment_name(self.writer, parsed[1], CLOSED)))

    def _last_seq(self) -> int:
        """The seq of this writer's last batch (-1: none yet)."""
        for seg in reversed(segments(self.directory, self.writer)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                seqs = [seq for _, seq, _ in read_segment(seg.path, on_corrupt="skip")]
            if seqs:
                return max(seqs)
            scan = _scan(_load(seg.path))
            if scan.schema is not None:
                return scan.base_seq - 1
        return -1

    # -- the writer thread -------------------------------------------------------------

    def _run(self) -> None:
        pending: _Append | object | None = None
        while True:
            if pending is None:
                wait = None
                if self.segment_seconds is not None and self._frames:
                    due = max(self._opened + self.segment_seconds, self._retry_at)
                    wait = max(0.0, due - time.monotonic())
                try:
                    pending = self._queue.get(timeout=wait)
                except queue.Empty:
                    self._rotate_quietly()
                    continue
            if pending is _STOP:
                return
            assert isinstance(pending, _Append)
            group = [pending]
            pending = None
            size = group[0].payload.size
            while size < self.group_bytes:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if not isinstance(item, _Append):
                    pending = item
                    break
                group.append(item)
                size += item.payload.size
            self._commit(group)

    def _rotate_quietly(self) -> None:
        try:
            self._ensure_open()
        except Exception as e:
            self._broken(e)
            self._retry_at = time.monotonic() + 1.0  # no busy loop while the disk is full

    def _ensure_open(self) -> None:
        """An open segment with room, reopened after an error, rotated when full or old."""
        if self._path is not None and self._fd is None:  # after an I/O error
            fd = os.open(self._path, os.O_WRONLY)
            try:
                os.ftruncate(fd, self._size)
                os.fsync(fd)
            except OSError:
                os.close(fd)
                raise
            self._fd = fd
        full = self._size >= self.segment_bytes
        old = (
            self.segment_seconds is not None
            and time.monotonic() - self._opened >= self.segment_seconds
        )
        if self._path is not None and self._frames and (full or old):
            self._seal()
        if self._path is None:
            self._create()

    def _seal(self) -> None:
        assert self._path is not None and self._fd is not None
        closed = self._path.with_name(_segment_name(self.writer, self._number, CLOSED))
        os.rename(self._path, closed)
        with self._state:
            self._path = None
        os.close(self._fd)
        self._fd = None
        _fsync_dir(self.directory)

    def _create(self) -> None:
        number = self._number + 1
        name = _segment_name(self.writer, number, OPEN)
        temp = self.directory / f".{name}.new"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            head = _frame(KIND_SCHEMA, self._next_seq, self._schema_payload)
            _pwrite_all(fd, head, 0)
            _fdatasync(fd)
            os.rename(temp, self.directory / name)
            _fsync_dir(self.directory)
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                temp.unlink()
            raise
        with self._state:
            self._fd, self._path, self._number, self._size = (
                fd,
                self.directory / name,
                number,
                len(head),
            )
        self._frames = 0
        self._opened = time.monotonic()

    def _commit(self, group: list[_Append]) -> None:
        try:
            self._ensure_open()
            assert self._fd is not None
            parts: list[bytes | pa.Buffer] = []
            positions = []
            end, seq = self._size, self._next_seq
            for item in group:
                length = item.payload.size
                parts.append(_frame_header(KIND_BATCH, seq, item.crc, length))
                parts.append(item.payload)
                if _pad(length):
                    parts.append(b"\x00" * _pad(length))
                end += HEADER_SIZE + length + _pad(length)
                positions.append(Position(self._number, end))
                seq += 1
            _pwrite_all(self._fd, b"".join(parts), self._size)
            _fdatasync(self._fd)
        except Exception as e:  # OSError, or anything else: nothing of it is durable
            self._broken(e)
            error = LogWriteError(e) if isinstance(e, OSError) else e
            for item in group:
                item.future.set_exception(error)
            return
        with self._state:
            self._size = end
        self._next_seq = seq
        self._frames += len(group)
        self.fsyncs += 1
        self.appended += len(group)
        for item, position in zip(group, positions, strict=True):
            item.future.set_result(position)

    def _broken(self, error: Exception) -> None:
        """After a failed write or fsync: cut the segment back to its durable end and drop
        the descriptor (after a failed fsync its pages cannot be trusted); the next append
        reopens it."""
        shown = LogWriteError(error) if isinstance(error, OSError) else repr(error)
        print(f"lull: ingest log: {shown}", file=sys.stderr, flush=True)
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, self._size)
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._fd = None
