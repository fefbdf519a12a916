"""What a strict typed read of canonical NDJSON would cost `lull import` (issue 10).

    python bench/strict_read.py FILE

DuckDB's typed `read_json` is the anchor's read but not strict: it turns a JSON number
in a string column into its text and a string of digits in an integer column into the
number. pyarrow's JSON reader with an explicit schema is strict (either is an error), so
it could be a typed fast path with the exact validator behind it. Times, each in its own
fresh DuckDB file or in memory, one after another in this process (wall and CPU):

- DuckDB, typed columns (the anchor's read) into a table of a file;
- DuckDB, every field as JSON text (as lull reads it, to check each field's type);
- DuckDB, only `properties` (what a pyarrow read would still need DuckDB for);
- pyarrow, the seven scalar fields with an explicit schema (strict), into Arrow only.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.json as pj

TYPED = (
    "message_id: 'VARCHAR', profile_id: 'VARCHAR', name: 'VARCHAR', ts: 'BIGINT', "
    "source: 'VARCHAR', received_at: 'BIGINT', sent_at: 'BIGINT', properties: 'JSON'"
)
AS_JSON = (
    "message_id: 'JSON', profile_id: 'JSON', name: 'JSON', ts: 'JSON', source: 'JSON', "
    "received_at: 'JSON', sent_at: 'JSON', properties: 'JSON'"
)
SCALARS = pa.schema(
    [("message_id", pa.string()), ("profile_id", pa.string()), ("name", pa.string()),
     ("ts", pa.int64()), ("source", pa.string()), ("received_at", pa.int64()),
     ("sent_at", pa.int64())]
)  # fmt: skip


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(run: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), _cpu()
    run()
    return time.perf_counter() - wall, _cpu() - cpu


def duckdb_read(path: str, columns: str) -> Callable[[], object]:
    def run() -> object:
        with tempfile.TemporaryDirectory() as tmp:
            con = duckdb.connect(str(Path(tmp) / "t.duckdb"))
            con.execute("SET enable_progress_bar = false")
            q = path.replace("'", "''")
            con.execute(
                f"""BEGIN; CREATE TABLE t AS SELECT * FROM read_json('{q}',
                    format = 'newline_delimited', columns = {{{columns}}}); COMMIT"""
            )
            con.close()
        return None

    return run


def pyarrow_read(path: str) -> Callable[[], object]:
    def run() -> object:
        options = pj.ParseOptions(explicit_schema=SCALARS, unexpected_field_behavior="ignore")
        return pj.read_json(path, parse_options=options)

    return run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("file")
    a = p.parse_args(argv)
    out = {}
    for label, run in (
        ("duckdb typed columns, into a file", duckdb_read(a.file, TYPED)),
        ("duckdb JSON-text columns, into a file", duckdb_read(a.file, AS_JSON)),
        ("duckdb properties only, into a file", duckdb_read(a.file, "properties: 'JSON'")),
        ("pyarrow strict scalars, Arrow only", pyarrow_read(a.file)),
    ):
        wall, cpu = timed(run)
        out[label] = {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2)}
        print(f"{wall:7.2f} s wall {cpu:7.2f} s CPU  {label}", flush=True)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
