"""What every interface (the CLI, the read API, the web pages) does with segments: one
place that checks a definition, saves it, and counts or lists its profiles."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from typing import Any

import duckdb

from lull.errors import BadInput
from lull.model import Settings, format_time
from lull.segments import definition as defs
from lull.segments import query
from lull.store import segments as store
from lull.store.db import transaction


def check(raw: object, settings: Settings) -> defs.Past | defs.Live:
    """A definition as a project takes it: a live one may not use Session Concluded nor
    the project's excluded events."""
    if defs.is_live(raw):
        return defs.parse_live(raw, settings.excluded)
    return defs.parse_past(raw)


def create(
    con: duckdb.DuckDBPyConnection, pid: int, settings: Settings, name: object, raw: object
) -> store.Saved:
    """Check and save a new segment (in a transaction of its own)."""
    checked = defs.check_name(name)
    d = check(raw, settings)
    kind = "live" if isinstance(d, defs.Live) else "past"
    webhook = d.webhook if isinstance(d, defs.Live) else None
    with transaction(con):
        return store.save(con, pid, checked, kind, defs.as_json(d), webhook)


def past(saved: store.Saved) -> defs.Past:
    if saved.kind != "past":
        raise BadInput(
            f"segment {saved.name!r} is a live segment: it fires a webhook as events arrive "
            "and has no profiles to count"
        )
    return defs.parse_past(saved.definition)


def count(
    con: duckdb.DuckDBPyConnection, pid: int, settings: Settings, d: defs.Past,
    today: date | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The number of profiles and the range it was counted over."""
    day = today or query.today_in(settings.timezone)
    lo, hi = query.bounds(d.range, settings.timezone, day)
    return {
        "count": query.count(con, d, pid, settings.timezone, day),
        "from": format_time(lo),
        "until": format_time(hi),
        "timezone": settings.timezone,
    }


def profiles(
    con: duckdb.DuckDBPyConnection, pid: int, settings: Settings, d: defs.Past,
    limit: int | None = None, offset: int = 0, today: date | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    day = today or query.today_in(settings.timezone)
    return query.profiles(con, d, pid, settings.timezone, day, limit, offset)


CSV_COLUMNS = ("profile_id", "first_seen", "last_seen", "properties")


def as_csv(rows: list[dict[str, Any]]) -> str:
    """Profiles as CSV: id, first and last seen (ISO-8601 UTC), properties as JSON."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in rows:
        w.writerow(
            [
                r["profile_id"],
                format_time(r["first_seen"]),
                format_time(r["last_seen"]),
                json.dumps(r["properties"], sort_keys=True),
            ]
        )
    return out.getvalue()


def delete(con: duckdb.DuckDBPyConnection, pid: int, name: str) -> None:
    """Delete a segment and its delivery log."""
    with transaction(con):
        store.delete(con, pid, name)
