"""lull's native API, fast: a well-formed body of canonical records decoded straight into
typed records (msgspec) and then columns, properties kept as the JSON text they came in.

Anything this path is not sure of (a type error, an ISO time it cannot read, a name that
is refused, properties that are not a small object, a large event) makes it give up on
the whole body and return None: the caller then takes the exact path (`records.to_record`
per record), which says precisely what is wrong and where, and keeps the good records.
So both paths accept exactly the same events.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
import numpy as np
import pyarrow as pa

from lull.errors import BadInput
from lull.ingest.columns import EventColumns
from lull.ingest.records import MAX_ID, MAX_NAME, check_clock_fix
from lull.model import MAX_DEPTH, MAX_EPOCH_MS, MAX_EVENT, SESSION_CONCLUDED, parse_time

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME)]
Epoch = Annotated[int, msgspec.Meta(ge=0, le=MAX_EPOCH_MS)]
_EMPTY = msgspec.Raw(b"{}")
# Properties whose braces and brackets are this few cannot nest deeper than the limit.
_BRACKETS = MAX_DEPTH - 2
_BRACE, _BRACKET = ord("{"), ord("[")
# Over this, an event may be over MAX_EVENT once its other fields are counted: let the
# exact path measure it.
_LARGE = MAX_EVENT - 4 * 1024


class _Record(msgspec.Struct, gc=False):  # (no cycles: not tracked by the GC)
    message_id: Id
    profile_id: Id
    name: Name
    ts: Epoch | str
    sent_at: Epoch | str | None = None
    received_at: Epoch | str | None = None
    properties: msgspec.Raw = _EMPTY


_decode = msgspec.json.Decoder(list[_Record]).decode


def _time(value: int | str) -> int:
    """Epoch ms (checked while decoding) or an ISO time (read here; BadInput if not)."""
    return value if type(value) is int else parse_time(value, "time")


def _times(values: list[int | str]) -> list[int]:
    if str not in set(map(type, values)):
        return values  # type: ignore[return-value]  # all int: checked by the decoder
    return [_time(v) for v in values]


def _properties(raws: list[msgspec.Raw]) -> pa.Array | None:
    """The properties' JSON texts as one string column (`null` as `{}`); None when one is
    not a small object.

    Each is a whole JSON value (the decoder checked it), so it is an object if it starts
    with `{`; and if all of them together hold few braces and brackets beyond their own
    outer ones, none can nest deeply. Asked of all at once, over their texts joined (NumPy,
    no object per value), and value by value only when that does not settle it."""
    n = len(raws)
    joined = b"".join(raws)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(np.fromiter(map(len, raws), dtype=np.int32, count=n), out=offsets[1:])
    text = np.frombuffer(joined, dtype=np.uint8)
    objects = text[offsets[:-1]] == _BRACE if n else np.ones(0, dtype=bool)
    opening = (text == _BRACE) | (text == _BRACKET)
    if not objects.all():
        if any(bytes(raws[i]) != b"null" for i in np.flatnonzero(~objects)):
            return None
        return _properties([r if ok else _EMPTY for r, ok in zip(raws, objects, strict=True)])
    if n and int(np.diff(offsets).max()) > _LARGE:
        return None  # the exact path measures it
    if int(np.count_nonzero(opening)) - n >= _BRACKETS:  # then value by value
        counts = np.add.reduceat(opening, offsets[:-1], dtype=np.int64)
        if (counts > _BRACKETS).any():
            return None
    if not joined.isascii():
        try:
            joined.decode()  # the decoder skipped them: UTF-8 is checked here
        except UnicodeDecodeError:
            return None
    return pa.Array.from_buffers(
        pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(joined)]
    )


def columns(body: bytes, source: str, arrived: int) -> EventColumns | None:
    """The events of a JSON array body, or None when the exact path must judge it.
    Column by column: no object per event beyond what the decoder makes."""
    if body.lstrip()[:1] != b"[":
        return None  # NDJSON
    try:
        records = _decode(body)
        names = [r.name for r in records]
        if SESSION_CONCLUDED in names:
            return None
        ts = _times([r.ts for r in records])
        sent: list[int | None] = [r.sent_at for r in records]  # type: ignore[misc]
        if any(s is not None for s in sent):
            sent = [None if s is None else _time(s) for s in sent]
            for t, s in zip(ts, sent, strict=True):
                check_clock_fix(t, s, arrived, "sent_at")
        received = [r.received_at for r in records if r.received_at is not None]
        if received:
            _times(received)
        props = _properties([r.properties for r in records])
        if props is None:
            return None
        ids = [r.message_id for r in records]
        profiles = [r.profile_id for r in records]
        return EventColumns(ids, profiles, names, ts, sent, props, source)
    except (msgspec.ValidationError, msgspec.DecodeError, BadInput, UnicodeDecodeError):
        return None
