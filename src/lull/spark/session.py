"""Getting a SparkSession: local mode for one machine and the tests, or the cluster that
spark-submit gives. Imports pyspark lazily so `lull` works without the `spark` extra."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lull.errors import BadInput

if TYPE_CHECKING:
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

# The stream's driver JVM only schedules Python tasks: its start matters more than its
# steady speed (the C1 compiler alone and the serial collector start it seconds sooner).
_QUICK_JVM = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


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
    for key, value in _local(master).items():
        builder = builder.config(key, value)
    builder = builder.config("spark.sql.session.timeZone", "UTC")
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def _local(master: str) -> dict[str, str]:
    """A local master's settings: 127.0.0.1, no web UI, this interpreter for the workers."""
    if not master.startswith("local"):
        return {}
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return {
        "spark.ui.enabled": "false",
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.sql.shuffle.partitions": "8",
        # workers forked with lull and its libraries already imported (spark/daemon.py)
        "spark.python.daemon.module": "lull.spark.daemon",
    }


def spark_context(master: str | None = None, app: str = "lull") -> SparkContext:
    """The active SparkContext, or a new one (as `spark_session`, without Spark SQL: the
    stream only schedules Python tasks). A new local one starts its JVM quick (`_QUICK_JVM`
    and `class_archive`) and forks workers from `spark/stream_daemon.py`."""
    try:
        from pyspark import SparkConf, SparkContext
    except ImportError as e:  # pragma: no cover - depends on the install
        raise BadInput("Spark is not installed: install lull with the `spark` extra") from e
    active: Any = SparkContext._active_spark_context
    if active is not None and master is None:
        context: SparkContext = active
        return context
    if master is None and "PYSPARK_GATEWAY_PORT" in os.environ:
        return SparkContext.getOrCreate(SparkConf().setAppName(app))
    master = master or os.environ.get("LULL_SPARK_MASTER", "local[*]")
    conf = SparkConf().setMaster(master).setAppName(app).setAll(list(_local(master).items()))
    if master.startswith("local"):
        conf.set("spark.driver.extraJavaOptions", f"{_QUICK_JVM} {class_archive()}".strip())
        conf.set("spark.python.daemon.module", "lull.spark.stream_daemon")
    context = SparkContext.getOrCreate(conf)
    context.setLogLevel("ERROR")
    return context


def class_archive() -> str:
    """JVM options for a class-data archive of Spark's classes (the JVM's CDS): loading
    Spark's classes from it takes about 1.5 s off each start. The first run writes it, at
    its JVM's exit, under `~/.cache/lull/` (a name of its own, put in place by the next
    run); later runs load it. A stale or damaged archive is passed over by the JVM. Off
    with LULL_SPARK_CDS=0."""
    import hashlib
    import shutil

    import pyspark

    if os.environ.get("LULL_SPARK_CDS", "1") == "0":
        return ""
    java = shutil.which("java")
    if java is None:
        return ""
    real = Path(java).resolve()
    key = hashlib.sha1(f"{real}:{real.stat().st_mtime_ns}:{pyspark.__version__}".encode())
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lull"
    archive = cache / f"spark-{key.hexdigest()[:12]}.jsa"
    quiet = "-Xlog:cds=off -Xlog:cds+dynamic=off"
    for made in sorted(cache.glob(f"{archive.name}.*.made")):
        if not _alive(int(made.suffixes[-2][1:])):
            os.replace(made, archive)  # a run that has ended wrote it whole
    if archive.exists():
        return f"-XX:SharedArchiveFile={archive} {quiet}"
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError:
        return ""
    return f"-XX:ArchiveClassesAtExit={archive}.{os.getpid()}.made {quiet}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
