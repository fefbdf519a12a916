"""The session board (SESSION_RULES.md): one query per figure."""

from __future__ import annotations

from datetime import date, timedelta

import duckdb

from lull.errors import BadInput
from lull.model import Settings

# Bucket edges in seconds, spaced to read well on a log scale; the last is open-ended.
BUCKET_EDGES = (0, 1, 10, 30, 60, 180, 600, 1800, 3600, 10800)

_LOCAL_DAY = "(epoch_ms({col})::TIMESTAMPTZ AT TIME ZONE $tz)::DATE"
_IN_RANGE = f"{_LOCAL_DAY.format(col='last_ts')} BETWEEN $first AND $last"


def length_distribution(
    con: duckdb.DuckDBPyConnection, pid: int, tz: str, first: date, last: date
) -> list[dict[str, int | None]]:
    """Concluded sessions in the range, counted per length bucket."""
    edges = list(BUCKET_EDGES)
    rows = con.execute(
        f"""SELECT len(list_filter($edges, lambda e: e <= (last_ts - first_ts) // 1000)) AS b,
                   count(*)
            FROM sessions WHERE project_id = $pid AND concluded AND {_IN_RANGE}
            GROUP BY 1""",
        {"edges": edges, "pid": pid, "tz": tz, "first": first, "last": last},
    ).fetchall()
    counts = {int(b): int(n) for b, n in rows}
    out: list[dict[str, int | None]] = []
    for i, lo in enumerate(edges):
        hi = edges[i + 1] if i + 1 < len(edges) else None
        out.append({"from_s": lo, "to_s": hi, "sessions": counts.get(i + 1, 0)})
    return out


def per_day(
    con: duckdb.DuckDBPyConnection, pid: int, tz: str, first: date, last: date
) -> list[dict[str, object]]:
    """R7: sessions and the sum of their lengths, per day of their Session Concluded time."""
    rows = con.execute(
        f"""SELECT {_LOCAL_DAY.format(col="last_ts")} AS day, count(*),
                   sum((last_ts - first_ts) // 1000)
            FROM sessions WHERE project_id = $pid AND concluded AND {_IN_RANGE}
            GROUP BY 1""",
        {"pid": pid, "tz": tz, "first": first, "last": last},
    ).fetchall()
    found = {d: (int(n), int(total)) for d, n, total in rows}
    out: list[dict[str, object]] = []
    day = first
    while day <= last:
        n, total = found.get(day, (0, 0))
        out.append({"date": day.isoformat(), "sessions": n, "total_length_s": total})
        day += timedelta(days=1)
    return out


def late_events(con: duckdb.DuckDBPyConnection, pid: int, tz: str, first: date, last: date) -> int:
    """Events marked late (R5) whose event time falls in the range."""
    row = con.execute(
        f"""SELECT count(*) FROM event_sessions es
            JOIN events e ON e.project_id = es.project_id AND e.seq = es.seq
            WHERE es.project_id = $pid AND es.late
            AND {_LOCAL_DAY.format(col="e.ts")} BETWEEN $first AND $last""",
        {"pid": pid, "tz": tz, "first": first, "last": last},
    ).fetchone()
    return int(row[0]) if row else 0


def board(
    con: duckdb.DuckDBPyConnection, pid: int, settings: Settings, until: date, days: int
) -> dict[str, object]:
    """The whole board for the `days` days ending on `until` (in the project's time zone)."""
    if until >= date.max or (until - date.min).days < days - 1:
        raise BadInput(f"the {days} days up to {until.isoformat()} reach outside the calendar")
    first = until - timedelta(days=days - 1)
    tz = settings.timezone
    days_out = per_day(con, pid, tz, first, until)
    return {
        "from": first.isoformat(),
        "until": until.isoformat(),
        "timezone": tz,
        "sessions": sum(int(str(d["sessions"])) for d in days_out),
        "total_length_s": sum(int(str(d["total_length_s"])) for d in days_out),
        "length_distribution": length_distribution(con, pid, tz, first, until),
        "per_day": days_out,
        "late_events": late_events(con, pid, tz, first, until),
    }
