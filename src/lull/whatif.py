"""What-if: the board's sessions per day and median length under the current timeout and
under a proposed one, side by side, before anything is rebuilt.

Both sides are R2 over the events R1 admits with sessions on (late events included):
what `lull resessionize` would make with that timeout. They are computed the same way,
so the comparison is like with like (the stored sessions may differ from the current
side where events came late). The work is one sort of the events near the range (from
a day and a timeout before it to a day and a timeout after it, plus the earlier history
of the few profiles whose first event there may continue an earlier session) for the
gaps before and after each event, and a second, smaller one (of the events that begin
or end a session under either timeout) to find where each session began.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import duckdb

from lull.board import Span, check_range, check_source
from lull.days import Days, of_number
from lull.errors import BadInput
from lull.model import MAX_TIMEOUT_MS, MIN_TIMEOUT_MS, Settings, format_duration
from lull.store.projects import eligible_sql, now_ms

_SIDES = ("current", "proposed")


def _first_sql(side: str, col: str) -> str:
    """`col` of the latest row up to this one that begins a session under this side's
    timeout ($t_<side>): a gap of at least the timeout before it, or none."""
    t = f"$t_{side}"
    return (
        f"last_value(CASE WHEN before IS NULL OR before >= {t} THEN {col} END IGNORE NULLS) OVER w"
    )


def _began_sql(side: str) -> str:
    return (
        f"{_first_sql(side, 'ts')} AS first_{side}, {_first_sql(side, 'source')} AS source_{side}"
    )


def _sessions_sql(side: str) -> str:
    """R2's sessions for one side's timeout: they end at rows with a gap of at least
    the timeout after them (or none)."""
    t = f"$t_{side}"
    return f"""
    sessions_{side} AS (
        SELECT $pid AS project_id, first_{side} AS first_ts, ts AS last_ts,
               source_{side} AS source, after IS NOT NULL OR ts + {t} <= $now AS concluded
        FROM ends WHERE after IS NULL OR after >= {t})"""


def _figures_sql(side: str, span: Span) -> str:
    return f"""
    SELECT '{side}' AS side, {span.days.day_sql("last_ts")} AS day,
           count(*) AS n, quantile_disc((last_ts - first_ts) // 1000, 0.5) AS median
    FROM ({span.counted(f"sessions_{side}")})
    GROUP BY GROUPING SETS ((day), ())"""


def _query(eligible: str, span: Span) -> str:
    return f"""
    WITH near AS (
        SELECT profile_id, seq, ts, source FROM events
        WHERE project_id = $pid AND {eligible} AND ts >= $start AND ts < $stop),
    firsts AS (
        SELECT profile_id, min(ts) AS f FROM near GROUP BY 1 HAVING min(ts) < $start + $t_max),
    continued AS (
        SELECT DISTINCT profile_id FROM events JOIN firsts USING (profile_id)
        WHERE project_id = $pid AND {eligible} AND ts < $start AND ts > f - $t_max),
    picked AS (
        SELECT * FROM near
        UNION ALL
        SELECT profile_id, seq, ts, source FROM events
        WHERE project_id = $pid AND {eligible} AND ts < $start
        AND profile_id IN (SELECT profile_id FROM continued)),
    gaps AS (
        SELECT profile_id, seq, ts, source,
               ts - lag(ts) OVER w AS before, lead(ts) OVER w - ts AS after
        FROM picked WINDOW w AS (PARTITION BY profile_id ORDER BY ts, seq)),
    -- the rows that begin or end a session under either timeout (fewer than a third)
    bounds AS (
        SELECT * FROM gaps WHERE before IS NULL OR before >= $t_min
        OR after IS NULL OR after >= $t_min),
    -- for each of those rows, where its session began under each timeout
    ends AS MATERIALIZED (
        SELECT ts, after, {", ".join(_began_sql(side) for side in _SIDES)}
        FROM bounds
        WINDOW w AS (PARTITION BY profile_id ORDER BY ts, seq
                     ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)),
    {",".join(_sessions_sql(side) for side in _SIDES)}
    {" UNION ALL ".join(_figures_sql(side, span) for side in _SIDES)}"""


def preview(
    con: duckdb.DuckDBPyConnection,
    pid: int,
    settings: Settings,
    timeout_ms: int,
    until: date,
    days: int,
    source: str | None = None,
    *,
    now: int | None = None,
) -> dict[str, Any]:
    """Sessions and median length per day and in total, for the `days` days ending on
    `until`, under the current timeout and under `timeout_ms` (R2 over the stored events,
    as `lull resessionize` would make them; concluded sessions as of `now`)."""
    if not MIN_TIMEOUT_MS <= timeout_ms <= MAX_TIMEOUT_MS:
        raise BadInput(
            f"proposed timeout {format_duration(timeout_ms)} is out of range: allow 1m to 24h"
        )
    source = check_source(source)
    first = check_range(until, days)
    current = settings.timeout_ms
    t_max = max(current, timeout_ms)
    span = Span(pid, Days(settings.timezone, first, until), source)
    rows = con.execute(
        _query(eligible_sql(settings, as_if_enabled=True), span),
        {
            **span.params(),
            "start": span.days.lo - t_max,
            "stop": span.days.hi + 1 + t_max,
            "t_max": t_max,
            "t_min": min(current, timeout_ms),
            "t_current": current,
            "t_proposed": timeout_ms,
            "now": now_ms() if now is None else now,
        },
    ).fetchall()
    found: dict[tuple[str, date | None], dict[str, int | None]] = {
        (side, None if day is None else of_number(int(day))): {
            "sessions": int(n),
            "median_length_s": None if m is None else int(m),
        }
        for side, day, n, m in rows
    }
    empty: dict[str, int | None] = {"sessions": 0, "median_length_s": None}
    per_day = []
    day = first
    while day <= until:
        per_day.append(
            {"day": day.isoformat(), **{s: dict(found.get((s, day), empty)) for s in _SIDES}}
        )
        day += timedelta(days=1)
    return {
        "from": first.isoformat(),
        "until": until.isoformat(),
        "timezone": settings.timezone,
        "source": source,
        "timeout_ms": {"current": current, "proposed": timeout_ms},
        "per_day": per_day,
        "total": {s: found.get((s, None), empty) for s in _SIDES},
    }
