"""One profile's engine state as compact bytes, for Spark's state store (msgpack)."""

from __future__ import annotations

import msgspec

from lull.engine.state import ProfileState, Session


class _Open(msgspec.Struct, array_like=True):
    session_id: str
    first_ts: int
    last_ts: int
    events: int
    source: str


class _Stored(msgspec.Struct, array_like=True):
    open: _Open | None
    horizon: int | None
    latest: tuple[int, str] | None
    history: list[tuple[int, int]]
    clock: int  # the profile's last arrival instant (the stream's clock, never backwards)


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_Stored)


def encode(state: ProfileState, clock: int) -> bytes:
    """The state and the profile's clock as bytes. The history (the profile's concluded
    sessions, R5) is kept whole: Spark cannot load it on demand the way the server does."""
    o = state.open
    return _encoder.encode(
        _Stored(
            None if o is None else _Open(o.session_id, o.first_ts, o.last_ts, o.events, o.source),
            state.horizon,
            state.latest,
            state.history or [],
            clock,
        )
    )


def decode(profile_id: str, data: bytes) -> tuple[ProfileState, int]:
    """The inverse of `encode`: (state with its history loaded, clock)."""
    s = _decoder.decode(data)
    o = s.open
    state = ProfileState(
        profile_id,
        None
        if o is None
        else Session(o.session_id, profile_id, o.first_ts, o.last_ts, o.events, o.source),
        s.horizon,
        s.history,
        None if s.latest is None else (s.latest[0], s.latest[1]),
    )
    return state, s.clock


def fresh(profile_id: str) -> ProfileState:
    """The state of a profile the stream has not seen: no sessions, history loaded."""
    return ProfileState(profile_id, history=[])
