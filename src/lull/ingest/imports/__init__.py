"""What `lull import` reads besides canonical NDJSON, turned into canonical NDJSON that the
import then reads unchanged (docs/import.md):

- canonical records gzip-compressed, or in Parquet or CSV with the canonical columns;
- with `--from`, the exports of Segment, Amplitude, Mixpanel and PostHog, mapped by the
  live endpoints' own conversions (tools.py), identity links included (convert.py).

The canonical file is written next to the store and deleted afterwards. The canonical
record has no field for identity links or profile properties, so those are written to the
store by `Prepared.finish` once the import has committed (as the live server writes them).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import msgspec

from lull.errors import BadInput
from lull.ingest.imports import canonical
from lull.ingest.imports.convert import Result, convert
from lull.ingest.imports.tools import TOOLS
from lull.server.identity import Target
from lull.store.db import transaction

FORMATS = tuple(TOOLS)
_LINE = re.compile(r"^line (\d+): ")


@dataclass(slots=True)
class Prepared:
    """The canonical NDJSON to import, and what to write once it is imported."""

    path: str
    found: Result = field(default_factory=Result)

    def finish(self, con: duckdb.DuckDBPyConnection, pid: int) -> dict[str, int]:
        """Store the identity links and profile properties the input made, as the live
        server stores them (server/writes.py), in one transaction; returns their counts."""
        from lull.server.writes import Rows, write

        if self.found.links or self.found.traits:
            rows = Rows()
            rows.aliases = [(pid, anonymous, tie) for anonymous, tie in self.found.links]
            rows.traits = [
                (pid, profile, msgspec.json.encode(props).decode(), at)
                for profile, props, at in self.found.traits
            ]
            with transaction(con):
                write(con, rows, {})
        return {"identity_links": len(self.found.links), "profile_updates": len(self.found.traits)}


@contextmanager
def prepare(
    con: duckdb.DuckDBPyConnection,
    pid: int,
    path: str,
    *,
    tool: str | None,
    source: str | None,
    shown: str,
    spool: str,
    now: int,
    progress: Callable[[str], None],
) -> Iterator[Prepared]:
    """The input at `path` (named `shown` in errors) as canonical NDJSON: itself when it
    is already that, else a file in the folder `spool`, deleted on leaving. A BadInput
    raised inside the block about that file is told of the input instead."""
    if source is not None and tool is None:
        raise BadInput("--source goes with --from (canonical records carry their own source)")
    if tool is not None and tool not in TOOLS:
        raise BadInput(f"--from {tool!r}: not one of {', '.join(FORMATS)}")
    with _spooled(spool) as out:
        if tool is not None:
            found = convert(
                tool, path, shown, out, source=source or "web", known=_aliases(con, pid),
                now=now, progress=progress,
            )  # fmt: skip
            prepared, told = Prepared(out, found), "converted"
        else:
            made, told = _canonical(path, shown, out, spool, progress)
            prepared = Prepared(made)
        try:
            yield prepared
        except BadInput as e:
            if prepared.path == path:
                raise BadInput(e.message.replace(path, shown, 1)) from None
            raise BadInput(_told(e.message, out, shown, told)) from None


def _canonical(
    path: str, shown: str, out: str, spool: str, progress: Callable[[str], None]
) -> tuple[str, str]:
    """A canonical input as NDJSON: the file itself, or `out` made from it; and how the
    import's "line N" of that file reads of the input ("line", or "row" of a table)."""
    fmt = canonical.kind(path, shown)
    if fmt == "ndjson":
        return path, "line"
    if fmt == "gzip":
        progress("decompress")
        canonical.gunzip(path, out, shown)
        fmt = canonical.kind(out, shown.removesuffix(".gz"))
        if fmt == "ndjson":
            return out, "line"
        with _spooled(spool) as table:
            os.replace(out, table)
            canonical.table_to_ndjson(table, fmt, out, shown)
        return out, "row"
    progress(f"read {fmt}")
    canonical.table_to_ndjson(path, fmt, out, shown)
    return out, "row"


def _told(message: str, made: str, shown: str, told: str) -> str:
    """An import error about the file made from the input as one about the input: its
    name, and the place as `told` (line N of a table's NDJSON is its row N; records
    converted from a tool's export were checked one by one already, so an error left is
    told of the converted file)."""
    if not message.startswith(made):
        return message
    rest = message[len(made) :].removeprefix(": ")
    if told == "row":
        rest = _LINE.sub(r"row \1: ", rest)
    elif told == "converted":
        return f"{shown} (as converted to canonical records): {rest}"
    return f"{shown}: {rest}"


@contextmanager
def _spooled(folder: str) -> Iterator[str]:
    """A new file's name in `folder` (next to the store), removed on leaving."""
    fd, name = tempfile.mkstemp(prefix=".lull-import-", suffix=".ndjson", dir=folder or ".")
    os.close(fd)
    try:
        yield name
    finally:
        for leftover in (name, f"{name}.sorted"):
            with suppress(FileNotFoundError):
                Path(leftover).unlink()


def _aliases(con: duckdb.DuckDBPyConnection, pid: int) -> dict[str, Target]:
    """The project's identity links in the store (the last row of an id counts)."""
    out: dict[str, Target] = {}
    rows = con.execute(
        "SELECT anonymous_id, profile_id, since FROM aliases WHERE project_id = ?", [pid]
    ).fetchall()
    for anonymous, profile, since in rows:
        out[str(anonymous)] = Target(str(profile), None if since is None else int(since))
    return out
