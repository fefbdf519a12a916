"""Spark's Python daemon for `lull spark stream --landing/--log` (`spark/tasks.py`).

As `spark/daemon.py`, it imports what the tasks need once, before it forks a worker for
each task. The tasks use no pandas, but pyarrow imports it on its first array made from
Python values (to check whether they are pandas objects): seconds in every worker where
Python does not cache bytecode. Here pyarrow makes its first array while pandas cannot be
imported, so it takes pandas as not installed (and never looks again).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from types import ModuleType

import pyarrow
import pyarrow.compute
import pyarrow.ipc
import pyarrow.parquet
import pyspark.worker  # noqa: F401
from pyspark.daemon import manager

import lull.engine.vector
import lull.spark.bucket
import lull.spark.ndjson
import lull.spark.sink
import lull.spark.state_codec
import lull.spark.tasks
import lull.store.log


class _NoPandas(MetaPathFinder):
    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name == "pandas":
            raise ModuleNotFoundError("pandas is not used by the stream's tasks")
        return None


def _warm() -> None:
    """Run the tasks' code once on two lines: the first call of each part (msgspec's
    decoder, pyarrow's kernels, the engine) costs more than a file."""
    import numpy as np

    from lull.model import Settings

    line = (b'{"message_id":"m","profile_id":"u","name":"n","ts":1,"source":"web",'
            b'"received_at":2,"properties":{"k":1}}\n')  # fmt: skip
    table = lull.spark.ndjson.file_table(line + line.replace(b'ts":1', b'ts":"x"'), "f")
    events = table.filter(pyarrow.compute.is_null(table["error"]))
    lull.spark.tasks.hashed(events["profile_id"], 2, repeats=True)
    lull.spark.tasks.hashed(events["message_id"], 2, repeats=False)
    one = np.array(["m"], dtype=object)
    rows = lull.spark.bucket.Rows(one, np.array(["u"], dtype=object), np.array(["n"], dtype=object),
                                  np.array(["web"], dtype=object), np.array([1]), np.array([2]),
                                  np.array([0], dtype=np.int32), np.array([1]))  # fmt: skip
    state = lull.spark.bucket.Bucket()
    lull.spark.bucket.apply(state, rows, 0, Settings(True, 60_000, ()))
    lull.spark.state_codec.decode(lull.spark.state_codec.encode(state, 2), 2)


if "pandas" not in sys.modules:
    _finder = _NoPandas()
    sys.meta_path.insert(0, _finder)
    try:
        pyarrow.array([0])
    finally:
        sys.meta_path.remove(_finder)
_warm()

if __name__ == "__main__":
    manager()
