"""Running the real `lull serve` as a subprocess on 127.0.0.1 for the server tests.

    with LullServer(tmp_path / "lull.duckdb") as srv:
        keys = srv.create_project("shop", sessions="on", timeout="1m")  # before start
        srv.start()
        srv.post_events(keys.web, [...])
        srv.kill()     # kill -9
        srv.start()    # the same store, the same port

Projects and settings are made with the `lull` command before the server starts (DuckDB
lets one process hold the file). On a store without keys the server makes project
`default` itself and prints its keys; `start()` reads them into `default_keys`. The
server runs as a user would run it: stdout and stderr go to files next to the store
(PYTHONUNBUFFERED is dropped, so output must be flushed by lull itself).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from lull.model import format_time
from lullrun import LULL, lull

HOST = "127.0.0.1"
MIN = 60_000


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class Keys:
    """A project's secrets, as `lull project create --json` prints them."""

    name: str
    web: str
    ios: str
    android: str
    server: str
    account_id: str
    passcode: str
    read_token: str
    admin_key: str

    @classmethod
    def of(cls, made: dict[str, Any]) -> Keys:
        k = made["keys"]
        return cls(
            made["name"],
            k["web"],
            k["ios"],
            k["android"],
            k["server"],
            made["account_id"],
            made["passcode"],
            made["read_token"],
            made["admin_key"],
        )


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


class LullServer:
    """One store, one `lull serve` process at a time on a fixed port."""

    def __init__(
        self, db: Path, port: int | None = None, tls: tuple[Path, Path] | None = None
    ) -> None:
        """`tls`: a (certificate, key) pair to serve HTTPS with (self-signed: not verified)."""
        self.db = db
        self.port = port or free_port()
        self.base = f"{'https' if tls else 'http'}://{HOST}:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.default_keys: Keys | None = None
        self.projects: dict[str, Keys] = {}  # made by create_project, or printed at start
        self.starts = 0
        self.serve_args: list[str] = []  # more `lull serve` options, e.g. --ingest-only
        if tls:
            self.serve_args += ["--ssl-certfile", str(tls[0]), "--ssl-keyfile", str(tls[1])]
        self.http = httpx.Client(base_url=self.base, timeout=30.0, verify=not tls)

    # -- before start ----------------------------------------------------------------

    def create_project(
        self, name: str, sessions: str | None = None, timeout: str | None = None
    ) -> Keys:
        """`lull project create NAME --json` (and `lull settings`), with the server down."""
        assert self.proc is None, "make projects before the server starts"
        made = lull(self.db, "project", "create", name, "--json")
        assert made.code == 0, made.err
        if sessions is not None or timeout is not None:
            args = ["--sessions", sessions] if sessions else []
            args += ["--timeout", timeout] if timeout else []
            changed = lull(self.db, "--project", name, "settings", *args)
            assert changed.code == 0, changed.err
        keys = self.projects[name] = Keys.of(made.json())
        return keys

    # -- the process -----------------------------------------------------------------

    def start(self, wait: float = 60.0) -> None:
        assert self.proc is None, "already running"
        self.starts += 1
        out = self.db.with_name(f"{self.db.name}.serve{self.starts}.out")
        err = self.db.with_name(f"{self.db.name}.serve{self.starts}.err")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
        env.update({"LULL_DB": "", "LULL_THREADS": "2"})
        command = [LULL, "--db", str(self.db), "serve", "--host", HOST, "--port", str(self.port)]
        with out.open("wb") as stdout, err.open("wb") as stderr:
            self.proc = subprocess.Popen(
                [*command, *self.serve_args],
                stdout=stdout,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        deadline = time.monotonic() + wait
        while True:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise RuntimeError(f"lull serve exited with {code}: {err.read_text()}")
            try:
                if self.http.get("/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"lull serve not ready after {wait} s: {err.read_text()}")
            time.sleep(0.05)
        printed = out.read_text()
        if printed.startswith("lull: made project"):
            self.default_keys = Keys.of(json.loads(printed.split("\n", 1)[1]))
            self.projects["default"] = self.default_keys

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """kill -9: no chance to finish anything."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(30)
            self.proc = None

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, as a service manager stops it; returns the exit code."""
        assert self.proc is not None
        proc, self.proc = self.proc, None
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
            raise

    def restart(self) -> None:
        self.kill()
        self.start()

    def close(self) -> None:
        self.kill()
        self.http.close()

    def __enter__(self) -> LullServer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- HTTP ------------------------------------------------------------------------

    def post_events(self, key: str, events: list[dict[str, Any]], **kwargs: Any) -> httpx.Response:
        """`POST /api/v1/events` with a JSON array."""
        return self.http.post("/api/v1/events", json=events, headers=bearer(key), **kwargs)

    def read(self, keys: Keys, what: str, **params: str | int) -> Any:
        """`GET /api/v1/WHAT` with the read token; asserts a 200 and gives the JSON."""
        params.setdefault("limit", 10_000)
        got = self.http.get(f"/api/v1/{what}", params=params, headers=bearer(keys.read_token))
        assert got.status_code == 200, got.text
        return got.json()

    def events(self, keys: Keys, **params: str | int) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.read(keys, "events", **params)
        return result

    def sessions(self, keys: Keys, **params: str | int) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.read(keys, "sessions", **params)
        return result

    def sent(self, keys: Keys, profile_id: str) -> list[dict[str, Any]]:
        """A profile's events as clients sent them (lull's Session Concluded left out)."""
        got = self.events(keys, profile_id=profile_id)
        return [e for e in got if e["name"] != "Session Concluded"]

    def profile(
        self,
        keys: Keys,
        profile_id: str,
        check: Callable[[dict[str, Any]], bool] = lambda p: True,
        wait: float = 6.0,
    ) -> dict[str, Any]:
        """`GET /api/v1/profiles/ID` once it passes `check`: the server writes profiles
        every couple of seconds, not with every commit."""
        deadline = time.monotonic() + wait
        while True:
            got = self.http.get(f"/api/v1/profiles/{profile_id}", headers=bearer(keys.read_token))
            if got.status_code == 200:
                found: dict[str, Any] = got.json()
                if check(found):
                    return found
            else:
                assert got.status_code == 404, got.text
            assert time.monotonic() < deadline, f"profile {profile_id!r}: {got.text}"
            time.sleep(0.1)


@contextmanager
def default_project(folder: Path) -> Iterator[tuple[LullServer, Keys]]:
    """A fresh store's server and the keys of the project `default` it makes (sessions
    on, 20 minutes)."""
    with LullServer(folder / "lull.duckdb") as srv:
        srv.start()
        assert srv.default_keys is not None, "the server printed no keys for `default`"
        yield srv, srv.default_keys


def export(db: Path, project: str, what: str) -> list[dict[str, Any]]:
    """`lull --project PROJECT export WHAT`, with the server down, read back as records."""
    target = db.with_name(f"{db.name}.{project}.{what}.ndjson")
    result = lull(db, "--project", project, "export", what, "-o", str(target))
    assert result.code == 0, result.err
    return [json.loads(line) for line in target.read_text().splitlines()]


def iso(ms: int) -> str:
    """Epoch ms -> the ISO-8601 form the read API gives back."""
    return format_time(ms)
