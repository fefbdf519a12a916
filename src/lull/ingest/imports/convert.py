"""A tool's export -> canonical NDJSON: one pass that converts, then (when needed) one
that rewrites.

1. Every record is converted by its tool's live function, checked as a canonical record
   (records.to_record; BadInput names the first bad one) and written. The identity links
   the records make are gathered; an event whose profile the live function took from an
   anonymous id (through `resolve`) is written with that id, and noted.
2. The links are applied in the order of their times, as the live server applies each
   (server/identity.py), after the store's own: an export holds the whole history, so
   every event is resolved knowing every link, as if each identify call had reached the
   live server before any event.
3. The file is rewritten in the order the tool received the records (`received_at`, ties
   in file order), the order in which they would have reached a live server (the import
   replays its file in order on R5's clock), and the noted events whose anonymous id a
   link ties to a profile by their time get that profile.
"""

from __future__ import annotations

import mmap
import os
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from lull.errors import BadInput
from lull.ingest.imports.inputs import Place, records
from lull.ingest.imports.tools import TABLE_TOOLS, TOOLS, Converted
from lull.ingest.records import to_record
from lull.server.identity import Link, Target, follow, news

_encode = msgspec.json.Encoder().encode
_LAST = np.iinfo(np.int64).max  # the sort key of a record without `received_at`: at the end
_NEVER = np.iinfo(np.int64).max  # the `since` of an id tied to nobody
_PROFILE = b'"profile_id":'  # the second key of every line written (after message_id)


@dataclass(slots=True)
class Result:
    """What a conversion found besides the events: the identity links new to the store,
    and the profile properties the events set (profile, properties, time), in arrival order."""

    records: int = 0
    links: list[Link] = field(default_factory=list)
    traits: list[tuple[str, dict[str, Any], int]] = field(default_factory=list)


def _q() -> array[int]:
    return array("q")


@dataclass(slots=True)
class _Found:
    """What the conversion pass notes, compactly (int64 arrays; ids as codes): per line
    written, its arrival, its start, and the code of the anonymous id its profile was
    taken from (-1: none) with the event's time; per link, its time, anonymous id and
    profile; the profile properties set, with their event's anonymous id (or -1)."""

    ids: dict[str, int] = field(default_factory=dict)
    arrival: array[int] = field(default_factory=_q)
    start: array[int] = field(default_factory=_q)
    anonymous: array[int] = field(default_factory=_q)
    ts: array[int] = field(default_factory=_q)
    link_ts: array[int] = field(default_factory=_q)
    link_anonymous: array[int] = field(default_factory=_q)
    link_profile: array[int] = field(default_factory=_q)
    traits: list[tuple[int, str, dict[str, Any], int, int]] = field(default_factory=list)

    def code(self, text: str) -> int:
        return self.ids.setdefault(text, len(self.ids))


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
    found = _Found()
    asked: list[str] = []  # the anonymous id the live function resolved, if it did

    def resolve(anonymous: str, _at: int | None) -> str:
        asked.append(anonymous)
        return anonymous

    progress(f"convert the {tool} export")
    offset = 0
    with open(out, "wb") as f:
        for place, record in records(path, shown, tool in TABLE_TOOLS):
            asked.clear()
            try:
                got = to_lull(record, source, resolve, now)
            except BadInput as e:
                raise BadInput(f"{place}: {e.message}") from None
            key = _LAST if got.received_at is None else got.received_at
            anonymous = found.code(asked[0]) if asked else -1
            found.arrival.append(key)
            found.start.append(offset)
            found.anonymous.append(anonymous)
            found.ts.append(got.event.ts)
            offset += f.write(_canonical(got, place, now))
            if got.link is not None:
                found.link_ts.append(got.event.ts)
                found.link_anonymous.append(found.code(got.link[0]))
                found.link_profile.append(found.code(got.link[1]))
            if got.traits:
                found.traits.append(
                    (key, got.event.profile_id, got.traits, got.event.ts, anonymous)
                )

    progress(f"resolve the {tool} export's identities")
    aliases = dict(known)
    result = Result(records=len(found.start), links=_apply(found, aliases))
    names = list(found.ids)
    result.traits = [
        (profile if code < 0 else follow(aliases, names[code], at), props, at)
        for _key, profile, props, at, code in sorted(found.traits, key=lambda x: x[0])
    ]
    tied = _tied(found, aliases)
    arrival = np.asarray(found.arrival, dtype=np.int64)
    if np.any(arrival[1:] < arrival[:-1]) or np.any(tied >= 0):
        order = np.argsort(arrival, kind="stable")
        _rewrite(out, order, found.start.tolist(), offset, found, tied)
    return result


def _apply(found: _Found, aliases: dict[str, Target]) -> list[Link]:
    """Apply the links to `aliases` as the live server would, each anonymous id's in the
    order of their times (ties: file order); returns those that changed something.

    Of a run of links of one anonymous id to the same profile (in time order) only the
    first can change anything (identity.news), so only the first of each run is applied."""
    names = list(found.ids)
    at = np.asarray(found.link_ts, dtype=np.int64)
    anon = np.asarray(found.link_anonymous, dtype=np.int64)
    profile = np.asarray(found.link_profile, dtype=np.int64)
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


def _tied(found: _Found, aliases: dict[str, Target]) -> npt.NDArray[np.int64]:
    """Per line, the code of the profile its anonymous id is tied to by its event's time
    (identity.follow), or -1 where it stays as written."""
    size = max(len(found.ids), 1)  # (an export of known users only names no anonymous id)
    since = np.full(size, _NEVER, dtype=np.int64)
    target = np.full(size, -1, dtype=np.int64)
    for anonymous, tie in aliases.items():
        code = found.ids.get(anonymous)
        if code is not None:
            since[code] = np.iinfo(np.int64).min if tie.since is None else tie.since
            target[code] = found.code(tie.profile)
    anon = np.asarray(found.anonymous, dtype=np.int64)
    ts = np.asarray(found.ts, dtype=np.int64)
    safe = np.maximum(anon, 0)
    moved = (anon >= 0) & (ts >= since[safe])
    return np.where(moved, target[safe], -1)


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


def _rewrite(
    path: str,
    order: npt.NDArray[np.intp],
    lo: list[int],
    size: int,
    found: _Found,
    tied: npt.NDArray[np.int64],
) -> None:
    """Rewrite `path`'s lines in `order` (line i spans lo[i] to the next line's start),
    line i's profile id replaced by the id of code tied[i] where that is set."""
    hi = [*lo[1:], size]
    names = list(found.ids)
    anonymous = found.anonymous
    moved = tied.tolist()
    tmp = f"{path}.sorted"
    with (
        open(path, "rb") as src,
        open(tmp, "wb") as dst,
        mmap.mmap(src.fileno(), 0, access=mmap.ACCESS_READ) as view,
    ):
        for i in order.tolist():
            line = view[lo[i] : hi[i]]
            if moved[i] >= 0:
                was = _PROFILE + _encode(names[anonymous[i]])
                line = line.replace(was, _PROFILE + _encode(names[moved[i]]), 1)
            dst.write(line)
    os.replace(tmp, path)
