"""Canonical records in other files: gzip-compressed NDJSON, Parquet and CSV with the
canonical columns -> canonical NDJSON, written by DuckDB in file order (row N of the input
is line N of the output, so the import's "line N" is the input's row N)."""

from __future__ import annotations

import gzip
import shutil

import duckdb

from lull.errors import BadInput
from lull.ingest.imports.inputs import GZIP, PARQUET, ZIP, head, is_csv, streams

REQUIRED = ("message_id", "profile_id", "name", "ts", "source")
OPTIONAL = ("received_at", "sent_at", "properties")
TIMES = ("ts", "received_at", "sent_at")


def kind(path: str, shown: str) -> str:
    """What a canonical input is: ndjson, gzip (of NDJSON or CSV), parquet or csv."""
    start = head(path)
    if start == PARQUET:
        return "parquet"
    if start[:2] == GZIP:
        return "gzip"
    if start == ZIP:
        raise BadInput(
            f"{shown}: a zip file is taken with --from (a tool's export); "
            "canonical records come as NDJSON, gzip, Parquet or CSV"
        )
    for _member, stream in streams(path, shown):
        return "csv" if is_csv(stream, shown) else "ndjson"
    return "ndjson"


def gunzip(path: str, out: str, shown: str) -> None:
    try:
        with gzip.open(path, "rb") as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except (OSError, EOFError) as e:
        raise BadInput(f"{shown}: cannot be read as gzip ({e})") from None


def table_to_ndjson(path: str, fmt: str, out: str, shown: str) -> None:
    """Write a canonical Parquet or CSV file as NDJSON, row N as line N."""
    con = duckdb.connect()
    try:
        q = path.replace("'", "''")
        source = (
            f"read_parquet('{q}')"
            if fmt == "parquet"
            else f"read_csv('{q}', header = true, all_varchar = true, delim = ',', "
            "quote = '\"', escape = '\"')"
        )
        try:
            described = con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
            types = {str(r[0]): str(r[1]) for r in described}
        except duckdb.Error as e:
            raise BadInput(f"{shown}: cannot be read as {fmt.upper()} ({_first(e)})") from None
        missing = [c for c in REQUIRED if c not in types]
        if missing:
            raise BadInput(
                f"{shown}: no column {', '.join(repr(c) for c in missing)} "
                f"(canonical columns: {', '.join(REQUIRED + OPTIONAL)})"
            )
        columns = [f"{_value(c, types[c])} AS {c}" for c in REQUIRED + OPTIONAL if c in types]
        target = out.replace("'", "''")
        try:
            con.execute(
                f"COPY (SELECT {', '.join(columns)} FROM {source}) TO '{target}' (FORMAT json)"
            )
        except duckdb.Error as e:
            raise BadInput(f"{shown}: cannot be read as {fmt.upper()} ({_first(e)})") from None
    finally:
        con.close()


def _value(column: str, kind: str) -> str:
    """A column as the JSON value of the canonical field: times as epoch ms (from a
    TIMESTAMP, an integer, or text of digits) or ISO text; properties as an object (from
    JSON text or a STRUCT/MAP). Whatever is left wrong, the import names by row and field."""
    c = f'"{column}"'
    upper = kind.upper()
    if column in TIMES:
        if upper.startswith(("TIMESTAMP", "DATE")):
            return f"to_json(epoch_ms({c}::TIMESTAMPTZ))"
        if upper in ("VARCHAR", "JSON"):
            return (
                f"CASE WHEN regexp_full_match(trim({c}), '[0-9]+') "
                f"THEN to_json(TRY_CAST(trim({c}) AS BIGINT)) ELSE to_json({c}) END"
            )
        return f"to_json({c})"
    if column == "properties" and upper in ("VARCHAR", "JSON"):
        return (
            f"CASE WHEN {c} IS NULL OR trim({c}) = '' THEN NULL "
            f"WHEN json_valid({c}) THEN json({c}) ELSE to_json({c}) END"
        )
    return f"to_json({c})"


def _first(e: Exception) -> str:
    return str(e).strip().splitlines()[0]
