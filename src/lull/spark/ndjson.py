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

from lull.errors import BadInput
from lull.ingest.records import MAX_ID, MAX_NAME, check_name, check_properties, corrected_time
from lull.model import MAX_EPOCH_MS, parse_time
from lull.spark.landing import COLUMNS, parse_line

if TYPE_CHECKING:
    import pyarrow as pa

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID)]
Time = Annotated[int, msgspec.Meta(ge=0, le=MAX_EPOCH_MS)] | str


class _Event(msgspec.Struct):
    """A canonical record with `received_at` (the stream needs it); other fields ignored."""

    message_id: Id
    profile_id: Id
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME)]
    source: Literal["web", "ios", "android", "api"]
    ts: Time
    received_at: Time
    sent_at: Time | None = None
    properties: dict[str, Any] | None = None


_file = msgspec.json.Decoder(_Event)  # decode_lines: one value a line, in C
_line = msgspec.json.Decoder(_Event)
_encode = msgspec.json.Encoder().encode
# what str.splitlines also takes for the end of a line (besides "\n")
_SEPARATORS = frozenset("\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")


def _time(value: int | str) -> int:
    return value if isinstance(value, int) else parse_time(value, "")


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
