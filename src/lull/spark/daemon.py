"""Spark's Python daemon for lull's jobs (`spark.python.daemon.module`).

Spark starts one daemon per executor, which forks a Python worker for each task. A
forked worker imports what its task needs: pyarrow and lull's stream
(`spark/tasks.py`); measured on the 1M-event stream, those imports took about half of the
workers' time (pyspark comes from a zip, so it is compiled anew in each worker). Here
they are imported once, in the daemon, before it forks, and every worker has them.
"""

from __future__ import annotations

import pyarrow
import pyarrow.compute
import pyarrow.ipc
import pyarrow.parquet  # noqa: F401
import pyspark.worker  # noqa: F401
from pyspark.daemon import manager

import lull.engine.vector
import lull.spark.bucket
import lull.spark.ndjson
import lull.spark.sink
import lull.spark.state_codec
import lull.spark.tasks
import lull.store.log  # noqa: F401

if __name__ == "__main__":
    manager()
