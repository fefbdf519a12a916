"""A Spark standalone cluster on 127.0.0.1, from the installed pyspark: a master and
workers, each a JVM process of its own (`spark-class ...deploy.master.Master` and
`...deploy.worker.Worker --cores 1`), and lull's jobs run on it through `spark-submit`.

    with SparkCluster(tmp, workers=2) as cluster:
        done = cluster.submit("spark", "resessionize", "--events", ..., db=..., cwd=...)
        cluster.kill_worker(0)                  # SIGKILL one worker's JVM

Every process (master, workers, their executors and Python workers, drivers) is started
in a process group of its own and the whole group is killed when the cluster stops,
whatever happened; and if the process that started them is killed outright, the kernel
kills them too (PR_SET_PDEATHSIG): no JVM outlives it. Used by tests/test_spark_cluster.py and
bench/spark.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import pyspark

from lull.server.store_process import die_with_parent  # (in the child, before exec)

SPARK_HOME = Path(pyspark.__file__).resolve().parent
# The master and workers only schedule (quick start, small heap); so does the stream's
# driver. Executors run the batch job's sorts: `quick=False` leaves them Spark's JVM.
QUICK_JVM = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
DRIVER = "from lull.cli import run\n\nrun()\n"  # docs/spark.md's two-line driver


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Submitted:
    """A finished `spark-submit`: its exit code and output."""

    code: int
    out: str
    err: str


class SparkCluster:
    """A standalone master and `workers` one-core workers (see the module docstring)."""

    def __init__(
        self, root: Path, workers: int = 2, worker_memory: str = "1g", start_timeout: float = 90
    ) -> None:
        self.root = root
        self.workers = workers
        self.worker_memory = worker_memory
        self.start_timeout = start_timeout
        self.port, self.webui = free_port(), free_port()
        self.url = f"spark://127.0.0.1:{self.port}"
        self.groups: list[subprocess.Popen[bytes]] = []  # every process group started
        self.worker_procs: list[subprocess.Popen[bytes]] = []
        self.driver = root / "lull_driver.py"
        self.logs = root / "logs"

    # -- the environment every process gets ------------------------------------------------
    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPARK_", "SPARK_"))}
        env.pop("LULL_DB", None)
        env |= {
            "SPARK_HOME": str(SPARK_HOME),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_LOCAL_HOSTNAME": "127.0.0.1",
            "SPARK_LOG_DIR": str(self.logs),
            "SPARK_WORKER_DIR": str(self.root / "work"),
            "SPARK_CONF_DIR": str(self.root / "conf"),  # empty: no one's spark-defaults
            "SPARK_DAEMON_JAVA_OPTS": QUICK_JVM,
            "PYSPARK_PYTHON": sys.executable,  # executors' Python: lull's environment
            "PYSPARK_DRIVER_PYTHON": sys.executable,
        }
        return env | extra

    def _spawn(self, args: Sequence[str], log: str, **popen: Any) -> subprocess.Popen[bytes]:
        out: IO[bytes] = (self.logs / log).open("wb")
        proc = subprocess.Popen(
            list(args), stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=die_with_parent, **popen,
        )  # fmt: skip
        out.close()
        self.groups.append(proc)
        return proc

    def _class(self, name: str, *args: str, log: str) -> subprocess.Popen[bytes]:
        cmd = [str(SPARK_HOME / "bin/spark-class"), f"org.apache.spark.deploy.{name}", *args]
        return self._spawn(cmd, log, env=self.env())

    # -- start and stop --------------------------------------------------------------------
    def __enter__(self) -> SparkCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        for folder in (self.logs, self.root / "work", self.root / "conf"):
            folder.mkdir(parents=True, exist_ok=True)
        self.driver.write_text(DRIVER)
        self.master = self._class(
            "master.Master",
            *("--host", "127.0.0.1", "--port", str(self.port), "--webui-port", str(self.webui)),
            log="master.log",
        )
        self.wait_for(lambda s: s.get("status") == "ALIVE", "the master")
        for i in range(self.workers):
            proc = self._class(
                "worker.Worker",
                *("--host", "127.0.0.1", "--cores", "1", "--memory", self.worker_memory),
                *("--webui-port", str(free_port()), self.url),
                log=f"worker-{i}.log",
            )
            self.worker_procs.append(proc)
        self.wait_for(lambda s: self.alive_workers(s) == self.workers, "the workers")

    def state(self) -> dict[str, Any]:
        """The master's JSON status (its web UI's /json)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.webui}/json/", timeout=5) as r:
            state: dict[str, Any] = json.load(r)
            return state

    @staticmethod
    def alive_workers(state: dict[str, Any]) -> int:
        return sum(w["state"] == "ALIVE" for w in state.get("workers", []))

    def wait_for(self, ready: Any, what: str, timeout: float | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + (timeout or self.start_timeout)
        while True:
            if self.master.poll() is not None:
                raise RuntimeError(f"the master exited: {self.log_tail()}")
            try:
                state = self.state()
                if ready(state):
                    return state
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} not ready after {timeout or self.start_timeout}s: "
                                   f"{self.log_tail()}")  # fmt: skip
            time.sleep(0.2)

    def log_tail(self, chars: int = 3000) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-chars:]}"
            for p in sorted(self.logs.glob("*.log"))
        )

    def kill_worker(self, i: int) -> None:
        """SIGKILL worker i's JVM (only it: its executor finds its worker gone and exits)."""
        proc = self.worker_procs[i]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop(self) -> None:
        """Kill every process group started (workers' executors and Python workers are
        in their worker's group), and wait until none of them is left."""
        for proc in self.groups:
            _kill_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.groups:
            while _members(proc.pid) and time.monotonic() < deadline:
                proc.poll()
                time.sleep(0.05)
            _kill_group(proc.pid, signal.SIGKILL)
            proc.wait()
        deadline = time.monotonic() + 10
        while self.leftovers() and time.monotonic() < deadline:
            time.sleep(0.05)

    def leftovers(self) -> list[int]:
        """Processes of this cluster still running (none after stop)."""
        return [pid for p in self.groups for pid in _members(p.pid)]

    # -- lull's jobs on it -----------------------------------------------------------------
    def submit_command(
        self, *args: str, db: Path, conf: dict[str, str] | None = None, quick: bool = True
    ) -> list[str]:
        """spark-submit of `lull --db DB ARGS` (docs/spark.md, "spark-submit") on the cluster."""
        settings = {
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.ui.enabled": "false",
            "spark.executor.memory": "1g",
            "spark.sql.session.timeZone": "UTC",
            "spark.sql.shuffle.partitions": "8",
            "spark.log.level": "WARN",
        }
        if quick:
            settings["spark.executor.extraJavaOptions"] = QUICK_JVM
        settings |= conf or {}
        return [
            str(SPARK_HOME / "bin/spark-submit"),
            *("--master", self.url, "--deploy-mode", "client"),
            *("--driver-memory", "1g", "--driver-java-options", QUICK_JVM),
            *(x for k, v in settings.items() for x in ("--conf", f"{k}={v}")),
            str(self.driver),
            *("--db", str(db), *args),
        ]

    def start_submit(
        self, *args: str, db: Path, cwd: Path, log: str, conf: dict[str, str] | None = None,
        quick: bool = True,
    ) -> subprocess.Popen[bytes]:  # fmt: skip
        """spark-submit started (its output in `logs/LOG`); stopped with the cluster."""
        cmd = self.submit_command(*args, db=db, conf=conf, quick=quick)
        return self._spawn(cmd, log, env=self.env(), cwd=cwd)

    def submit(
        self, *args: str, db: Path, cwd: Path, conf: dict[str, str] | None = None,
        timeout: float = 300, quick: bool = True,
    ) -> Submitted:  # fmt: skip
        """spark-submit of `lull ARGS` to its end: its exit code and output."""
        cmd = self.submit_command(*args, db=db, conf=conf, quick=quick)
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
            preexec_fn=die_with_parent, env=self.env(), cwd=cwd,
        )  # fmt: skip
        self.groups.append(proc)
        try:
            out, err = proc.communicate(timeout=timeout)
        finally:
            _kill_group(proc.pid, signal.SIGKILL)  # its Python workers, if any are left
            proc.wait()
        return Submitted(
            proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
        )


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _members(pgid: int) -> list[int]:
    """The live processes (not zombies) of process group `pgid`, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found
