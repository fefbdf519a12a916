"""Running the real `lull` command from tests: in-process (fast) or as a subprocess."""

from __future__ import annotations

import io
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
