"""A landing file's lines -> parsed rows as Arrow columns, most of them in one msgspec call.

`landing.parse_line` checks a line with lull's exact validator (`ingest.records.to_record`),
a few microseconds of Python a line. Here a whole file is first decoded at once into
typed structs whose types and bounds are the validator's own (msgspec checks them in C;
the name and the properties then go through the validator's own checks): a line that
passes is one `to_record` accepts, and the row is built from it as `parse_line` builds
it (tests/test_spark_ndjson.py compares the two on good, bad and odd lines). Any line
that does not pass (a bad line, a clock line, an ISO time that does not parse) goes
through `parse_line`, so the rows, and the reasons of the rejected ones, are exactly its.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
import numpy as np
import numpy.typing as npt
import pyarrow.compute as pc

from lull.errors import BadInput
from lull.ingest.records import (
    MAX_ID,
    MAX_NAME,
    MAX_PROPERTIES_DEPTH,
    check_name,
    check_properties,
    corrected_time,
)
from lull.model import MAX_EPOCH_MS, MAX_EVENT, SESSION_CONCLUDED, parse_time
from lull.spark.landing import COLUMNS, parse_line

if TYPE_CHECKING:
    import pyarrow as pa

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID)]
Time = Annotated[int, msgspec.Meta(ge=0, le=MAX_EPOCH_MS)] | str


class _Fields(msgspec.Struct):
    """A canonical record's fields with `received_at` (the stream needs it), but its
    properties; other fields ignored."""

    message_id: Id
    profile_id: Id
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME)]
    source: Literal["web", "ios", "android", "api"]
    ts: Time
    received_at: Time
    sent_at: Time | None = None


class _Event(_Fields):
    """A canonical record, its properties decoded."""

    properties: dict[str, Any] | None = None


_file = msgspec.json.Decoder(_Event)  # decode_lines: one value a line, in C
_line = msgspec.json.Decoder(_Event)
_encode = msgspec.json.Encoder().encode
# what str.splitlines also takes for the end of a line (besides "\n")
_SEPARATORS = frozenset("\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")


def _time(value: int | str) -> int:
    return value if isinstance(value, int) else parse_time(value, "")


I64 = npt.NDArray[np.int64]
_Good = tuple[str, str, str, str, int, int, str]


def _row(e: _Event) -> _Good | None:
    """(message_id, profile_id, name, source, ts fixed, received_at, properties), or None
    when the exact validator must look at the line (it may refuse it)."""
    try:
        check_name(e.name, "name")
        ts, r = _time(e.ts), _time(e.received_at)
        sent = None if e.sent_at is None else _time(e.sent_at)
        props = {} if e.properties is None else check_properties(e.properties, "properties")
    except BadInput:
        return None
    fixed = corrected_time(ts, sent, r)
    if sent is not None and fixed < 0:
        return None
    text = _encode(props).decode()
    return (e.message_id, e.profile_id, e.name, e.source, fixed, r, text)


def file_batch(text: str, origin: str) -> pa.RecordBatch:
    """A file's non-blank lines (numbered from 1 as `str.splitlines` counts them) as rows
    of `landing.PARSED_SCHEMA`."""
    import pyarrow as pa

    numbered = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    events: list[_Event | None] = []
    if not _SEPARATORS.intersection(text):  # then str.splitlines cuts at "\n" only
        with contextlib.suppress(msgspec.ValidationError, msgspec.DecodeError):
            events = list(_file.decode_lines("\n".join(x for _, x in numbered)))
    if len(events) != len(numbered):  # a line that is not a good event: line by line
        events = [_one(line) for _, line in numbered]
    rows = [_full(row, origin, number) if (row := None if e is None else _row(e)) else
            tuple(parse_line(line, origin, number).values())
            for (number, line), e in zip(numbered, events, strict=True)]  # fmt: skip
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in COLUMNS]
    types = {c: pa.int64() if c in ("ts", "r", "pos") else pa.string() for c in COLUMNS}
    return pa.RecordBatch.from_arrays(
        [pa.array(c, type=t) for c, t in zip(columns, types.values(), strict=True)],
        schema=pa.schema(list(types.items())),
    )


def _full(
    row: tuple[str, str, str, str, int, int, str], origin: str, number: int
) -> tuple[Any, ...]:
    """A good row in the order of `landing.COLUMNS`, as `parse_line` makes it."""
    message_id, profile_id, name, source, ts, r, props = row
    return (profile_id, message_id, message_id, profile_id, name, ts, source, r, props, origin,
            number, None, None)  # fmt: skip


def _one(line: str) -> _Event | None:
    try:
        return _line.decode(line)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None


# --- a whole file column-wise ------------------------------------------------------------


class _Fast(_Fields):
    """A canonical record, its properties kept as their JSON text (checked for syntax
    only)."""

    properties: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"null"))


_fast = msgspec.json.Decoder(_Fast)
# What `str.splitlines` also takes for the end of a line, as UTF-8 (found by memchr).
_ODD_ENDS = tuple(c.encode() for c in sorted(_SEPARATORS))
_ODD_ASCII = tuple(end for end in _ODD_ENDS if end.isascii())
# Properties this short and with this few brackets are within `check_properties`' limits
# however lull encodes them (the import's own bound, `ingest.ndjson`); others are checked
# by the exact validator.
_SHORT = MAX_EVENT // 4


_ISO, _NONE = -1, -2  # a time given as text (the exact validator reads it); none given


def _times(events: list[_Fast]) -> tuple[I64, I64, I64]:
    """ts, received_at and sent_at as int64 columns, `_ISO` where a time is text (and for
    sent_at `_NONE` where there is none)."""
    import pyarrow as pa

    out = []
    for values, missing in (([e.ts for e in events], _ISO), ([e.received_at for e in events],
                            _ISO), ([e.sent_at for e in events], _NONE)):  # fmt: skip
        try:
            column = pa.array(values, pa.int64()).fill_null(missing).to_numpy()
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # some are text
            column = np.array([v if type(v) is int else _ISO if v is not None else missing
                               for v in values], dtype=np.int64)  # fmt: skip
        out.append(column)
    return out[0], out[1], out[2]


def file_table(data: bytes, origin: str) -> pa.Table:
    """A landing file's rows, as `file_batch` gives them (the same rows, reasons and line
    numbers, tests/test_spark_ndjson.py), decoded in one msgspec call and checked column
    by column: a line with anything the columns cannot decide (an ISO time, a system
    event's name, long or deep properties, a clock fix before 1970) goes through
    `landing.parse_line`; a file with a line msgspec cannot decode, or other line ends
    than "\n", through `file_batch`."""
    import pyarrow as pa

    def exact() -> pa.Table:
        return pa.Table.from_batches([file_batch(data.decode("utf-8", errors="replace"), origin)])

    if any(end in data for end in _ODD_ASCII) or (
        not data.isascii() and any(end in data for end in _ODD_ENDS)
    ):
        return exact()
    try:  # decode_lines passes over blank lines
        events = _fast.decode_lines(data)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return exact()
    lines: list[bytes] | None = None
    numbered: list[int] | npt.NDArray[np.int64]
    if len(events) == data.count(b"\n") + (not data.endswith(b"\n")):  # no blank line
        numbered = np.arange(1, len(events) + 1, dtype=np.int64)
    else:
        lines = data.split(b"\n")
        numbered = [n for n, line in enumerate(lines, start=1) if line.strip()]
        if len(events) != len(numbered):
            return exact()
    n = len(events)
    ts, r, sent = _times(events)
    props = pa.array([bytes(e.properties) for e in events], pa.binary()).cast(pa.string())
    names = pa.array([e.name for e in events], pa.string())
    brackets = pc.add(pc.count_substring(props, "{"), pc.count_substring(props, "["))
    checks = [
        pc.less_equal(pc.binary_length(props), _SHORT),
        pc.or_(pc.starts_with(props, "{"), pc.equal(props, "null")),
        pc.less_equal(brackets, MAX_PROPERTIES_DEPTH),
        pc.not_equal(names, SESSION_CONCLUDED),
    ]
    fast = (ts >= 0) & (r >= 0) & (sent != _ISO)
    for check in checks:
        fast &= np.asarray(check.to_numpy(zero_copy_only=False), dtype=bool)
    given = sent != _NONE
    fixed = np.minimum(np.where(given, ts + (r - sent), ts), r)
    fast &= ~(given & (fixed < 0))
    r_i = r
    props = pc.if_else(pc.equal(props, "null"), "{}", props)
    keep = pa.array(fast)
    pos = np.asarray(numbered, dtype=np.int64)
    ids = pa.array([e.message_id for e in events], pa.string())
    profiles = pa.array([e.profile_id for e in events], pa.string())
    sources = pa.array([e.source for e in events], pa.string())
    good = pa.table(
        {"key": profiles, "dedupe": ids, "message_id": ids, "profile_id": profiles,
         "name": names, "ts": pa.array(fixed), "source": sources,
         "r": pa.array(r_i), "properties": props, "origin": pa.array([origin] * n, pa.string()),
         "pos": pa.array(pos), "error": pa.nulls(n, pa.string()), "raw": pa.nulls(n, pa.string())}
    ).filter(keep)  # fmt: skip
    others = np.flatnonzero(~fast).tolist()
    if not others:
        return good
    lines = lines or data.split(b"\n")
    at = [int(numbered[i]) for i in others]
    rows = [parse_line(lines[n - 1].decode("utf-8", errors="replace"), origin, n) for n in at]
    types = {c: pa.int64() if c in ("ts", "r", "pos") else pa.string() for c in COLUMNS}
    rest = pa.table({c: pa.array([row[c] for row in rows], t) for c, t in types.items()})
    return pa.concat_tables([good, rest])
