"""A past-behaviour segment compiled to one DuckDB query over the store.

Each event condition counts, per profile, the matching events in the range: from
`events` for the events profiles send, from `sessions` for `Session Concluded` (its
`Session Length` and `Session ID` are columns there: R4's properties without building
JSON). Sessions conditions count the concluded sessions whose last event falls in the
range (R7, as the board counts them) or sum their lengths. Every count is left-joined to
the project's profiles and the and/or tree becomes one WHERE clause, so "did not" and
"at most" include the profiles that did nothing.

Property filters are typed as the JSON holds them: `=`/`!=` compare a string with a
string, a number with a number, true/false with a boolean; `>`, `>=`, `<`, `<=` compare
numbers; `contains` looks into strings; `!=` and `not exists` also match a profile or
event without the property. JSON `null` counts as absent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import duckdb

from lull.model import SESSION_CONCLUDED
from lull.segments.definition import (
    Condition,
    Counted,
    EventCondition,
    Filter,
    Group,
    Past,
    ProfileCondition,
    Range,
    SessionsCondition,
)

_NUMBER_TYPES = "('UBIGINT', 'BIGINT', 'DOUBLE', 'HUGEINT', 'UHUGEINT')"
_SQL_OPS = {"=": "=", "!=": "=", ">": ">", ">=": ">=", "<": "<", "<=": "<="}


def bounds(r: Range, tz: str, today: date) -> tuple[int, int]:
    """The range as epoch ms, first and last instant included, in zone `tz`."""
    until = r.until or today
    first = r.first or until - timedelta(days=(r.days or 30) - 1)
    zone = ZoneInfo(tz)

    def midnight(day: date) -> int:
        return int(datetime.combine(day, time(), zone).timestamp() * 1000)

    return midnight(first), midnight(until + timedelta(days=1)) - 1


def today_in(tz: str) -> date:
    return datetime.now(ZoneInfo(tz)).date()


@dataclass
class _Build:
    """The query being built: named parameters and one CTE per counted condition."""

    params: dict[str, object] = field(default_factory=dict)
    ctes: list[str] = field(default_factory=list)
    joins: list[str] = field(default_factory=list)

    def param(self, value: object) -> str:
        name = f"v{len(self.params)}"
        self.params[name] = value
        return f"${name}"

    def counted(self, sql: str) -> str:
        """A CTE of (profile_id, n[, t]); returns its alias, left-joined to profiles."""
        alias = f"c{len(self.ctes)}"
        self.ctes.append(f"{alias} AS ({sql})")
        self.joins.append(f"LEFT JOIN {alias} ON {alias}.profile_id = p.profile_id")
        return alias


def compile_past(d: Past, pid: int, tz: str, today: date) -> tuple[str, dict[str, object]]:
    """SQL selecting the segment's profile ids (column `profile_id`), and its parameters."""
    b = _Build()
    b.params.update(pid=pid)
    lo, hi = bounds(d.range, tz, today)
    b.params.update(lo=lo, hi=hi)
    where = _condition(d.root, b)
    if not b.ctes:  # profile properties only: no range to pass
        del b.params["lo"], b.params["hi"]
    with_ = ("WITH " + ",\n".join(b.ctes)) if b.ctes else ""
    sql = f"""{with_}
        SELECT p.profile_id FROM profiles p {" ".join(b.joins)}
        WHERE p.project_id = $pid AND ({where})"""
    return sql, b.params


def count(con: duckdb.DuckDBPyConnection, d: Past, pid: int, tz: str, today: date) -> int:
    """How many profiles the segment holds now."""
    sql, params = compile_past(d, pid, tz, today)
    row = con.execute(f"SELECT count(*) FROM ({sql})", params).fetchone()
    return int(row[0]) if row else 0


