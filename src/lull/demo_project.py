"""A demo project: made (or an empty one taken), filled with `demo.py`'s events through
lull's own importer, its profiles given their identity traits."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pyarrow as pa

from lull.demo import Demo, write_ndjson
from lull.errors import BadInput
from lull.importer import import_ndjson
from lull.store.db import transaction
from lull.store.keys import create_project
from lull.store.projects import get_settings, project_id, save_settings


@dataclass(frozen=True, slots=True)
class Filled:
    """What `fill` stored."""

    events: int
    profiles: int
    sessions: int
    concluded: int
    late: int

    def line(self, project: str) -> str:
        return (
            f"project {project!r}: {self.events:,} events, {self.profiles:,} profiles, "
            f"{self.sessions:,} sessions ({self.concluded:,} concluded), "
            f"{self.late:,} late events"
        )


def prepare(con: duckdb.DuckDBPyConnection, name: str) -> tuple[int, dict[str, object] | None]:
    """The project to fill, with sessions on: made, with its keys, if new (the keys are
    returned, as they are shown only once); an existing one must hold no events."""
    row = con.execute("SELECT id FROM projects WHERE name = ?", [name]).fetchone()
    keys = None
    with transaction(con):
        if row is None:
            keys = create_project(con, name)
        pid = project_id(con, name, create=False)
        held = con.execute("SELECT count(*) FROM events WHERE project_id = ?", [pid]).fetchone()
        if held != (0,):
            raise BadInput(
                f"project {name!r} already has events: lull demo fills only an empty "
                "project; pick another with --project"
            )
        settings = get_settings(con, pid)
        if not settings.sessions_enabled:
            save_settings(con, pid, replace(settings, sessions_enabled=True))
    return pid, keys


def fill(
    con: duckdb.DuckDBPyConnection,
    pid: int,
    demo: Demo,
    *,
    now: int,
    progress: Callable[[str], None] | None = None,
) -> Filled:
    """Import the records with lull's own importer, then give the profiles their
    identity traits (the `Identity Set` properties, merged in arrival order, as the
    server does) and the anonymous ids their links to the users who signed up."""
    step = progress or (lambda _name: None)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "demo.ndjson")
        write_ndjson(demo, path)
        report = import_ndjson(con, pid, path, now=now, progress=step)
    step("profile properties")
    traits: dict[str, dict[str, Any]] = {}
    for rec in demo.records:
        if rec["name"] == "Identity Set":
            traits.setdefault(rec["profile_id"], {}).update(rec["properties"])
    encode = msgspec.json.Encoder().encode
    table = pa.table(
        {
            "profile_id": list(traits),
            "props": [encode(t).decode() for t in traits.values()],
        }
    )
    with transaction(con):
        con.register("demo_traits", table)
        con.execute(
            """UPDATE profiles SET properties = t.props::JSON FROM demo_traits t
               WHERE profiles.project_id = ? AND profiles.profile_id = t.profile_id""",
            [pid],
        )
        con.unregister("demo_traits")
        if demo.aliases:
            con.executemany(
                "INSERT INTO aliases (project_id, anonymous_id, profile_id) VALUES (?, ?, ?)",
                [(pid, a, p) for a, p in demo.aliases],
            )
    counts = con.execute(
        """SELECT (SELECT count(*) FROM profiles WHERE project_id = $pid),
                  (SELECT count(*) FROM sessions WHERE project_id = $pid),
                  (SELECT count(*) FROM sessions WHERE project_id = $pid AND concluded)""",
        {"pid": pid},
    ).fetchone()
    assert counts is not None
    profiles, sessions, concluded = (int(c) for c in counts)
    return Filled(report.records - report.duplicates, profiles, sessions, concluded, report.late)
