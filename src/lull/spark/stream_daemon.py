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
import lull.store.log  # noqa: F401


class _NoPandas(MetaPathFinder):
    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name == "pandas":
            raise ModuleNotFoundError("pandas is not used by the stream's tasks")
        return None


if "pandas" not in sys.modules:
    _finder = _NoPandas()
    sys.meta_path.insert(0, _finder)
    try:
        pyarrow.array([0])
    finally:
        sys.meta_path.remove(_finder)

if __name__ == "__main__":
    manager()
