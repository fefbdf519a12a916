"""A bucket's state as compact bytes, for Spark's state store (msgpack; the int columns
as raw little-endian int64, so a bucket of thousands of profiles decodes in microseconds)."""

from __future__ import annotations

import msgspec
import numpy as np

from lull.engine import vector
from lull.errors import BadInput
from lull.spark.bucket import Bucket

_VERSION = 1


class _Stored(msgspec.Struct, array_like=True):
    version: int
    buckets: int  # the bucket count the checkpoint was started with (fixed from then on)
    profile_id: list[str]
    open_id: list[str | None]
    open_source: list[str | None]
    latest_id: list[str | None]
    ints: bytes  # (6, n): open_first, open_last, open_events, horizon, latest_first, clock
    history: bytes  # (3, h): code, first_ts, last_ts of the concluded sessions


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_Stored)
_LE = np.dtype("<i8")


def encode(bucket: Bucket, buckets: int) -> bytes:
    """The bucket as bytes, with the bucket count of the stream."""
    t = bucket.table
    ints = np.stack([t.open_first, t.open_last, t.open_events, t.horizon, t.latest_first,
                     bucket.clock]).astype(_LE)  # fmt: skip
    return _encoder.encode(
        _Stored(
            _VERSION,
            buckets,
            t.profile_id.tolist(),
            t.open_id.tolist(),
            t.open_source.tolist(),
            t.latest_id.tolist(),
            ints.tobytes(),
            bucket.history.astype(_LE).tobytes(),
        )
    )


def decode(data: bytes, buckets: int) -> Bucket:
    """The inverse of `encode`. A checkpoint started with another bucket count is refused:
    its profiles' states are in the buckets of that count."""
    s = _decoder.decode(data)
    if s.version != _VERSION:
        raise BadInput(f"the checkpoint's state is of version {s.version}, not {_VERSION}")
    if s.buckets != buckets:
        raise BadInput(
            f"the checkpoint was started with --buckets {s.buckets}, not {buckets}: "
            "give that number (or start a new checkpoint)"
        )
    n = len(s.profile_id)
    ints = np.frombuffer(s.ints, dtype=_LE).reshape(6, n).astype(np.int64)

    def objects(values: list[str | None] | list[str]) -> vector.OBJ:
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out

    table = vector.Profiles(
        objects(s.profile_id), objects(s.open_id), ints[0], ints[1], ints[2],
        objects(s.open_source), ints[3], ints[4], objects(s.latest_id),
    )  # fmt: skip
    history = np.frombuffer(s.history, dtype=_LE).reshape(3, -1).astype(np.int64)
    return Bucket(table, ints[5].copy(), history)
