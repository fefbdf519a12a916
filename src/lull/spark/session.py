"""Getting a SparkSession: local mode for one machine and the tests, or the cluster that
spark-submit gives. Imports pyspark lazily so `lull` works without the `spark` extra."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from lull.errors import BadInput

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def spark_session(master: str | None = None, app: str = "lull") -> SparkSession:
    """The active session, or a new one on `master` (default local[*]; under
    spark-submit, the master it was given).

    Local mode stays on 127.0.0.1 with no web UI, and its Python workers run this
    interpreter (so they see lull and pyarrow from the same environment)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as e:  # pragma: no cover - depends on the install
        raise BadInput("Spark is not installed: install lull with the `spark` extra") from e
    active = SparkSession.getActiveSession()
    if active is not None and master is None:
        return active
    if master is None and "PYSPARK_GATEWAY_PORT" in os.environ:
        # Started by spark-submit: its --master and --conf rule.
        return SparkSession.builder.appName(app).getOrCreate()
    master = master or os.environ.get("LULL_SPARK_MASTER", "local[*]")
    builder = SparkSession.builder.master(master).appName(app)
    if master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = (
            builder.config("spark.ui.enabled", "false")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.sql.shuffle.partitions", "8")
            # workers forked with lull and its libraries already imported (spark/daemon.py)
            .config("spark.python.daemon.module", "lull.spark.daemon")
        )
    builder = builder.config("spark.sql.session.timeZone", "UTC")
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session
