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
    linking = converted(lambda anonymous, _at: anonymous, LINKING.get(tool, ()))
    aliases = dict(known)
    result = Result(links=_apply(_links_of(linking), aliases))

    def resolve(anonymous: str, at: int | None) -> str:
        return follow(aliases, anonymous, at)

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


@dataclass(slots=True)
class _Links:
    """The links an export makes, compactly (every Amplitude event of a signed-in user
    makes one): per link its time and the codes of its anonymous id and profile."""

    ids: dict[str, int] = field(default_factory=dict)
    ts: array[int] = field(default_factory=lambda: array("q"))
    anonymous: array[int] = field(default_factory=lambda: array("q"))
    profile: array[int] = field(default_factory=lambda: array("q"))

    def add(self, at: int, anonymous: str, profile: str) -> None:
        self.ts.append(at)
        self.anonymous.append(self.ids.setdefault(anonymous, len(self.ids)))
        self.profile.append(self.ids.setdefault(profile, len(self.ids)))


def _links_of(converted: Iterator[tuple[Place, Converted]]) -> _Links:
    found = _Links()
    for _place, got in converted:
        if got.link is not None:
            found.add(got.event.ts, *got.link)
    return found


def _apply(found: _Links, aliases: dict[str, Target]) -> list[Link]:
    """Apply the links to `aliases` as the live server would, each anonymous id's in the
    order of their times (ties: file order); returns those that changed something.

    Of a run of links of one anonymous id to the same profile (in time order) only the
    first can change anything (identity.news), so only the first of each run is applied."""
    names = list(found.ids)
    at = np.asarray(found.ts, dtype=np.int64)
    anon = np.asarray(found.anonymous, dtype=np.int64)
    profile = np.asarray(found.profile, dtype=np.int64)
    order = np.lexsort((at, anon))  # stable: equal times stay in file order
    at, anon, profile = at[order], anon[order], profile[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = (anon[1:] != anon[:-1]) | (profile[1:] != profile[:-1])

    def resolve(anonymous: str, when: int | None) -> str:
        return follow(aliases, anonymous, when)

    changed: list[Link] = []
    firsts = zip(anon[first].tolist(), profile[first].tolist(), at[first].tolist(), strict=True)
    for a, p, t in firsts:
        tie = Target(names[p], t)
        if news(resolve, names[a], tie):
            aliases[names[a]] = tie
            changed.append((names[a], tie))
    return changed


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
