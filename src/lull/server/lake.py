"""`lull serve --lake DIR`: the web pages and the read API over the Spark jobs' output.

A deployment that moved its sessions to Spark (`lull serve --ingest-only` in front,
`lull spark stream --log` or `lull spark resessionize` behind) keeps its board, what-if,
profiles and events pages: this server reads the jobs' Parquet output (`--out`, laid out
as spark/output.py reads it) through DuckDB, with the same queries as the embedded store,
so the same events give the same figures.

The server holds an in-memory DuckDB database with the store's tables:

- the accounts, projects and keys are copied from the store (`--db`, opened read-only
  and closed again, so it may be in use by nothing else at that moment); who may sign in
  and which read tokens open the project are the store's at start;
- the project named by `--project` shows the lake: `events`, `event_sessions` and
  `sessions` are views and a table over the Parquet files (spark/output.open_output),
  `profiles` is made from them (first and last seen, latest session; no properties: the
  lake holds events, not the profile uploads and identify traits a store keeps), and its
  settings are the job's (`settings.json`);
- nothing is written: events sent here are refused (405, naming the ingestion tier), as
  are settings changes (they are the job's; change them there and run it again). Signing
  out holds until a restart; so does a segment saved here (it is not refused yet).

The Parquet files are read when asked for (the sessions' keys once, at start): a job's
new output is shown after a restart.
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import duckdb

from lull.errors import BadInput, LullError
from lull.model import Settings
from lull.server.app import Server, build
from lull.server.run import listen
from lull.spark.output import open_output
from lull.store.db import literal
from lull.store.log import START
from lull.store.profiles import refresh_from_sessions
from lull.store.projects import now_ms
from lull.store.schema import SCHEMA

if TYPE_CHECKING:
    from lull.server.door import Door
    from lull.server.live import LiveEngine

# What is copied from the store: who may sign in, to which project, with which keys.
ACCOUNTS = ("lull_meta", "projects", "project_keys", "users", "signouts", "memberships")
# The store's tables that the lake stands in for.
LAKE_TABLES = ("events", "event_sessions", "sessions")


class ReadOnly(BadInput):
    """This server reads a lake: it takes no events and changes no settings (a refusal
    of what was asked, as bad input is: the Settings page shows it by the form)."""

    status = 405


def _no_events() -> ReadOnly:
    return ReadOnly(
        "this server reads the Spark jobs' output (lull serve --lake): send events to the "
        "ingestion tier (lull serve --ingest-only), which lull spark stream sessionizes"
    )


class _Project:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings


class LakeEngine:
    """What the handlers ask the live engine, for a lake: the clock and the project's
    settings (the job's); a settings change is refused (`read_only` says why: the
    Settings page shows it and offers no Save)."""

    read_only = (
        "These are the settings the Spark job ran with (its settings.json): this server "
        "reads its output (lull serve --lake). Change them there and run the job again; "
        "the preview below shows what a new timeout would do."
    )

    def __init__(self, pid: int, settings: Settings) -> None:
        self.projects = {pid: _Project(settings)}
        self.applied = START  # nothing is applied here: reads never wait

    def settings(self, project_id: int) -> Settings:
        return self.projects[project_id].settings

    def clock(self) -> int:
        return now_ms()

    def resolve(self, project_id: int, anonymous_id: str, at: int | None = None) -> str:
        return anonymous_id

    def change_settings(
        self, project_id: int, settings: object, *, rebuild: bool
    ) -> Future[dict[str, object]]:
        done: Future[dict[str, object]] = Future()
        done.set_exception(ReadOnly(self.read_only))
        return done


class LakeDoor:
    """The ingestion door of a lake server: shut."""

    acked = START
    failing: str | None = None

    async def take(self, *args: Any, **kwargs: Any) -> Any:
        raise _no_events()


def open_lake(
    folder: Path, store: Path, project: str
) -> tuple[duckdb.DuckDBPyConnection, int, Settings]:
    """The in-memory database a lake server reads (module docstring): the store's
    accounts, and project `project` over the Parquet output in `folder`."""
    if not store.is_file():
        raise LullError(f"no store at {store}: the accounts and keys are read from it")
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(SCHEMA)
    try:
        con.execute(f"ATTACH {literal(str(store))} AS store (READ_ONLY)")
    except duckdb.Error as e:
        raise LullError(f"cannot read the store {store}: {e}") from None
    try:
        for table in ACCOUNTS:  # by name: a store of an older lull lacks newer columns
            con.execute(f"INSERT INTO main.{table} BY NAME SELECT * FROM store.{table}")
    except duckdb.Error as e:
        raise LullError(f"cannot read the accounts of the store {store}: {e}") from None
    finally:
        con.execute("DETACH store")
    row = con.execute("SELECT id FROM projects WHERE name = ?", [project]).fetchone()
    if row is None:
        raise BadInput(
            f"no project named {project!r} in the store {store}: make it (lull project "
            "create) and give its users access (lull user create / grant); then name it "
            "with --project"
        )
    pid = int(row[0])
    for table in LAKE_TABLES:
        con.execute(f"DROP TABLE {table}")  # the lake's views stand in (all_events reads them)
    _, settings = open_output(folder, con, pid)
    con.execute(
        """UPDATE projects SET sessions_enabled = true, timeout_ms = ?, excluded = ?,
           timezone = ?, board_created_at = coalesce(board_created_at, created_at)
           WHERE id = ?""",
        [settings.timeout_ms, list(settings.excluded), settings.timezone, pid],
    )
    refresh_from_sessions(con, pid, settings.timeout_ms)
    settings = Settings(True, settings.timeout_ms, settings.excluded, settings.timezone)
    return con, pid, settings


def lake_server(folder: Path, store: Path, project: str) -> Server:
    con, pid, settings = open_lake(folder, store, project)
    engine = cast("LiveEngine", LakeEngine(pid, settings))
    return Server(con, engine, cast("Door", LakeDoor()))


def serve_lake(
    folder: str,
    store: str,
    project: str,
    host: str,
    port: int,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    forwarded_allow_ips: str | None = None,
) -> None:
    """Serve the pages and the read API over the lake until interrupted."""
    started = time.perf_counter()
    server = lake_server(Path(folder), Path(store), project)
    app = build(server)
    events = server.con.execute("SELECT count(*) FROM events").fetchone()
    scheme = "https" if ssl_certfile else "http"
    print(
        f"lull: ready in {time.perf_counter() - started:.2f} s: project {project!r} read from "
        f"{folder} ({events[0] if events else 0:,} events)",
        file=sys.stderr,
        flush=True,
    )
    print(f"lull: serving {scheme}://{host}:{port}/ (lake {folder})", file=sys.stderr, flush=True)
    listen(app, host, port, forwarded_allow_ips, ssl_certfile, ssl_keyfile)
