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
    """The query being built: named parameters, and the per-profile counts it needs, each
    one aggregate of one scan of `events` (its event conditions) or of `sessions` (its
    session conditions and Session Concluded): one pass over each table, however many
    conditions read it."""

    params: dict[str, object] = field(default_factory=dict)
    event_counts: list[str] = field(default_factory=list)
    event_names: dict[str, str] = field(default_factory=dict)  # name -> its parameter
    session_counts: list[str] = field(default_factory=list)

    def param(self, value: object) -> str:
        name = f"v{len(self.params)}"
        self.params[name] = value
        return f"${name}"

    def events(self, name: str, test: str) -> str:
        """A count of the profile's events named `name` passing `test`, as SQL."""
        alias = f"e{len(self.event_counts)}"
        if name not in self.event_names:
            self.event_names[name] = self.param(name)
        ref = self.event_names[name]
        # CASE, not AND: the properties are parsed only on the rows of that name
        self.event_counts.append(
            f"count(*) FILTER (WHERE CASE WHEN name = {ref} THEN {test} ELSE false END) AS {alias}"
        )
        return f"coalesce(ev.{alias}, 0)"

    def sessions(self, aggregate: str) -> str:
        """An aggregate of the profile's sessions concluded in the range, as SQL."""
        alias = f"s{len(self.session_counts)}"
        self.session_counts.append(f"{aggregate} AS {alias}")
        return f"coalesce(ss.{alias}, 0)"


def compile_past(d: Past, pid: int, tz: str, today: date) -> tuple[str, dict[str, object]]:
    """SQL selecting the segment's profile ids (column `profile_id`), and its parameters."""
    b = _Build()
    b.params.update(pid=pid)
    lo, hi = bounds(d.range, tz, today)
    b.params.update(lo=lo, hi=hi)
    where = _condition(d.root, b)
    ctes, joins = [], []
    if b.event_counts:
        ctes.append(f"""ev AS (SELECT profile_id, {", ".join(b.event_counts)} FROM events
            WHERE project_id = $pid AND ts BETWEEN $lo AND $hi
              AND name IN ({", ".join(b.event_names.values())}) GROUP BY profile_id)""")
        joins.append("LEFT JOIN ev ON ev.profile_id = p.profile_id")
    if b.session_counts:
        ctes.append(f"""ss AS (SELECT profile_id, {", ".join(b.session_counts)} FROM sessions
            WHERE project_id = $pid AND concluded AND last_ts BETWEEN $lo AND $hi
            GROUP BY profile_id)""")
        joins.append("LEFT JOIN ss ON ss.profile_id = p.profile_id")
    if not ctes:  # profile properties only: no range to pass
        del b.params["lo"], b.params["hi"]
    with_ = ("WITH " + ",\n".join(ctes)) if ctes else ""
    sql = f"""{with_}
        SELECT p.profile_id FROM profiles p {" ".join(joins)}
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
        return _between(b.sessions(what), c.count, b)
    return _event(c, b)


def _event(c: EventCondition, b: _Build) -> str:
    if c.event == SESSION_CONCLUDED:
        tests = " AND ".join([_concluded_filter(f, b.param) for f in c.where] or ["true"])
        n = b.sessions(f"count(*) FILTER (WHERE {tests})")
    else:
        tests = " AND ".join([filter_sql(f, "properties", b.param) for f in c.where] or ["true"])
        n = b.events(c.event, tests)
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
    """SQL true where the JSON column `props` passes filter `f` (never NULL). The property
    is parsed out once a row where its type is implied by the test: a number's JSON text
    casts to DOUBLE and a string's (quoted) does not; `true` is only a boolean's text."""
    path = param(pointer(f.property))
    raw = f"json_extract({props}, {path})::VARCHAR"
    if f.op in ("exists", "not exists"):
        present = f"coalesce({raw} <> 'null', false)"
        return present if f.op == "exists" else f"NOT {present}"
    text = f"json_extract_string({props}, {path})"
    is_text = f"json_type({props}, {path}) = 'VARCHAR'"
    value = f.value
    if f.op == "contains":
        test = f"{is_text} AND contains({text}, {param(value)})"
    elif isinstance(value, bool):
        test = f"{raw} = {param('true' if value else 'false')}"
    elif isinstance(value, str):
        # another type's text (5, true, [1]) could equal this value: then check the type
        test = f"{text} = {param(value)}"
        test = f"{is_text} AND {test}" if _not_only_text(value) else test
    else:
        test = f"TRY_CAST({raw} AS DOUBLE) {_SQL_OPS[f.op]} {param(value)}"
    test = f"coalesce({test}, false)"
    return f"NOT {test}" if f.op == "!=" else test


def _not_only_text(value: str) -> bool:
    """Could a JSON value other than a string have `value` as its extracted text?"""
    if value in ("true", "false", "null") or value[:1] in ("{", "["):
        return True
    try:
        float(value)
    except ValueError:
        return False
    return True


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