def profiles(
    con: duckdb.DuckDBPyConnection,
    d: Past,
    pid: int,
    tz: str,
    today: date,
    limit: int | None = None,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """The segment's profiles (id, first and last seen, properties), by id."""
    sql, params = compile_past(d, pid, tz, today)
    page = "" if limit is None else f"LIMIT {int(limit)} OFFSET {int(offset)}"
    rows = con.execute(
        f"""SELECT q.profile_id, p.first_seen, p.last_seen, p.properties
            FROM ({sql}) q JOIN profiles p
              ON p.project_id = $pid AND p.profile_id = q.profile_id
            ORDER BY q.profile_id {page}""",
        params,
    ).fetchall()
    return [
        {
            "profile_id": r[0],
            "first_seen": r[1],
            "last_seen": r[2],
            "properties": json.loads(r[3]) if r[3] is not None else {},
        }
        for r in rows
    ]


def _condition(c: Condition, b: _Build) -> str:
    if isinstance(c, Group):
        joiner = " AND " if c.match == "all" else " OR "
        return "(" + joiner.join(_condition(x, b) for x in c.conditions) + ")"
    if isinstance(c, ProfileCondition):
        return filter_sql(c.filter, "p.properties", b.param)
    if isinstance(c, SessionsCondition):
        what = "sum((last_ts - first_ts) // 1000)" if c.total_time else "count(*)"
        alias = b.counted(
            f"""SELECT profile_id, {what} AS n FROM sessions
                WHERE project_id = $pid AND concluded AND last_ts BETWEEN $lo AND $hi
                GROUP BY profile_id"""
        )
        return _between(f"coalesce({alias}.n, 0)", c.count, b)
    return _event(c, b)


def _event(c: EventCondition, b: _Build) -> str:
    if c.event == SESSION_CONCLUDED:
        tests = [_concluded_filter(f, b.param) for f in c.where]
        source = """SELECT profile_id, count(*) AS n FROM sessions
                     WHERE project_id = $pid AND concluded AND last_ts BETWEEN $lo AND $hi"""
    else:
        tests = [filter_sql(f, "properties", b.param) for f in c.where]
        source = f"""SELECT profile_id, count(*) AS n FROM events
                     WHERE project_id = $pid AND name = {b.param(c.event)}
                       AND ts BETWEEN $lo AND $hi"""
    alias = b.counted(source + "".join(f" AND {t}" for t in tests) + " GROUP BY profile_id")
    n = f"coalesce({alias}.n, 0)"
    if not c.did:
        return f"{n} = 0"
    least = c.count.at_least if c.count.at_least is not None else 1
    return _between(n, Counted(least, c.count.at_most), b)


def _between(n: str, c: Counted, b: _Build) -> str:
    parts = []
    if c.at_least is not None:
        parts.append(f"{n} >= {b.param(c.at_least)}")
    if c.at_most is not None:
        parts.append(f"{n} <= {b.param(c.at_most)}")
    return "(" + " AND ".join(parts or ["true"]) + ")"


def pointer(name: str) -> str:
    """A property name as a JSON Pointer (RFC 6901), so that any name, '/' or '"' or '.'
    in it too, reaches exactly that key."""
    return "/" + name.replace("~", "~0").replace("/", "~1")


def filter_sql(f: Filter, props: str, param: Any) -> str:
    """SQL true where the JSON column `props` passes filter `f` (never NULL)."""
    path = param(pointer(f.property))
    kind = f"json_type({props}, {path})"
    present = f"coalesce({kind} NOT IN ('NULL'), false)"
    if f.op == "exists":
        return present
    if f.op == "not exists":
        return f"NOT {present}"
    text = f"json_extract_string({props}, {path})"
    if f.op == "contains":
        return f"coalesce({kind} = 'VARCHAR' AND contains({text}, {param(f.value)}), false)"
    value = f.value
    if isinstance(value, bool):
        test = f"{kind} = 'BOOLEAN' AND {text} = {param('true' if value else 'false')}"
    elif isinstance(value, str):
        test = f"{kind} = 'VARCHAR' AND {text} = {param(value)}"
    else:
        number = f"TRY_CAST({text} AS DOUBLE)"
        test = f"{kind} IN {_NUMBER_TYPES} AND {number} {_SQL_OPS[f.op]} {param(value)}"
    test = f"coalesce({test}, false)"
    return f"NOT {test}" if f.op == "!=" else test


def _concluded_filter(f: Filter, param: Any) -> str:
    """A filter on Session Concluded's properties, read from its session's columns."""
    if f.property == "Session Length":
        column, is_number = "((last_ts - first_ts) // 1000)", True
    elif f.property == "Session ID":
        column, is_number = "session_id", False
    else:  # Session Concluded carries no other property
        return "false" if f.op not in ("!=", "not exists") else "true"
    if f.op in ("exists", "not exists"):
        return "true" if f.op == "exists" else "false"
    value = f.value
    if f.op == "contains":
        return f"contains({column}, {param(value)})" if not is_number else "false"
    same_kind = not isinstance(value, bool) and isinstance(value, str) != is_number
    if not same_kind:
        return "true" if f.op == "!=" else "false"
    op = _SQL_OPS[f.op]
    test = f"{column} {op} {param(value)}"
    return f"NOT ({test})" if f.op == "!=" else test
