"""lull's native API, fast: a well-formed body of canonical records decoded straight into
typed records (msgspec) and events, properties kept as the JSON text they came in.

Anything this path is not sure of (a type error, an ISO time it cannot read, a name that
is refused, properties that are not a small object, a large event) makes it give up on
the whole body and return None: the caller then takes the exact path (`records.to_record`
per record), which says precisely what is wrong and where, and keeps the good records.
So both paths accept exactly the same events.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from lull.errors import BadInput
from lull.ingest.records import MAX_ID, MAX_NAME, check_clock_fix
from lull.model import MAX_EPOCH_MS, SESSION_CONCLUDED, parse_time
from lull.server.bodies import MAX_DEPTH, MAX_EVENT
from lull.server.live import Event

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME)]
_EMPTY = msgspec.Raw(b"{}")
# Properties whose braces and brackets are this few cannot nest deeper than the limit.
_BRACKETS = MAX_DEPTH - 2
# Over this, an event may be over MAX_EVENT once its other fields are counted: let the
# exact path measure it.
_LARGE = MAX_EVENT - 4 * 1024


class _Record(msgspec.Struct):
    message_id: Id
    profile_id: Id
    name: Name
    ts: int | str
    sent_at: int | str | None = None
    received_at: int | str | None = None
    properties: msgspec.Raw = _EMPTY


_decode = msgspec.json.Decoder(list[_Record]).decode


def _time(value: int | str) -> int:
    if type(value) is int and 0 <= value <= MAX_EPOCH_MS:
        return value
    return parse_time(value, "time")  # BadInput: the exact path names the field


def events(body: bytes, source: str, arrived: int) -> list[Event] | None:
    """The events of a JSON array body, or None when the exact path must judge it."""
    if body.lstrip()[:1] != b"[":
        return None  # NDJSON
    try:
        records = _decode(body)
        out = []
        for r in records:
            if r.name == SESSION_CONCLUDED:
                return None
            ts = _time(r.ts)
            sent = None if r.sent_at is None else _time(r.sent_at)
            if r.received_at is not None:
                _time(r.received_at)
            check_clock_fix(ts, sent, arrived, "sent_at")
            raw = bytes(r.properties)
            if raw == b"null":
                raw = b"{}"
            elif raw[:1] != b"{" or len(raw) > _LARGE:
                return None
            if raw.count(b"{") + raw.count(b"[") > _BRACKETS:
                return None
            out.append(
                Event(r.message_id, r.profile_id, r.name, ts, source, sent, {}, raw.decode())
            )
        return out
    except (msgspec.ValidationError, msgspec.DecodeError, BadInput, UnicodeDecodeError):
        return None
