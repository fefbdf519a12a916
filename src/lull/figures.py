"""More of the session board (docs/figures.md): one query per figure, each over the
range and the period of the same length just before it.

Every figure counts the board's sessions (board.Span.counted: concluded, ended on a day
of the range in the project's time zone, of the chosen source), and takes both periods
in one query over their days together, telling them apart by the day a session ended.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from itertools import pairwise
from typing import Any

import duckdb

from lull.board import HOURLY_DAYS, Span, check_range, check_source
from lull.days import DAY_MS, HOUR_MS, Days, number
from lull.errors import BadInput
from lull.model import Settings
from lull.store.ends import SESSION_COLUMNS, computed, stored

# Bucket edges (each bucket from its edge to the next one's, the last open-ended).
EVENT_EDGES = (1, 2, 3, 4, 5, 6, 11, 21, 51, 101)  # eligible events in a session
SESSION_EDGES = (1, 2, 3, 4, 5, 6, 11, 21, 51)  # sessions of a user in the period
INTERVAL_EDGES = (0, 1800, 3600, 10800, 21600, 43200, 86400, 172800, 604800, 1209600, 2592000)
TOP_NAMES = 10  # entry and exit events listed
TOP_VALUES = 20  # property values of a breakdown listed (the rest together)
TOP_PROPERTIES = 100  # properties offered for a breakdown
MAX_PROPERTY = 200  # characters of a property name
FIGURES = (
    "bounce", "events_per_session", "sessions_per_user", "interval", "entry_exit",
    "breakdown", "properties",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Periods:
    """The range (`first` to `last`, in the zone) and the period of as many days before
    it; `span` counts the sessions of both."""

    pid: int
    tz: str
    first: date
    last: date
    source: str | None

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    @property
    def before(self) -> tuple[date, date]:
        """The previous period's first and last day."""
        return self.first - timedelta(days=self.days), self.first - timedelta(days=1)

    @property
    def span(self) -> Span:
        return Span(self.pid, Days(self.tz, self.before[0], self.last), self.source)

    def current(self, col: str = "last_ts") -> str:
        """SQL: true for a session of the range, false for one of the period before."""
        return f"({self.span.days.day_sql(col)} >= {number(self.first)})"

    @property
    def hourly(self) -> bool:
        return self.days <= HOURLY_DAYS

    def head(self) -> dict[str, object]:
        """What every figure's answer starts with: which days, zone and source."""
        a, b = self.before
        return {"from": self.first.isoformat(), "until": self.last.isoformat(),
                "previous_from": a.isoformat(), "previous_until": b.isoformat(),
                "timezone": self.tz, "source": self.source}  # fmt: skip


def periods(pid: int, settings: Settings, until: date, days: int, source: str | None) -> Periods:
    """The `days` days up to `until` (and as many before them), of `source` or all."""
    source = check_source(source)
    first = check_range(until, days)
    check_range(until, 2 * days)  # the period before must lie in the calendar too
    return Periods(pid, settings.timezone, first, until, source)


