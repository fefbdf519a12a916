"""An input file's records as they are stored: plain, gzip or zip (of plain or gzip
files), as JSON lines or CSV rows, each with the place it came from for error messages."""

from __future__ import annotations

import csv
import gzip
import io
import sys
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import IO, Any

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from lull.errors import BadInput

GZIP = b"\x1f\x8b"
ZIP = b"PK\x03\x04"
PARQUET = b"PAR1"

_BOM = b"\xef\xbb\xbf"
_decode = msgspec.json.Decoder().decode
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_BROKEN = (OSError, EOFError, zlib.error, zipfile.BadZipFile, gzip.BadGzipFile)


@dataclass(frozen=True, slots=True)
class Place:
    """Where a record is: the input's name, the zip member, the line (or CSV row)."""

    shown: str
    member: str | None
    line: int | None
    row: int | None = None  # CSV, Parquet: the data row (1 = the first)

    def __str__(self) -> str:
        where = self.shown if self.member is None else f"{self.shown}: {self.member}"
        if self.row is None:
            return f"{where}: line {self.line}"
        return f"{where}: row {self.row}" + ("" if self.line is None else f" (line {self.line})")


def head(path: str, size: int = 4) -> bytes:
    with open(path, "rb") as f:
        return f.read(size)


def _unzipped(stream: IO[bytes]) -> io.BufferedReader:
    """The stream, gunzipped if it is gzip (several members read as one), buffered."""
    buffered = _buffered(stream)
    if buffered.peek(2)[:2] == GZIP:
        return io.BufferedReader(gzip.GzipFile(fileobj=buffered))
    return buffered


def _buffered(stream: IO[bytes]) -> io.BufferedReader:
    if isinstance(stream, io.BufferedReader):
        return stream
    return io.BufferedReader(stream)  # type: ignore[arg-type]


@contextmanager
def _broken(shown: str, member: str | None) -> Iterator[None]:
    try:
        yield
    except _BROKEN as e:
        where = shown if member is None else f"{shown}: {member}"
        raise BadInput(f"{where}: cannot be read as gzip or zip ({e})") from None


def streams(path: str, shown: str) -> Iterator[tuple[str | None, io.BufferedReader]]:
    """The input's files, decompressed: itself, or a zip's members in name order."""
    if head(path) == ZIP:
        with _broken(shown, None), zipfile.ZipFile(path) as archive:
            members = sorted(
                (i for i in archive.infolist() if not i.is_dir()), key=lambda i: i.filename
            )
            for info in members:
                with _broken(shown, info.filename), archive.open(info) as raw:
                    yield info.filename, _unzipped(raw)
        return
    with _broken(shown, None), open(path, "rb") as f:
        yield None, _unzipped(f)


def is_csv(stream: io.BufferedReader, name: str) -> bool:
    """CSV by its name (.csv, .csv.gz), else by its content: JSON lines begin with '{'."""
    bare = name.lower().removesuffix(".gz")
    if bare.endswith(".csv"):
        return True
    if bare.endswith((".json", ".jsonl", ".ndjson")):
        return False
    start = stream.peek(64 * 1024).removeprefix(_BOM).lstrip()
    return bool(start) and start[:1] not in (b"{", b"[")


def records(path: str, shown: str, tables: bool) -> Iterator[tuple[Place, Any]]:
    """Each record of the input, decoded (a JSON value; with `tables`, a CSV or Parquet
    row as a dict of its non-empty cells, times as epoch ms), with its place. Malformed
    JSON is named by its place."""
    if tables and head(path) == PARQUET:
        yield from _parquet_rows(path, shown)
        return
    for member, stream in streams(path, shown):
        with _broken(shown, member):
            if tables and is_csv(stream, member or shown):
                yield from _csv_rows(stream, shown, member)
                continue
            for number, raw in enumerate(stream, start=1):
                if not raw.strip():
                    continue
                place = Place(shown, member, number)
                try:
                    value = _decode(raw)
                except msgspec.DecodeError as e:
                    raise BadInput(f"{place}: malformed JSON ({e})") from None
                yield place, value


def _csv_rows(
    stream: io.BufferedReader, shown: str, member: str | None
) -> Iterator[tuple[Place, Any]]:
    csv.field_size_limit(sys.maxsize)
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    reader = csv.reader(text)
    try:
        header = next(reader, None)
        if header is None:
            return
        columns = [c.strip() for c in header]
        for row_number, row in enumerate(reader, start=1):
            place = Place(shown, member, reader.line_num, row_number)
            if not any(cell.strip() for cell in row):
                continue
            if len(row) > len(columns):
                raise BadInput(f"{place}: {len(row)} cells, but the header names {len(columns)}")
            yield place, {c: v for c, v in zip(columns, row, strict=False) if v != ""}
    except UnicodeDecodeError as e:
        where = shown if member is None else f"{shown}: {member}"
        raise BadInput(f"{where}: line {reader.line_num + 1}: not UTF-8 text ({e})") from None
    except csv.Error as e:
        where = shown if member is None else f"{shown}: {member}"
        raise BadInput(f"{where}: line {reader.line_num}: malformed CSV ({e})") from None


def _parquet_rows(path: str, shown: str) -> Iterator[tuple[Place, Any]]:
    """A Parquet file's rows, their times (TIMESTAMP, UTC when it has no zone) as epoch ms."""
    try:
        batches = pq.ParquetFile(path).iter_batches(batch_size=8192)
        row_number = 0
        for batch in batches:
            for row in batch.to_pylist():
                row_number += 1
                cells = {k: _plain(v) for k, v in row.items() if v is not None and v != ""}
                yield Place(shown, None, None, row_number), cells
    except (pa.ArrowException, OSError) as e:
        raise BadInput(f"{shown}: cannot be read as Parquet ({e})") from None


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        at = value if value.tzinfo else value.replace(tzinfo=UTC)
        return (at - _EPOCH) // timedelta(milliseconds=1)
    return value
