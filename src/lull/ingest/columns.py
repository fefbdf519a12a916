"""A request's validated events as columns: what the front door logs and the engine reads.

The fast paths fill these straight from decoded records (no object per event); the
exact paths turn their events into them with `EventColumns.of`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec
import pyarrow as pa

_encode = msgspec.json.Encoder().encode


class _Event(Protocol):
    @property
    def message_id(self) -> str: ...
    @property
    def profile_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def ts(self) -> int: ...
    @property
    def sent_at(self) -> int | None: ...
    @property
    def properties(self) -> dict[str, Any]: ...
    @property
    def raw(self) -> str | None: ...


@dataclass(slots=True)
class EventColumns:
    """Validated canonical events of one request (one source), column by column;
    `properties` holds each event's properties as JSON text (UTF-8 bytes or str, or an
    Arrow string column)."""

    message_ids: list[str]
    profile_ids: list[str]
    names: list[str]
    ts: list[int]
    sent_at: list[int | None]
    properties: Sequence[bytes | str] | pa.Array
    source: str | list[str]  # one for all (the fast paths), or each event's

    def __len__(self) -> int:
        return len(self.message_ids)

    @classmethod
    def of(cls, events: Sequence[_Event]) -> EventColumns:
        """Columns of events built one by one (the exact paths)."""
        sources = [e.source for e in events]
        return cls(
            [e.message_id for e in events],
            [e.profile_id for e in events],
            [e.name for e in events],
            [e.ts for e in events],
            [e.sent_at for e in events],
            [e.raw if e.raw is not None else _encode(e.properties).decode() for e in events],
            sources[0] if len(set(sources)) == 1 else sources,
        )

    def take(self, rows: Sequence[int]) -> EventColumns:
        """These rows only, in this order."""
        props = self.properties
        return EventColumns(
            [self.message_ids[i] for i in rows],
            [self.profile_ids[i] for i in rows],
            [self.names[i] for i in rows],
            [self.ts[i] for i in rows],
            [self.sent_at[i] for i in rows],
            props.take(pa.array(rows, pa.int64()))
            if isinstance(props, pa.Array)
            else [props[i] for i in rows],
            self.source if isinstance(self.source, str) else [self.source[i] for i in rows],
        )