def _ended(con: duckdb.DuckDBPyConnection, p: Periods, *extra: str) -> str:
    """SQL: the counted sessions of both periods with their ends (store/ends.py) and
    `cur`. From `session_ends` when its rows are exactly the counted sessions (the usual
    case); else its rows that match a counted session, and the others' found from the
    events (sessions a running server concluded since its last fill; all of them in a
    store opened read-only before a write of this lull made the table)."""
    if not stored(con):
        everything = f"({computed('$pid')})"
        return f"SELECT *, {p.current()} AS cur FROM ({p.span.counted(everything)})"
    check = "SELECT (count(*), sum(skey), sum(first_ts), sum(last_ts)) FROM ({})"
    row = con.execute(
        f"""SELECT ({check.format(p.span.counted())}) =
                   ({check.format(p.span.counted("session_ends"))})""",
        p.span.params(),
    ).fetchone()
    if row is not None and row[0]:
        return f"SELECT *, {p.current()} AS cur FROM ({p.span.counted('session_ends')})"
    # one join: each counted session with its stored row (the `extra` columns the figure
    # reads), if that row still matches it
    mine = ", ".join(f"c.{col}" for col in SESSION_COLUMNS)
    theirs = ", ".join(f"m.{col}" for col in extra)
    both = ", ".join((*SESSION_COLUMNS, *extra))
    some = "profile_id IN (SELECT profile_id FROM miss)"  # (for their previous sessions)
    found = computed("$pid", some, "skey IN (SELECT skey FROM miss)")
    mixed = f"""WITH j AS MATERIALIZED (
                    SELECT {mine}, {theirs},
                           (m.first_ts = c.first_ts AND m.last_ts = c.last_ts
                            AND m.events = c.events) IS TRUE AS ok
                    FROM ({p.span.counted()}) c
                    LEFT JOIN ({p.span.counted("session_ends")}) m USING (skey)),
                miss AS (SELECT skey, profile_id FROM j WHERE NOT ok)
                SELECT * EXCLUDE (ok) FROM j WHERE ok
                UNION ALL
                SELECT {both} FROM ({found})"""
    return f"SELECT *, {p.current()} AS cur FROM ({mixed})"


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _buckets(edges: tuple[int, ...], col: str) -> str:
    """SQL: the index of the bucket of `edges` that `col` falls in."""
    whens = " ".join(f"WHEN {col} >= {lo} THEN {i}" for i, lo in reversed(list(enumerate(edges))))
    return f"CASE {whens} END"


def _distribution(
    con: duckdb.DuckDBPyConnection,
    p: Periods,
    values: str,
    edges: tuple[int, ...],
    keys: tuple[str, str, str],
) -> dict[str, object]:
    """The query `values` (columns cur, v) as buckets of `edges` with both periods'
    counts, and each period's count, mean and median of v (and rows of a null v)."""
    rows = con.execute(
        f"""WITH x AS MATERIALIZED ({values})
            SELECT 'bucket', {_buckets(edges, "v")}, cur, count(*), NULL, NULL, NULL
            FROM x WHERE v IS NOT NULL GROUP BY ALL
            UNION ALL
            SELECT 'all', NULL, cur, count(v), avg(v), quantile_disc(v, 0.5),
                   count(*) FILTER (WHERE v IS NULL)
            FROM x GROUP BY ALL""",
        p.span.params(),
    ).fetchall()
    found = {(int(r[1]), bool(r[2])): int(r[3]) for r in rows if r[0] == "bucket"}
    both = {bool(r[2]): (int(r[3]), r[4], r[5], int(r[6])) for r in rows if r[0] == "all"}
    lo_key, hi_key, what = keys
    buckets: list[dict[str, object]] = []
    for i, (lo, hi) in enumerate(pairwise((*edges, None))):
        buckets.append({lo_key: lo, hi_key: hi, what: found.get((i, True), 0),
                        f"previous_{what}": found.get((i, False), 0)})  # fmt: skip

    def summary(row: tuple[Any, ...] | None) -> dict[str, object]:
        n = row[0] if row else 0
        return {"count": n, "mean": round(float(row[1]), 2) if row and n else None,
                "median": int(row[2]) if row and n else None,
                "without": row[3] if row else 0}  # fmt: skip

    return {**p.head(), "current": summary(both.get(True)), "previous": summary(both.get(False)),
            "distribution": buckets}  # fmt: skip


