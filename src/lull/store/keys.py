"""Project keys: one write key per source, a CleverTap-style account id and passcode, a
read token, and an admin key (changes settings, and reads). Only their SHA-256 is stored
(they are random 192-bit tokens, so a slow KDF adds nothing); each is shown once, when
made."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import duckdb

from lull.errors import BadInput
from lull.store.projects import now_ms, project_id

WRITE_KINDS = ("web", "ios", "android", "server")
# A server key's events are API events (R1: stored, never sessionized).
SOURCE_OF_KIND = {"web": "web", "ios": "ios", "android": "android", "server": "api"}


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Grant:
    """What a presented secret allows: a project, and a source to write as (or reading)."""

    project_id: int
    kind: str

    @property
    def source(self) -> str:
        return SOURCE_OF_KIND[self.kind]


def create_project(con: duckdb.DuckDBPyConnection, name: str) -> dict[str, object]:
    """Make project `name` (or give an existing one without keys its keys); returns the
    secrets, which are not stored and cannot be shown again."""
    row = con.execute("SELECT id FROM projects WHERE name = ?", [name]).fetchone()
    if row is not None and con.execute(
        "SELECT count(*) FROM project_keys WHERE project_id = ?", [row[0]]
    ).fetchone() != (0,):
        raise BadInput(f"project {name!r} already exists")
    pid = project_id(con, name)
    keys = {kind: f"lull_{kind}_{secrets.token_urlsafe(24)}" for kind in WRITE_KINDS}
    passcode = secrets.token_urlsafe(24)
    read_token = f"lull_read_{secrets.token_urlsafe(24)}"
    admin_key = f"lull_admin_{secrets.token_urlsafe(24)}"
    account_id = f"LULL-{secrets.token_hex(4).upper()}-{pid}"
    now = now_ms()
    rows = [(pid, kind, digest(key), now) for kind, key in keys.items()]
    rows += [(pid, "passcode", digest(passcode), now), (pid, "read", digest(read_token), now)]
    rows.append((pid, "admin", digest(admin_key), now))
    con.executemany("INSERT INTO project_keys VALUES (?, ?, ?, ?)", rows)
    con.execute("UPDATE projects SET account_id = ? WHERE id = ?", [account_id, pid])
    return {
        "name": name,
        "keys": keys,
        "account_id": account_id,
        "passcode": passcode,
        "read_token": read_token,
        "admin_key": admin_key,
    }


def list_projects(con: duckdb.DuckDBPyConnection) -> list[dict[str, object]]:
    rows = con.execute(
        """SELECT p.name, p.account_id, p.sessions_enabled,
                  (SELECT count(*) FROM events e WHERE e.project_id = p.id)
           FROM projects p ORDER BY p.name"""
    ).fetchall()
    return [
        {"name": n, "account_id": a, "sessions": "on" if s else "off", "events": int(c)}
        for n, a, s, c in rows
    ]


def load_grants(con: duckdb.DuckDBPyConnection) -> dict[str, Grant]:
    """Every key's hash -> what it grants (the server keeps this in memory)."""
    rows = con.execute("SELECT key_hash, project_id, kind FROM project_keys").fetchall()
    return {h: Grant(int(p), str(k)) for h, p, k in rows}


def account_ids(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    rows = con.execute("SELECT account_id, id FROM projects WHERE account_id IS NOT NULL")
    return {str(a): int(i) for a, i in rows.fetchall()}
