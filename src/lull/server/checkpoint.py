"""The live engine's checkpoint: its state saved at a clean stop, loaded at the next start.

Rebuilding the live state from the store (`LiveEngine._state`: an aggregate of the whole
sessions table) takes time that grows with the store. At a clean stop the engine writes
its state to a file next to the store (`<db>.live`, an Arrow IPC file): per project its
profiles table (`vector.Profiles`), the store key of each open session, the counters and
the clock, and a fingerprint of what the store holds then (the log position applied, the
projects' counters and settings, a summary of the sessions table). The store records the
file's token (`lull_meta`, key `live_checkpoint`) in the same stop.

At start the file is used as it is when all of it matches: the token is the store's, and
the fingerprint is the store's now. Anything that wrote to the store in between (`lull
import`, `lull resessionize`, a settings change, another server) changes the fingerprint,
and a start consumes the token (it is removed as the server starts writing).

A started server also saves its state (`LiveEngine._save_base`, unless it loaded that
very file) and records the file's token in its start mark (lull_meta `live_unclean`:
what it had applied when it started). After a kill, the next start loads that file
(`exact=False`: the settings must match, the rest of the store has moved on) and
rebuilds from the store only the profiles touched since the mark (`LiveEngine._caught_up`).
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from lull.engine import vector
from lull.store.log import Position

VERSION = 1
TOKEN_KEY = "live_checkpoint"
_META = b"lull.live"
_OBJECTS = ("profile_id", "open_id", "open_source", "latest_id")
_INTS = ("open_first", "open_last", "open_events", "horizon", "latest_first")


@dataclass(slots=True)
class Saved:
    """One project's state as saved."""

    next_seq: int
    next_skey: int
    clock: int
    table: vector.Profiles
    keys: np.ndarray
    known: pa.Array


def fingerprint(con: duckdb.DuckDBPyConnection, applied: Position) -> dict[str, Any]:
    """What the live state depends on in the store, summed up (a scan of the sessions
    table's integer columns: milliseconds)."""
    projects = con.execute(
        """SELECT id, next_seq, next_skey, sessions_enabled, timeout_ms, excluded::VARCHAR
           FROM projects ORDER BY id"""
    ).fetchall()
    sessions = con.execute(
        """SELECT project_id, count(*), sum(skey), sum(first_ts), sum(last_ts), sum(events),
                  count(*) FILTER (WHERE concluded), sum(skey) FILTER (WHERE concluded)
           FROM sessions GROUP BY 1 ORDER BY 1"""
    ).fetchall()
    return {
        "applied": [applied.segment, applied.offset],
        "projects": [[str(v) for v in row] for row in projects],
        "sessions": [[str(v) for v in row] for row in sessions],
    }


def save(
    path: str, con: duckdb.DuckDBPyConnection, applied: Position, projects: dict[int, Any]
) -> str:
    """Write the state of `projects` (pid -> live._Project) to `path` (atomically) and
    return its token; the caller stores the token in the store."""
    token = secrets.token_hex(16)
    tables: list[pa.Table] = []
    meta: dict[str, Any] = {"version": VERSION, "token": token, "projects": {}}
    for pid, project in sorted(projects.items()):
        t: vector.Profiles = project.table
        n = len(t)
        columns: dict[str, pa.Array] = {"profile_id": project.known.cast(pa.string())}
        for name in _OBJECTS[1:]:
            columns[name] = pa.array(getattr(t, name), pa.string())
        for name in _INTS:
            columns[name] = pa.array(getattr(t, name), pa.int64())
        columns["key"] = pa.array(project.keys, pa.int64())
        tables.append(pa.table(columns))
        meta["projects"][str(pid)] = {
            "next_seq": project.next_seq,
            "next_skey": project.next_skey,
            "clock": project.clock,
            "rows": n,
        }
    meta["fingerprint"] = fingerprint(con, applied)
    schema = _schema().with_metadata({_META: json.dumps(meta)})
    table = pa.concat_tables(tables).cast(schema) if tables else schema.empty_table()
    part = Path(path + ".part")
    with pa.OSFile(str(part), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        writer.write_table(table)
    fd = os.open(part, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(part, path)
    return token


def load(
    path: str,
    con: duckdb.DuckDBPyConnection,
    applied: Position,
    token: str | None,
    *,
    exact: bool = True,
) -> dict[int, Saved] | None:
    """The saved state, if the file at `path` has this token and matches the store: its
    fingerprint now (`exact`), or else only the projects' settings (the caller then
    rebuilds the profiles touched since from the store); else None."""
    if token is None or not os.path.exists(path):
        return None
    try:
        with pa.OSFile(path) as source:  # read whole: nothing stays mapped to the file
            table = pa.ipc.open_file(source).read_all()
        meta = json.loads(table.schema.metadata[_META])
    except (OSError, pa.ArrowInvalid, KeyError, ValueError):
        return None
    if meta.get("version") != VERSION or meta.get("token") != token:
        return None
    now = fingerprint(con, applied)
    if exact and meta.get("fingerprint") != now:
        return None
    if not exact and _settings(meta.get("fingerprint", {})) != _settings(now):
        return None
    out: dict[int, Saved] = {}
    at = 0
    for pid, info in meta["projects"].items():
        rows = table.slice(at, info["rows"])
        at += info["rows"]

        def objects(name: str, rows: pa.Table = rows) -> np.ndarray:
            values = np.empty(rows.num_rows, dtype=object)
            values[:] = rows.column(name).to_pylist()
            return values

        def ints(name: str, rows: pa.Table = rows) -> np.ndarray:
            return np.array(rows.column(name).to_numpy(), dtype=np.int64)

        profiles = vector.Profiles(
            profile_id=objects("profile_id"),
            open_id=objects("open_id"),
            open_first=ints("open_first"),
            open_last=ints("open_last"),
            open_events=ints("open_events"),
            open_source=objects("open_source"),
            horizon=ints("horizon"),
            latest_first=ints("latest_first"),
            latest_id=objects("latest_id"),
        )
        known = rows.column("profile_id").combine_chunks()
        out[int(pid)] = Saved(
            int(info["next_seq"]), int(info["next_skey"]), int(info["clock"]), profiles,
            ints("key"), known,
        )  # fmt: skip
    return out


def _settings(found: dict[str, Any]) -> dict[str, list[str]]:
    """Each project's settings (sessions on, timeout, excluded names) in a fingerprint."""
    return {row[0]: row[3:] for row in found.get("projects", [])}


def _schema() -> pa.Schema:
    fields = [pa.field(n, pa.string()) for n in _OBJECTS]
    fields += [pa.field(n, pa.int64()) for n in _INTS]
    return pa.schema([*fields, pa.field("key", pa.int64())])