def bounce(con: duckdb.DuckDBPyConnection, p: Periods) -> dict[str, object]:
    """Bounce rate: the share of sessions of exactly one eligible event, over each
    period and per day (per hour for a range of up to HOURLY_DAYS days)."""
    unit = HOUR_MS if p.hourly else DAY_MS
    rows = con.execute(
        f"""SELECT {p.span.days.local_sql("last_ts", unit)} AS at, count(*),
                   count(*) FILTER (WHERE events = 1)
            FROM ({p.span.counted()}) GROUP BY 1""",
        p.span.params(),
    ).fetchall()
    found = {int(at): (int(n), int(b)) for at, n, b in rows}
    per = 24 if p.hourly else 1

    def trend(first: date, last: date) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for at in range(number(first) * per, (number(last) + 1) * per):
            n, b = found.get(at, (0, 0))
            when = _label(at, p.hourly)
            out.append({"hour" if p.hourly else "date": when, "sessions": n, "bounces": b,
                        "bounce_rate": _ratio(b, n)})  # fmt: skip
        return out

    now, then = trend(p.first, p.last), trend(*p.before)

    def total(points: list[dict[str, Any]]) -> dict[str, object]:
        n, b = sum(x["sessions"] for x in points), sum(x["bounces"] for x in points)
        return {"sessions": n, "bounces": b, "bounce_rate": _ratio(b, n)}

    return {**p.head(), "grain": "hour" if p.hourly else "day", "current": total(now),
            "previous": total(then), "trend": now, "previous_trend": then}  # fmt: skip


