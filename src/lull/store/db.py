"""Opening the store: one DuckDB file, one writing process, schema checked on open."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from lull.errors import Conflict, LullError
from lull.store.schema import MIGRATIONS, SCHEMA, VERSION


def connect(
    path: str | Path,
    *,
    read_only: bool = False,
    threads: str = "",
    memory_limit: str = "1GB",
) -> duckdb.DuckDBPyConnection:
    """Open (and create or migrate) the store at `path` (`threads`: empty for DuckDB's
    default, one per core; `memory_limit`: beyond it DuckDB spills to disk)."""
    path = Path(path)
    if read_only and not path.exists():
        raise LullError(f"no store at {path}: import events first (lull import FILE)")
    if path.parent and not path.parent.exists():
        raise LullError(f"cannot create the store {path}: folder {path.parent} does not exist")
    try:
        con = duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as e:
        if "lock" in str(e).lower():
            raise Conflict(
                f"the store {path} is in use by another lull process (is `lull serve` "
                "running?); stop it, or read the data through the server's API"
            ) from None
        raise LullError(f"cannot open the store {path}: {e}") from None
    except duckdb.Error as e:
        raise LullError(f"cannot open the store {path}: {e}") from None
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    try:
        # bounded so that a big import spills to disk rather than growing without end
        con.execute(f"SET memory_limit = {literal(memory_limit)}")
        if threads:
            con.execute(f"SET threads = {int(threads)}")
    except (duckdb.Error, ValueError):
        con.close()
        raise LullError(
            f"bad LULL_MEMORY_LIMIT {memory_limit!r} or LULL_THREADS {threads!r}"
        ) from None
    if not read_only:
        _migrate(con)
        private(path, path.with_name(path.name + ".wal"))
    return con


def private(*paths: Path) -> None:
    """Make files readable by their owner only (a store written by an older lull, or
    copied in, may be open to everyone; what lull makes is private already: see
    cli.main's umask)."""
    for p in paths:
        try:
            mode = p.stat().st_mode
            if mode & 0o077:
                p.chmod(mode & 0o700)
        except OSError:
            pass  # not there (no WAL yet), or not ours: nothing to tighten


def _migrate(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("BEGIN")
    con.execute(SCHEMA)
    row = con.execute("SELECT value FROM lull_meta WHERE key = 'schema_version'").fetchone()
    current = int(row[0]) if row else VERSION
    if current > VERSION:
        con.execute("ROLLBACK")
        raise LullError(
            f"the store was written by a newer lull (schema {current} > {VERSION}): upgrade lull"
        )
    for version in range(current + 1, VERSION + 1):
        con.execute(MIGRATIONS[version])
    con.execute("INSERT OR REPLACE INTO lull_meta VALUES ('schema_version', ?)", [str(VERSION)])
    con.execute("COMMIT")


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """All or nothing: commit if the block finishes, roll back on any error."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def literal(value: int | str | list[str] | tuple[str, ...]) -> str:
    """A SQL literal, for the statements DuckDB cannot prepare (CREATE TABLE AS)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return "[" + ", ".join(literal(v) for v in value) + "]::VARCHAR[]"


def int_column(table: pa.Table, name: str) -> npt.NDArray[np.int64]:
    """A column of a query's Arrow result as an int64 NumPy array."""
    return np.asarray(table.column(name).combine_chunks().to_numpy(), dtype=np.int64)


def in_seq_order(table: pa.Table) -> pa.Table:
    """A query's Arrow result with a `seq` column, sorted by it (when it is not already)."""
    seq = int_column(table, "seq")
    if len(seq) > 1 and not bool(np.all(seq[1:] > seq[:-1])):
        return table.take(pa.array(np.argsort(seq, kind="stable")))
    return table


def profile_codes(profiles: pa.ChunkedArray) -> tuple[npt.NDArray[np.int64], pa.Array]:
    """Profile ids as int64 codes into a dictionary of the distinct ids."""
    encoded = pc.dictionary_encode(profiles).combine_chunks()
    return np.asarray(encoded.indices.to_numpy(), dtype=np.int64), encoded.dictionary
