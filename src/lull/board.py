"""The session board (docs/sessions.md): one query per figure.

Every figure counts the same sessions: concluded ones whose last event falls, in the
project's time zone, on a day of the range (R7), of the chosen source if one is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import duckdb

from lull.days import HOUR_MS, Days, number, of_number
from lull.errors import BadInput
from lull.model import Settings
from lull.store.projects import unrebuilt_changes

# Bucket edges in seconds, spaced to read well on a log scale; the last is open-ended.
BUCKET_EDGES = (0, 1, 10, 30, 60, 180, 600, 1800, 3600, 10800)
# The sources a board can be narrowed to (API events never have sessions, R1).
BOARD_SOURCES = ("web", "ios", "android")
# Ranges of at most this many days are also drawn hour by hour.
HOURLY_DAYS = 3


def check_source(source: str | None) -> str | None:
    """A board's source filter: None (all) or one of BOARD_SOURCES."""
    if source is not None and source not in BOARD_SOURCES:
        raise BadInput(f"unknown source {source!r}: use one of {', '.join(BOARD_SOURCES)}")
    return source


def check_range(until: date, days: int) -> date:
    """The first day of the `days` days ending on `until`."""
    if days < 1:
        raise BadInput(f"'days' must be at least 1, not {days}")
    if until >= date.max or (until - date.min).days < days - 1:
        raise BadInput(f"the {days} days up to {until.isoformat()} reach outside the calendar")
    return until - timedelta(days=days - 1)


@dataclass(frozen=True, slots=True)
class Span:
    """What a board counts: a project's sessions on some days of its time zone, of one
    source (or of all, when None)."""

    pid: int
    days: Days
    source: str | None = None

    def counted(self, table: str = "sessions") -> str:
        """SQL: the sessions every figure counts, from `table` (with the columns of
        `sessions`); the query parameters are `params()`."""
        return f"""SELECT * FROM {table} WHERE project_id = $pid AND concluded
                   AND {self.days.where("last_ts")} AND ($source IS NULL OR source = $source)"""

    def params(self) -> dict[str, object]:
        return {"pid": self.pid, "source": self.source}


def length_distribution(con: duckdb.DuckDBPyConnection, span: Span) -> list[dict[str, int | None]]:
    """Concluded sessions in the range, counted per length bucket."""
    bucket = " ".join(
        f"WHEN len >= {lo} THEN {i}" for i, lo in reversed(list(enumerate(BUCKET_EDGES)))
    )
    rows = con.execute(
        f"""SELECT CASE {bucket} END AS b, count(*)
            FROM (SELECT (last_ts - first_ts) // 1000 AS len FROM ({span.counted()}))
            GROUP BY 1""",
        span.params(),
    ).fetchall()
    counts = {int(b): int(n) for b, n in rows}
    out: list[dict[str, int | None]] = []
    for i, lo in enumerate(BUCKET_EDGES):
        hi = BUCKET_EDGES[i + 1] if i + 1 < len(BUCKET_EDGES) else None
        out.append({"from_s": lo, "to_s": hi, "sessions": counts.get(i, 0)})
    return out


def per_day(con: duckdb.DuckDBPyConnection, span: Span) -> list[dict[str, object]]:
    """R7: sessions and the sum of their lengths, per day of their Session Concluded time."""
    rows = con.execute(
        f"""SELECT {span.days.day_sql("last_ts")} AS day, count(*),
                   sum((last_ts - first_ts) // 1000)
            FROM ({span.counted()}) GROUP BY 1""",
        span.params(),
    ).fetchall()
    found = {of_number(int(d)): (int(n), int(total)) for d, n, total in rows}
    out: list[dict[str, object]] = []
    day = span.days.first
    while day <= span.days.last:
        n, total = found.get(day, (0, 0))
        out.append({"date": day.isoformat(), "sessions": n, "total_length_s": total})
        day += timedelta(days=1)
    return out


