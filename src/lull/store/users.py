"""Accounts of the web pages: users (a scrypt hash of the password), their memberships
(project and role), and the secret that signs the session cookie."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import duckdb

from lull.errors import BadInput
from lull.store.db import private
from lull.store.projects import now_ms, project_id

ROLES = ("admin", "viewer")
# scrypt at n=2**14, r=8 takes ~16 MB and tens of ms: slow for guessing, quick to sign in.
_N, _R, _P = 2**14, 8, 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024


@dataclass(frozen=True, slots=True)
class Membership:
    project: str
    project_id: int
    role: str


def hash_password(password: str) -> str:
    """`scrypt$n$r$p$salt$hash`, salt and hash in base64."""
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return "$".join(["scrypt", str(_N), str(_R), str(_P), _b64(salt), _b64(key)])


def verify_password(password: str, stored: str) -> bool:
    if len(password) > MAX_PASSWORD:
        return False
    try:
        kind, n, r, p, salt, key = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(base64.b64decode(key)),
        )
    except ValueError:
        return False
    return hmac.compare_digest(got, base64.b64decode(key))


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise BadInput(
            f"bad user name {name!r}: 1 to 64 letters, digits and . _ @ -, starting with "
            "a letter or digit"
        )
    return name


def check_password(password: str) -> str:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise BadInput(f"a password needs {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return password


def check_role(role: str) -> str:
    if role not in ROLES:
        raise BadInput(f"bad role {role!r}: use admin or viewer")
    return role


def create_user(
    con: duckdb.DuckDBPyConnection, name: str, password: str, project: str, role: str
) -> None:
    """A new user with a role in `project` (made on first use, as everywhere in lull)."""
    check_name(name)
    check_password(password)
    check_role(role)
    if user_exists(con, name):
        raise BadInput(f"user {name!r} already exists: use `lull user grant`")
    con.execute("INSERT INTO users VALUES (?, ?, ?)", [name, hash_password(password), now_ms()])
    grant(con, name, project, role)


def grant(con: duckdb.DuckDBPyConnection, name: str, project: str, role: str) -> None:
    """Give `name` the role in `project` (replacing the role it had there)."""
    check_role(role)
    if not user_exists(con, name):
        raise BadInput(f"no user named {name!r}: make it with `lull user create`")
    pid = project_id(con, project)
    con.execute("DELETE FROM memberships WHERE user_name = ? AND project_id = ?", [name, pid])
    con.execute("INSERT INTO memberships VALUES (?, ?, ?)", [name, pid, role])


def list_users(con: duckdb.DuckDBPyConnection) -> list[dict[str, object]]:
    rows = con.execute(
        """SELECT u.name, p.name, m.role FROM users u
           LEFT JOIN memberships m ON m.user_name = u.name
           LEFT JOIN projects p ON p.id = m.project_id
           ORDER BY u.name, p.name"""
    ).fetchall()
    out: dict[str, list[dict[str, str]]] = {}
    for user, project, role in rows:
        grants = out.setdefault(str(user), [])
        if project is not None:
            grants.append({"project": str(project), "role": str(role)})
    return [{"name": n, "projects": g} for n, g in out.items()]


def end_sessions(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """End every session of `name` (on every device): cookies made before now are void."""
    con.execute("INSERT OR REPLACE INTO signouts VALUES (?, ?)", [name, now_ms()])


def sessions_ended(con: duckdb.DuckDBPyConnection, name: str) -> int | None:
    """When `name`'s sessions last ended (ms), if ever."""
    row = con.execute("SELECT ended_at FROM signouts WHERE user_name = ?", [name]).fetchone()
    return None if row is None else int(row[0])


def set_password(con: duckdb.DuckDBPyConnection, name: str, password: str) -> None:
    """A new password; the user's sessions end."""
    check_password(password)
    if not user_exists(con, name):
        raise BadInput(f"no user named {name!r}")
    con.execute(
        "UPDATE users SET password_hash = ? WHERE name = ?", [hash_password(password), name]
    )
    end_sessions(con, name)


def remove_user(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """The user and its roles gone; its sessions end with it."""
    if not user_exists(con, name):
        raise BadInput(f"no user named {name!r}")
    con.execute("DELETE FROM memberships WHERE user_name = ?", [name])
    con.execute("DELETE FROM users WHERE name = ?", [name])
    end_sessions(con, name)


def user_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return con.execute("SELECT 1 FROM users WHERE name = ?", [name]).fetchone() is not None


def password_hash(con: duckdb.DuckDBPyConnection, name: str) -> str | None:
    row = con.execute("SELECT password_hash FROM users WHERE name = ?", [name]).fetchone()
    return None if row is None else str(row[0])


def memberships(con: duckdb.DuckDBPyConnection, name: str) -> list[Membership]:
    """The projects `name` may see, by project name."""
    rows = con.execute(
        """SELECT p.name, p.id, m.role FROM memberships m JOIN projects p ON p.id = m.project_id
           WHERE m.user_name = ? ORDER BY p.name""",
        [name],
    ).fetchall()
    return [Membership(str(n), int(i), str(r)) for n, i, r in rows]


def session_secret(con: duckdb.DuckDBPyConnection) -> str:
    """The key that signs the web pages' session cookie, made on first start. It is kept
    out of the store, in a file of its own beside it (`<db>.secret`, readable by its
    owner only), so that whoever may read the data cannot forge a session; a store of an
    older lull that held it has it moved there."""
    row = con.execute(
        "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
    )
    found = row.fetchone()
    held = con.execute("SELECT value FROM lull_meta WHERE key = 'session_secret'").fetchone()
    if found is None or not found[0]:  # an in-memory store: nowhere else to keep it
        secret = str(held[0]) if held else secrets.token_urlsafe(48)
        if not held:
            con.execute("INSERT INTO lull_meta VALUES ('session_secret', ?)", [secret])
        return secret
    path = Path(str(found[0]) + ".secret")
    if path.exists():
        private(path)
        secret = path.read_text().strip()
    else:
        secret = str(held[0]) if held else secrets.token_urlsafe(48)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secret + "\n")
            f.flush()
            os.fsync(f.fileno())
    if held:
        con.execute("DELETE FROM lull_meta WHERE key = 'session_secret'")
    return secret


def first_admin(con: duckdb.DuckDBPyConnection) -> str | None:
    """On a store with no accounts, make `admin`, an admin of every project, and return
    its new random password (to be shown once); otherwise None."""
    if con.execute("SELECT count(*) FROM users").fetchone() != (0,):
        return None
    password = secrets.token_urlsafe(12)
    con.execute("INSERT INTO users VALUES ('admin', ?, ?)", [hash_password(password), now_ms()])
    con.execute("INSERT INTO memberships SELECT 'admin', id, 'admin' FROM projects")
    return password
