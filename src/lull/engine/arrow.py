"""NumPy <-> Arrow for int64 and bool columns, without pyarrow's NumPy bridge.

Why: `pa.array(ndarray)` and `Array.to_numpy()` ask pyarrow's pandas shim whether the
value is a pandas object, which imports pandas: 0.3 s of start-up with cached byte code,
1-2 s without (PYTHONDONTWRITEBYTECODE), in a command whose whole budget is a few
seconds. These build the buffers directly.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa

I64 = npt.NDArray[np.int64]
BOOL = npt.NDArray[np.bool_]

_WIDTH = {pa.int64(): np.int64, pa.int32(): np.int32, pa.int16(): np.int16, pa.int8(): np.int8,
          pa.uint64(): np.uint64, pa.uint32(): np.uint32, pa.uint16(): np.uint16,
          pa.uint8(): np.uint8}  # fmt: skip


def _one(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    a = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if a.null_count:
        raise ValueError(f"a {a.type} column holds nulls")
    return a


def ints(column: pa.Array | pa.ChunkedArray) -> I64:
    """An integer column without nulls, as int64 (a uint64 one keeps its 64 bits: values
    past int64's range read as negative, which equality, as in hashes, does not mind)."""
    a = _one(column)
    if not len(a):
        return np.zeros(0, dtype=np.int64)
    dtype = np.dtype(_WIDTH[a.type])
    raw = np.frombuffer(a.buffers()[1], dtype=dtype, count=len(a), offset=a.offset * dtype.itemsize)
    if dtype.itemsize == 8:  # int64, or uint64 read as its bits: Arrow's memory, no copy
        return raw.view(np.int64)
    return np.asarray(raw, dtype=np.int64)


def flags(column: pa.Array | pa.ChunkedArray) -> BOOL:
    """A boolean column without nulls."""
    a = _one(column)
    if not len(a):
        return np.zeros(0, dtype=bool)
    bits = np.unpackbits(np.frombuffer(a.buffers()[1], dtype=np.uint8), bitorder="little")
    return bits[a.offset : a.offset + len(a)].astype(bool)


def _validity(mask: BOOL | None, n: int) -> tuple[pa.Buffer | None, int]:
    if mask is None or not mask.any():
        return None, 0
    valid = np.packbits(~np.asarray(mask, dtype=bool), bitorder="little")
    return pa.py_buffer(valid), int(np.count_nonzero(mask))


def int_array(values: I64, mask: BOOL | None = None) -> pa.Array:
    """int64 values as Arrow (sharing their memory when contiguous); null where `mask`."""
    data = np.ascontiguousarray(values, dtype=np.int64)
    validity, nulls = _validity(mask, len(data))
    return pa.Array.from_buffers(
        pa.int64(), len(data), [validity, pa.py_buffer(data)], null_count=nulls
    )


def bool_array(values: BOOL) -> pa.Array:
    """bool values as Arrow."""
    bits = np.packbits(np.asarray(values, dtype=bool), bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), len(values), [None, pa.py_buffer(bits)])


def str_array(values: list[str | None]) -> pa.Array:
    """str values (None: null) as Arrow."""
    encoded = [b"" if v is None else v.encode() for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    nulls = np.array([v is None for v in values], dtype=bool)
    validity, count = _validity(nulls, len(values))
    return pa.Array.from_buffers(
        pa.string(), len(values),
        [validity, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))],
        null_count=count,
    )  # fmt: skip
