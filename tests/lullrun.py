"""Running the real `lull` command from tests: in-process (fast) or as a subprocess."""

from __future__ import annotations

import io
import itertools
import json
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lull.cli import main

LULL = str(Path(sys.executable).with_name("lull"))


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def lull(db: Path, *args: str, stdin: str | None = None) -> Result:
    """`lull --db DB ARGS...` in this process (the same code path as the command)."""
    out, err = io.StringIO(), io.StringIO()
    was = sys.stdin
    if stdin is not None:
        sys.stdin = io.StringIO(stdin)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = main(["--db", str(db), *args])
    finally:
        sys.stdin = was
    return Result(code, out.getvalue(), err.getvalue())


def lull_process(db: Path, *args: str, stdin: str | None = None) -> Result:
    """`lull --db DB ARGS...` as a separate process."""
    done = subprocess.run(
        [LULL, "--db", str(db), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, "LULL_DB": ""},
        check=False,
        timeout=300,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def write_events(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


def export(db: Path, what: str, tmp: Path) -> list[dict[str, Any]]:
    """`lull export WHAT` read back as a list of records."""
    target = tmp / f"{what}.ndjson"
    result = lull(db, "export", what, "-o", str(target))
    assert result.code == 0, result.err
    return [json.loads(line) for line in target.read_text().splitlines()]


def read_exact(path: Path) -> list[dict[str, Any]]:
    """NDJSON read back exactly: split at newlines only (a U+2028 inside a string is not
    one, as `str.splitlines` takes it), floats kept apart from integers (and -0.0 from 0.0)."""
    lines = path.read_text(encoding="utf-8").split("\n")
    return [exact_json(line) for line in lines if line]


def exact_json(text: str) -> Any:
    """JSON with its floats as ("float", repr): 1.0 is not 1, and -0.0 is not 0.0."""
    return json.loads(text, parse_float=lambda s: ("float", repr(float(s))))


def exported(db: Path, project: str, name: str) -> list[dict[str, Any]]:
    """`lull --project PROJECT export events` to the file `name` beside the store, read
    back exactly (read_exact)."""
    target = db.with_name(name)
    done = lull(db, "--project", project, "export", "events", "-o", str(target))
    assert done.code == 0, done.err
    return read_exact(target)


# An event as a client sent it: what an import of an export must give back unchanged (its
# session and lateness follow from the project's settings and the order of arrival).
SENT = ("message_id", "profile_id", "name", "ts", "source", "received_at", "properties")


def assert_reimported_unchanged(
    db: Path, project: str, fields: tuple[str, ...] | None = None
) -> list[dict[str, Any]]:
    """Export PROJECT's events, `lull import` the export into a fresh store, export that,
    and assert the two exports hold the same events, field by field (`fields` only, when
    given); returns the first export. lull's own Session Concluded events are left out of
    the import (no client may send one; the import raises its own)."""
    n = next(_runs)
    first = exported(db, project, f"{db.name}.{project}.{n}.first.ndjson")
    sent = [e for e in first if e["name"] != "Session Concluded"]
    lines = db.with_name(f"{db.name}.{project}.{n}.first.ndjson").read_text("utf-8").split("\n")
    source = db.with_name(f"{db.name}.{project}.{n}.sent.ndjson")
    kept = [line for line in lines if line and exact_json(line)["name"] != "Session Concluded"]
    source.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    fresh = db.with_name(f"{db.name}.{project}.{n}.again.duckdb")
    done = lull(fresh, "--project", project, "import", str(source))
    assert done.code == 0, done.err
    again = exported(fresh, project, f"{db.name}.{project}.{n}.again.ndjson")
    again = [e for e in again if e["name"] != "Session Concluded"]
    a, b = _by_id(sent, fields), _by_id(again, fields)
    assert a.keys() == b.keys(), (a.keys() - b.keys(), b.keys() - a.keys())
    changed = [(a[m], b[m]) for m in a if a[m] != b[m]]
    assert not changed, changed[:3]
    return first


_runs = itertools.count()


def _by_id(
    events: list[dict[str, Any]], fields: tuple[str, ...] | None
) -> dict[str, dict[str, Any]]:
    found = {e["message_id"]: {k: e[k] for k in fields or e} for e in events}
    assert len(found) == len(events), "an export holds each message id once"
    return found
