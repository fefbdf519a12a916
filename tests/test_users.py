"""Accounts: scrypt hashes, memberships, and `lull user create/grant/list`."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lull.store.db import connect, transaction
from lull.store.users import (
    create_user,
    hash_password,
    memberships,
    password_hash,
    session_secret,
    verify_password,
)
from lullrun import lull, lull_process
from serverproc import LullServer


@settings(max_examples=8, deadline=None)  # scrypt is slow on purpose
@given(st.text(min_size=8, max_size=40), st.text(min_size=1, max_size=40))
def test_a_password_checks_against_its_hash_and_nothing_else(password: str, other: str) -> None:
    stored = hash_password(password)
    assert password not in stored
    assert verify_password(password, stored)
    assert not verify_password(password + other, stored)


def test_each_hash_has_its_own_salt() -> None:
    assert hash_password("same password") != hash_password("same password")


@pytest.mark.parametrize("stored", ["", "plain", "scrypt$1$2$3$x$y", "md5$1$1$1$AA==$AA=="])
def test_a_malformed_hash_never_matches(stored: str) -> None:
    assert not verify_password("anything at all", stored)


def test_create_and_grant_give_roles_per_project(db_path: Path) -> None:
    con = connect(db_path)
    with transaction(con):
        create_user(con, "ann", "long enough", "music", "admin")
    done = lull(db_path, "user", "grant", "ann", "--project", "radio", "--role", "viewer")
    assert done.code == 0, done.err
    con.close()
    con = connect(db_path, read_only=True)
    assert [(m.project, m.role) for m in memberships(con, "ann")] == [
        ("music", "admin"),
        ("radio", "viewer"),
    ]
    stored = password_hash(con, "ann")
    assert stored is not None and verify_password("long enough", stored)


def test_the_cli_reads_a_password_from_stdin_and_lists_users(db_path: Path) -> None:
    made = lull_process(
        db_path, "user", "create", "bob", "--project", "music", "--role", "viewer",
        "--password-stdin", stdin="a fine password\n",
    )  # fmt: skip
    assert made.code == 0, made.err
    listed = lull(db_path, "user", "list")
    assert listed.json() == [{"name": "bob", "projects": [{"project": "music", "role": "viewer"}]}]
    assert "a fine password" not in db_path.read_bytes().decode("latin-1")


@pytest.mark.parametrize(
    ("args", "password", "message"),
    [
        (["user", "create", "a b", "--project", "p"], "long enough", "bad user name"),
        (["user", "create", "ann", "--project", "p"], "short", "8 to 1024 characters"),
        (["user", "create", "ann", "--project", "p", "--role", "root"], "long enough", "root"),
        (["user", "grant", "nobody", "--project", "p", "--role", "admin"], "", "no user named"),
    ],
)
def test_bad_input_gets_one_clear_line_and_changes_nothing(
    db_path: Path, args: list[str], password: str, message: str
) -> None:
    more = ["--password-stdin"] if args[1] == "create" else []
    done = lull(db_path, *args, *more, stdin=password + "\n")
    assert done.code != 0
    assert message in done.err and len(done.err.strip().splitlines()) == 1
    listed = lull(db_path, "user", "list")
    assert listed.code == 0 and listed.json() == []


def test_a_second_create_of_a_name_is_refused(db_path: Path) -> None:
    con = connect(db_path)
    create_user(con, "ann", "long enough", "music", "admin")
    with pytest.raises(Exception, match="already exists"):
        create_user(con, "ann", "another one", "music", "viewer")


def test_the_cookie_secret_is_made_once_and_kept(db_path: Path) -> None:
    con = connect(db_path)
    first = session_secret(con)
    con.close()
    con = connect(db_path)
    assert session_secret(con) == first and len(first) >= 48


def test_the_password_prompt_asks_twice(db_path: Path) -> None:
    made = lull_process(db_path, "user", "create", "pat", "--project", "music",
                        stdin="first password\nfirst password\n")  # fmt: skip
    assert made.code == 0, made.err
    refused = lull_process(db_path, "user", "create", "pia", "--project", "music",
                           stdin="one password\nanother one\n")  # fmt: skip
    assert refused.code != 0 and "do not match" in refused.out + refused.err
    con = connect(db_path, read_only=True)
    stored = password_hash(con, "pat")
    assert stored is not None and verify_password("first password", stored)
    assert password_hash(con, "pia") is None


def test_the_cookie_secret_is_a_private_file_beside_the_store(tmp_path: Path) -> None:
    """Whoever may read the store cannot forge a session: the secret is not in it, and
    what lull writes is readable by its owner only."""
    db = tmp_path / "lull.duckdb"
    with LullServer(db) as srv:
        srv.start()
        assert srv.stop() == 0
    secret = db.with_name("lull.duckdb.secret")
    assert secret.stat().st_mode & 0o777 == 0o600
    assert db.stat().st_mode & 0o077 == 0
    con = duckdb.connect(str(db), read_only=True)
    try:
        held = con.execute("SELECT count(*) FROM lull_meta WHERE key = 'session_secret'")
        assert held.fetchone() == (0,)
    finally:
        con.close()


def test_an_older_stores_secret_moves_out_and_its_files_close(tmp_path: Path) -> None:
    db = tmp_path / "old.duckdb"
    con = connect(str(db))
    con.execute("INSERT INTO lull_meta VALUES ('session_secret', 'the-old-one')")
    con.close()
    db.chmod(0o644)  # as lull once left it
    con = connect(str(db))
    try:
        assert session_secret(con) == "the-old-one"  # sessions signed with it stay valid
        assert con.execute(
            "SELECT count(*) FROM lull_meta WHERE key = 'session_secret'"
        ).fetchone() == (0,)
    finally:
        con.close()
    assert db.with_name("old.duckdb.secret").read_text().strip() == "the-old-one"
    assert db.stat().st_mode & 0o077 == 0
