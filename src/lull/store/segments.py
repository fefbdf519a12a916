"""Saved segments and their webhooks' delivery log (tables `segments`, `segment_deliveries`)."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

import duckdb

from lull.errors import BadInput, NotFound
from lull.model import format_time
from lull.store.projects import now_ms

MAX_SEGMENTS = 500  # a project's
DELIVERIES_SHOWN = 100
DELIVERIES_KEPT = 10_000  # a segment's latest attempts kept in the log


@dataclass(frozen=True, slots=True)
class Saved:
    """A segment as stored: its definition is JSON (segments/definition.py reads it)."""

    project_id: int
    name: str
    kind: str  # past | live
    definition: dict[str, Any]
    webhook: str | None
    secret: str | None
    created_at: int

    def as_json(self, secret: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "definition": self.definition,
            "created_at": format_time(self.created_at),
        }
        if self.kind == "live":
            out["webhook"] = self.webhook
            if secret:
                out["secret"] = self.secret
        return out


_COLUMNS = "project_id, name, kind, definition, webhook, secret, created_at"


def _saved(row: tuple[Any, ...]) -> Saved:
    pid, name, kind, definition, webhook, secret, created = row
    return Saved(int(pid), name, kind, json.loads(definition), webhook, secret, int(created))


def save(
    con: duckdb.DuckDBPyConnection, pid: int, name: str, kind: str, definition: dict[str, Any],
    webhook: str | None = None,
) -> Saved:  # fmt: skip
    """A new segment (a live one gets a new signing secret); a name in use is refused."""
    taken = con.execute(
        "SELECT count(*) FILTER (WHERE name = ?), count(*) FROM segments WHERE project_id = ?",
        [name, pid],
    ).fetchone()
    assert taken is not None
    if taken[0]:
        raise BadInput(f"a segment named {name!r} exists already: delete it first, or pick another")
    if taken[1] >= MAX_SEGMENTS:
        raise BadInput(f"at most {MAX_SEGMENTS} segments in a project")
    secret = "whsec_" + secrets.token_urlsafe(24) if kind == "live" else None
    made = Saved(pid, name, kind, definition, webhook, secret, now_ms())
    con.execute(
        f"INSERT INTO segments ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [pid, name, kind, json.dumps(definition), webhook, secret, made.created_at],
    )
    return made


def get(con: duckdb.DuckDBPyConnection, pid: int, name: str) -> Saved:
    row = con.execute(
        f"SELECT {_COLUMNS} FROM segments WHERE project_id = ? AND name = ?", [pid, name]
    ).fetchone()
    if row is None:
        raise NotFound(f"no segment named {name[:100]!r} in this project")
    return _saved(row)


def listed(con: duckdb.DuckDBPyConnection, pid: int) -> list[Saved]:
    """A project's segments by name."""
    rows = con.execute(
        f"SELECT {_COLUMNS} FROM segments WHERE project_id = ? ORDER BY name", [pid]
    ).fetchall()
    return [_saved(r) for r in rows]


def live(con: duckdb.DuckDBPyConnection) -> list[Saved]:
    """Every project's live segments."""
    rows = con.execute(
        f"SELECT {_COLUMNS} FROM segments WHERE kind = 'live' ORDER BY project_id, name"
    ).fetchall()
    return [_saved(r) for r in rows]


def delete(con: duckdb.DuckDBPyConnection, pid: int, name: str) -> None:
    get(con, pid, name)
    con.execute("DELETE FROM segments WHERE project_id = ? AND name = ?", [pid, name])
    con.execute("DELETE FROM segment_deliveries WHERE project_id = ? AND segment = ?", [pid, name])


Attempt = tuple[int, str, str | None, str | None, int, int, int | None, str, str | None]


def log_attempts(con: duckdb.DuckDBPyConnection, attempts: list[Attempt]) -> None:
    """Delivery attempts: (project, segment, message id, profile, attempt, at, status,
    outcome, error)."""
    con.executemany("INSERT INTO segment_deliveries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", attempts)


def prune_deliveries(con: duckdb.DuckDBPyConnection, keep: int = DELIVERIES_KEPT) -> None:
    """Keep each segment's latest `keep` attempts (the log would grow without end)."""
    con.execute(
        """DELETE FROM segment_deliveries d USING (
               SELECT project_id, segment, attempted_at AS since FROM (
                   SELECT project_id, segment, attempted_at, row_number() OVER (
                       PARTITION BY project_id, segment ORDER BY attempted_at DESC) AS n
                   FROM segment_deliveries) WHERE n = ?) k
           WHERE d.project_id = k.project_id AND d.segment = k.segment
             AND d.attempted_at < k.since""",
        [keep],
    )


def deliveries(
    con: duckdb.DuckDBPyConnection, pid: int, name: str, limit: int = DELIVERIES_SHOWN
) -> list[dict[str, Any]]:
    """A segment's latest delivery attempts, newest first."""
    rows = con.execute(
        """SELECT message_id, profile_id, attempt, attempted_at, status, outcome, error
           FROM segment_deliveries WHERE project_id = ? AND segment = ?
           ORDER BY attempted_at DESC, attempt DESC LIMIT ?""",
        [pid, name, limit],
    ).fetchall()
    keys = ("message_id", "profile_id", "attempt", "attempted_at", "status", "outcome", "error")
    out = [dict(zip(keys, r, strict=True)) for r in rows]
    for d in out:
        d["attempted_at"] = format_time(int(d["attempted_at"]))
    return out
