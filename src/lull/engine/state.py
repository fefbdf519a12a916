"""The engine's per-profile state: plain data, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NONE = int(np.iinfo(np.int64).min)  # "no value" in the engines' int64 state arrays


@dataclass(slots=True, frozen=True)
class Arrival:
    """One eligible event as the engine sees it (R1 already applied, R5's clock fix done)."""

    ts: int
    seq: int
    message_id: str
    source: str


@dataclass(slots=True)
class Session:
    session_id: str
    profile_id: str
    first_ts: int
    last_ts: int
    events: int
    source: str
    key: int = -1  # free for the caller: the store's key for this session

    @property
    def length_s(self) -> int:
        return (self.last_ts - self.first_ts) // 1000


@dataclass(slots=True)
class ProfileState:
    """What the engine remembers of one profile between arrivals.

    `horizon` is the last event time of the profile's latest concluded session + timeout.
    `history` holds the (first_ts, last_ts) of its concluded sessions, sorted; it is only
    needed for an event older than the horizon, so callers may leave it None (not loaded)
    and load it when `needs_history` says so.
    """

    profile_id: str
    open: Session | None = None
    horizon: int | None = None
    history: list[tuple[int, int]] | None = field(default=None)
    latest: tuple[int, str] | None = None  # (first_ts, id) of the latest concluded one

    def latest_session(self) -> tuple[int, str] | None:
        """(first_ts, id) of the profile's latest session, open or concluded."""
        o = self.open
        if o is not None and (self.latest is None or o.first_ts >= self.latest[0]):
            return (o.first_ts, o.session_id)
        return self.latest
