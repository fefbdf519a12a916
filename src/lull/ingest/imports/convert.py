"""A tool's export -> canonical NDJSON, in two passes over the input.

1. Every record that can make an identity link (tools.LINKING: the lines that name an
   identify call) is converted once to find the links. The links are applied in the order of
   their identify calls' times, as the live server applies each (server/identity.py):
   an export holds the whole history, so every event is resolved knowing every link, as
   if each identify call had reached the live server before any event.
2. Every record is converted, its anonymous id resolved through those links, checked as
   a canonical record (records.to_record; BadInput names the first bad one) and written.

The records are then put in the order the tool received them (`received_at`, ties in file
order), the order in which they would have reached a live server: the import replays its
file in order on R5's clock.
"""

from __future__ import annotations

import mmap
import os
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from lull.errors import BadInput
from lull.ingest.imports.inputs import Place, records
from lull.ingest.imports.tools import LINKING, TABLE_TOOLS, TOOLS, Converted
from lull.ingest.records import to_record
from lull.server.identity import Link, Resolve, Target, follow, news

_encode = msgspec.json.Encoder().encode
_LAST = np.iinfo(np.int64).max  # the sort key of a record without `received_at`: at the end


@dataclass(slots=True)
class Result:
    """What a conversion found besides the events: the identity links new to the store,
    and the profile properties the events set (profile, properties, time), in arrival order."""

    records: int = 0
    links: list[Link] = field(default_factory=list)
    traits: list[tuple[str, dict[str, Any], int]] = field(default_factory=list)


def convert(
    tool: str,
    path: str,
    shown: str,
    out: str,
    *,
    source: str,
    known: dict[str, Target],
    now: int,
    progress: Callable[[str], None],
) -> Result:
    """Write `path` (an export of `tool`) to `out` as canonical NDJSON. `known`: the
    store's identity links; BadInput names the input, the line (or row) and the field."""
    to_lull = TOOLS[tool]
    tables = tool in TABLE_TOOLS

    def converted(
        resolve: Resolve, only: tuple[bytes, ...] = ()
    ) -> Iterator[tuple[Place, Converted]]:
        for place, record in records(path, shown, tables, only):
            try:
                yield place, to_lull(record, source, resolve, now)
            except BadInput as e:
                raise BadInput(f"{place}: {e.message}") from None

    progress(f"read the {tool} export")
    found: list[tuple[int, int, str, str]] = []
    linking = converted(lambda anonymous, _at: anonymous, LINKING.get(tool, ()))
    for order, (_place, got) in enumerate(linking):
        if got.link is not None:
            found.append((got.event.ts, order, got.link[0], got.link[1]))
    aliases = dict(known)

    def resolve(anonymous: str, at: int | None) -> str:
        return follow(aliases, anonymous, at)

    result = Result()
    for ts, _order, anonymous, profile in sorted(found):
        tie = Target(profile, ts)
        if news(resolve, anonymous, tie):
            aliases[anonymous] = tie
            result.links.append((anonymous, tie))

    progress(f"convert the {tool} export")
    keys, starts = array("q"), array("q")
    traits: list[tuple[int, str, dict[str, Any], int]] = []
    offset = 0
    with open(out, "wb") as f:
        for place, got in converted(resolve):
            line = _canonical(got, place, now)
            key = _LAST if got.received_at is None else got.received_at
            keys.append(key)
            starts.append(offset)
            offset += f.write(line)
            if got.traits:
                traits.append((key, got.event.profile_id, got.traits, got.event.ts))
    result.records = len(keys)
    result.traits = [(p, t, at) for _k, p, t, at in sorted(traits, key=lambda x: x[0])]
    arrival = np.asarray(keys, dtype=np.int64)
    if len(arrival) and np.any(arrival[1:] < arrival[:-1]):
        _reorder(out, np.argsort(arrival, kind="stable"), starts.tolist(), offset)
    return result


def _canonical(got: Converted, place: Place, now: int) -> bytes:
    """The canonical record of a converted event, checked as an import checks it."""
    e = got.event
    record: dict[str, Any] = {
        "message_id": e.message_id,
        "profile_id": e.profile_id,
        "name": e.name,
        "ts": e.ts,
        "source": e.source,
    }
    if got.received_at is not None:
        record["received_at"] = got.received_at
        if e.sent_at is not None:
            record["sent_at"] = e.sent_at
    record["properties"] = e.properties
    try:
        to_record(record, now=now)
    except BadInput as err:
        raise BadInput(f"{place}: {err.message}") from None
    return _encode(record) + b"\n"


def _reorder(path: str, order: npt.NDArray[np.intp], lo: list[int], size: int) -> None:
    """Rewrite `path`'s lines in `order` (line i spans lo[i] to the next line's start)."""
    hi = [*lo[1:], size]
    tmp = f"{path}.sorted"
    with (
        open(path, "rb") as src,
        open(tmp, "wb") as dst,
        mmap.mmap(src.fileno(), 0, access=mmap.ACCESS_READ) as view,
    ):
        for i in order.tolist():
            dst.write(view[lo[i] : hi[i]])
    os.replace(tmp, path)