def per_hour(con: duckdb.DuckDBPyConnection, span: Span) -> list[dict[str, object]]:
    """R7 by the hour: sessions and the sum of their lengths per wall-clock hour (in the
    project's zone) of their Session Concluded time; every hour of the days listed (a
    day that skips an hour for DST shows it empty; one that repeats it counts both in it)."""
    rows = con.execute(
        f"""SELECT {span.days.local_sql("last_ts", HOUR_MS)} AS hour, count(*),
                   sum((last_ts - first_ts) // 1000)
            FROM ({span.counted()}) GROUP BY 1""",
        span.params(),
    ).fetchall()
    found = {int(h): (int(n), int(total)) for h, n, total in rows}
    first = number(span.days.first) * 24
    out: list[dict[str, object]] = []
    for h in range(first, (number(span.days.last) + 1) * 24):
        n, total = found.get(h, (0, 0))
        at = datetime.fromtimestamp(h * 3600, UTC)  # wall-clock, not an instant
        out.append({"hour": at.strftime("%Y-%m-%dT%H:00"), "sessions": n, "total_length_s": total})
    return out


def extent(con: duckdb.DuckDBPyConnection, span: Span) -> dict[str, str] | None:
    """The first and last day (in the project's zone) with a concluded session of the
    span's source, whatever the range: where the data lies, for an empty range."""
    row = con.execute(
        """SELECT min(last_ts), max(last_ts) FROM sessions WHERE project_id = $pid
           AND concluded AND ($source IS NULL OR source = $source)""",
        span.params(),
    ).fetchone()
    if row is None or row[0] is None:
        return None
    zone = ZoneInfo(span.days.tz)

    def day(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, UTC).astimezone(zone).date().isoformat()

    return {"first": day(int(row[0])), "last": day(int(row[1]))}


def late_events(con: duckdb.DuckDBPyConnection, span: Span) -> int:
    """Events marked late (R5) whose event time falls in the range (of that source)."""
    row = con.execute(
        f"""SELECT count(*) FROM events e
            SEMI JOIN (SELECT seq FROM event_sessions WHERE project_id = $pid AND late) l
            ON e.seq = l.seq
            WHERE e.project_id = $pid AND ($source IS NULL OR e.source = $source)
            AND {span.days.where("e.ts")}""",
        span.params(),
    ).fetchone()
    return int(row[0]) if row else 0


def headline(con: duckdb.DuckDBPyConnection, span: Span) -> dict[str, object]:
    """The headline figures over the counted sessions. Quantiles are nearest-rank: the
    smallest length that at least that share of sessions do not exceed (a length
    some session has; whole seconds). Ratios are null when there is no session."""
    row = con.execute(
        f"""SELECT count(*), count(DISTINCT profile_id),
                   quantile_disc((last_ts - first_ts) // 1000, [0.5, 0.9]),
                   coalesce(sum(events), 0), coalesce(sum((last_ts - first_ts) // 1000), 0)
            FROM ({span.counted()})""",
        span.params(),
    ).fetchone()
    assert row is not None
    sessions, users, quantiles, events = int(row[0]), int(row[1]), row[2], int(row[3])
    total = int(row[4])
    median, p90 = (None, None) if quantiles is None else (int(q) for q in quantiles)
    return {
        "sessions": sessions,
        "users": users,
        "median_length_s": median,
        "p90_length_s": p90,
        "average_length_s": round(total / sessions, 1) if sessions else None,
        "total_length_s": total,
        "sessions_per_user": round(sessions / users, 2) if users else None,
        "events_per_session": round(events / sessions, 2) if sessions else None,
    }


def board(
    con: duckdb.DuckDBPyConnection,
    pid: int,
    settings: Settings,
    until: date,
    days: int,
    source: str | None = None,
) -> dict[str, object]:
    """The whole board for the `days` days ending on `until` (in the project's time zone),
    of sessions from `source` (web, ios, android) or of all."""
    source = check_source(source)
    first = check_range(until, days)
    tz = settings.timezone
    span = Span(pid, Days(tz, first, until), source)
    days_out = per_day(con, span)
    late = late_events(con, span)
    sessions = sum(int(str(d["sessions"])) for d in days_out)
    out: dict[str, object] = {
        "from": first.isoformat(),
        "until": until.isoformat(),
        "timezone": tz,
        "source": source,
        "sessions": sessions,
        "total_length_s": sum(int(str(d["total_length_s"])) for d in days_out),
        "headline": {**headline(con, span), "late_events": late},
        "length_distribution": length_distribution(con, span),
        "per_day": days_out,
        "late_events": late,
        "grain": "hour" if days <= HOURLY_DAYS else "day",
        # changes of the timeout or exclusions in the range that history was not rebuilt for
        "settings_changes": unrebuilt_changes(con, pid, tz, first, until),
    }
    if days <= HOURLY_DAYS:
        out["per_hour"] = per_hour(con, span)
    if sessions == 0:  # say where the data is
        out["data_range"] = extent(con, span)
    return out