def _label(at: int, hourly: bool) -> str:
    """A local day number (or hour number) as the board writes it."""
    day = date(1970, 1, 1) + timedelta(days=at // 24 if hourly else at)
    return f"{day.isoformat()}T{at % 24:02d}:00" if hourly else day.isoformat()


def events_per_session(con: duckdb.DuckDBPyConnection, p: Periods) -> dict[str, object]:
    """Sessions by their number of eligible events, in buckets; mean and median."""
    values = f"SELECT {p.current()} AS cur, events AS v FROM ({p.span.counted()})"
    return _distribution(con, p, values, EVENT_EDGES, ("from", "to", "sessions"))


def sessions_per_user(con: duckdb.DuckDBPyConnection, p: Periods) -> dict[str, object]:
    """Users (profiles with a session in the period) by their number of sessions in
    it, in buckets; mean and median."""
    values = f"""SELECT {p.current()} AS cur, count(*) AS v
                 FROM ({p.span.counted()}) GROUP BY profile_id, cur"""
    return _distribution(con, p, values, SESSION_EDGES, ("from", "to", "users"))


def interval(con: duckdb.DuckDBPyConnection, p: Periods) -> dict[str, object]:
    """Session interval: for each counted session that is not its user's first, the
    time from the end (last event) of the user's previous session, of any source, to
    its start (first event), in whole seconds; in buckets, with the median. `without`:
    the counted sessions that are their user's first."""
    ended = _ended(con, p, "prev_last_ts")
    values = f"SELECT cur, (first_ts - prev_last_ts) // 1000 AS v FROM ({ended})"
    return _distribution(con, p, values, INTERVAL_EDGES, ("from_s", "to_s", "sessions"))


def entry_exit(con: duckdb.DuckDBPyConnection, p: Periods) -> dict[str, object]:
    """The most frequent first (entry) and last (exit) event names of the range's
    sessions, with each name's count in the period before."""
    rows = con.execute(
        f"""WITH x AS ({_ended(con, p, "first_name", "last_name")})
            SELECT 'entry', first_name, cur, count(*) FROM x GROUP BY ALL
            UNION ALL
            SELECT 'exit', last_name, cur, count(*) FROM x GROUP BY ALL""",
        p.span.params(),
    ).fetchall()
    count = {(kind, name, bool(cur)): int(n) for kind, name, cur, n in rows}
    totals = {cur: sum(n for (k, _, c), n in count.items() if k == "entry" and c == cur)
              for cur in (True, False)}  # fmt: skip

    def top(kind: str) -> list[dict[str, object]]:
        names = sorted(
            {name for k, name, cur in count if k == kind and cur},
            key=lambda name: (-count[(kind, name, True)], name),
        )[:TOP_NAMES]
        return [{"name": name, "sessions": count[(kind, name, True)],
                 "share": _ratio(count[(kind, name, True)], totals[True]),
                 "previous_sessions": count.get((kind, name, False), 0),
                 "previous_share": _ratio(count.get((kind, name, False), 0), totals[False])}
                for name in names]  # fmt: skip

    return {**p.head(), "current": {"sessions": totals[True]},
            "previous": {"sessions": totals[False]},
            "entry": top("entry"), "exit": top("exit")}  # fmt: skip


def check_property(name: str | None) -> str:
    """A breakdown's property: a name of 1 to MAX_PROPERTY characters."""
    if not name:
        raise BadInput("'property' is required: the property of the first event to break down by")
    if len(name) > MAX_PROPERTY:
        raise BadInput(f"'property' is longer than {MAX_PROPERTY} characters")
    return name


def breakdown(con: duckdb.DuckDBPyConnection, p: Periods, prop: str) -> dict[str, object]:
    """Sessions, median length and total time by the value (as text) of property `prop`
    of each session's first event: the TOP_VALUES values with most sessions in the
    range, then the others together, then the sessions whose first event lacks it."""
    prop = check_property(prop)
    rows = con.execute(
        f"""WITH x AS MATERIALIZED (
                SELECT cur, (last_ts - first_ts) // 1000 AS len,
                       json_extract_string(first_properties, [$prop])[1] AS v
                FROM ({_ended(con, p, "first_properties")})),
            top AS (SELECT v FROM x WHERE cur AND v IS NOT NULL GROUP BY v
                    ORDER BY count(*) DESC, v LIMIT {TOP_VALUES})
            SELECT CASE WHEN x.v IS NULL THEN 'none' WHEN t.v IS NOT NULL THEN 'value'
                        ELSE 'other' END AS kind, t.v, cur, count(*),
                   quantile_disc(len, 0.5), sum(len)
            FROM x LEFT JOIN top t ON t.v = x.v GROUP BY ALL""",
        {**p.span.params(), "prop": prop},
    ).fetchall()
    found = {(kind, v, bool(cur)): (int(n), int(med), int(total))
             for kind, v, cur, n, med, total in rows}  # fmt: skip

    def entry(kind: str, v: str | None) -> dict[str, object]:
        now, then = found.get((kind, v, True)), found.get((kind, v, False))
        return {"value": v, "sessions": now[0] if now else 0,
                "median_length_s": now[1] if now else None,
                "total_length_s": now[2] if now else 0,
                "previous_sessions": then[0] if then else 0,
                "previous_median_length_s": then[1] if then else None,
                "previous_total_length_s": then[2] if then else 0}  # fmt: skip

    values = sorted(
        {v for kind, v, cur in found if kind == "value" and cur},
        key=lambda v: (-found[("value", v, True)][0], v),
    )
    return {**p.head(), "property": prop, "values": [entry("value", v) for v in values],
            "other": entry("other", None), "missing": entry("none", None)}  # fmt: skip


def properties(con: duckdb.DuckDBPyConnection, p: Periods) -> dict[str, object]:
    """The properties the first events of the range's sessions have (what a breakdown
    can be by), most common first, with how many sessions' first event has each."""
    rows = con.execute(
        f"""SELECT k, count(*) FROM (
                SELECT unnest(json_keys(first_properties)) AS k
                FROM ({_ended(con, p, "first_properties")})
                WHERE cur AND json_type(first_properties) = 'OBJECT')
            GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {TOP_PROPERTIES}""",
        p.span.params(),
    ).fetchall()
    return {**p.head(), "properties": [{"name": k, "sessions": int(n)} for k, n in rows]}


def figure(
    con: duckdb.DuckDBPyConnection,
    name: str,
    pid: int,
    settings: Settings,
    until: date,
    days: int,
    source: str | None = None,
    prop: str | None = None,
) -> dict[str, object]:
    """Figure `name` (one of FIGURES) for the `days` days up to `until`, compared with
    the days before; `prop` for a breakdown."""
    if name not in FIGURES:
        raise BadInput(f"unknown figure {name!r}: use one of {', '.join(FIGURES)}")
    p = periods(pid, settings, until, days, source)
    if name == "breakdown":
        return breakdown(con, p, check_property(prop))
    plain: dict[str, Callable[[duckdb.DuckDBPyConnection, Periods], dict[str, object]]] = {
        "bounce": bounce, "events_per_session": events_per_session,
        "sessions_per_user": sessions_per_user, "interval": interval,
        "entry_exit": entry_exit, "properties": properties,
    }  # fmt: skip
    return plain[name](con, p)
