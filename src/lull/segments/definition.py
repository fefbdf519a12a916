"""A segment's definition, read from JSON and checked; every error names the bad field.

A past-behaviour segment (docs/segments.md):

    {"days": 7,                                  # or "from"/"until" dates, or "days" + "until"
     "match": "all",                             # or "any"
     "conditions": [
        {"type": "event", "event": "Session Concluded", "at_least": 3,
         "where": [{"property": "Session Length", "op": ">", "value": 600}]},
        {"type": "event", "event": "Song Played", "did": false},
        {"type": "sessions", "at_least": 2},
        {"type": "session_time", "at_least": 3600},
        {"type": "profile", "property": "plan", "op": "=", "value": "premium"},
        {"type": "group", "match": "any", "conditions": [...]}]}

A live segment: {"event": "Song Played", "where": [...], "first_time": false,
"webhook": "https://..."}.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import urlsplit

from lull.errors import BadInput
from lull.model import SYSTEM_EVENTS

OPS = ("=", "!=", ">", ">=", "<", "<=", "contains", "exists", "not exists")
NUMERIC_OPS = (">", ">=", "<", "<=")
MAX_CONDITIONS = 50  # in a whole definition, groups' included
MAX_DEPTH = 4  # groups within groups
MAX_FILTERS = 20  # property filters of one event condition
MAX_TEXT = 1000  # a property name or a string value
MAX_EVENT_NAME = 200
MAX_DAYS = 3660
MAX_COUNT = 10**12
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
Value = str | int | float | bool


@dataclass(frozen=True, slots=True)
class Filter:
    """A property test: `property` `op` `value` (None for exists / not exists)."""

    property: str
    op: str
    value: Value | None


@dataclass(frozen=True, slots=True)
class Counted:
    """How many times: at least `at_least` (default 1 for "did"), at most `at_most`."""

    at_least: int | None
    at_most: int | None


@dataclass(frozen=True, slots=True)
class EventCondition:
    """Did (or did not) do `event`, with `where` filters, a number of times in the range."""

    event: str
    did: bool
    where: tuple[Filter, ...]
    count: Counted


@dataclass(frozen=True, slots=True)
class SessionsCondition:
    """The number of sessions (concluded in the range), or their total length in seconds."""

    total_time: bool
    count: Counted


@dataclass(frozen=True, slots=True)
class ProfileCondition:
    filter: Filter


@dataclass(frozen=True, slots=True)
class Group:
    match: str  # "all" | "any"
    conditions: tuple[Condition, ...]


Condition = EventCondition | SessionsCondition | ProfileCondition | Group


@dataclass(frozen=True, slots=True)
class Range:
    """Days in the project's time zone: from `first` to `until`, or the `days` days up to
    `until` (None: today, when the segment is counted)."""

    first: date | None
    until: date | None
    days: int | None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.first is not None:
            out["from"] = self.first.isoformat()
        if self.days is not None:
            out["days"] = self.days
        if self.until is not None:
            out["until"] = self.until.isoformat()
        return out


@dataclass(frozen=True, slots=True)
class Past:
    """A past-behaviour segment."""

    range: Range
    root: Group


@dataclass(frozen=True, slots=True)
class Live:
    """A live segment: fires when a profile does `event` (matching `where`; with
    `first_time`, only the first such event of the profile) by POSTing to `webhook`."""

    event: str
    where: tuple[Filter, ...]
    first_time: bool
    webhook: str


def check_name(name: object) -> str:
    """A segment's name: 1 to 100 letters, digits, '.', '_' or '-', starting with a
    letter or a digit (it goes into addresses and command lines)."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise BadInput(
            f"segment name {str(name)[:40]!r}: use 1 to 100 letters, digits, '.', '_' or '-', "
            "starting with a letter or a digit"
        )
    return name


def is_live(raw: object) -> bool:
    """Is this definition a live segment's (it names a webhook)?"""
    return isinstance(raw, dict) and "webhook" in raw


def parse(raw: object) -> Past | Live:
    """A past-behaviour or a live definition (one with a `webhook`)."""
    return parse_live(raw, ()) if is_live(raw) else parse_past(raw)


def parse_past(raw: object) -> Past:
    obj = _object(raw, "definition")
    _only(obj, "definition", {"from", "until", "days", "match", "conditions"})
    budget = [MAX_CONDITIONS]
    root = _group(obj, "definition", 0, budget)
    return Past(_range(obj), root)


def parse_live(raw: object, barred: tuple[str, ...]) -> Live:
    """A live definition; `barred`: the project's excluded events, which, like
    Session Concluded, cannot fire a live segment."""
    obj = _object(raw, "definition")
    _only(obj, "definition", {"event", "where", "first_time", "webhook"})
    event = _event_name(obj.get("event"), "event")
    if event in SYSTEM_EVENTS:
        raise BadInput(
            f"event: {event!r} cannot be used in a live segment: it is the system event lull "
            "raises when a session ends, not an event a profile does as it happens; use it "
            "in a past-behaviour segment"
        )
    if event in barred:
        raise BadInput(
            f"event: {event!r} cannot be used in a live segment: it is one of the project's "
            "excluded system events (Settings: excluded events)"
        )
    first = obj.get("first_time", False)
    if not isinstance(first, bool):
        raise BadInput("first_time: must be true or false")
    return Live(event, _filters(obj.get("where", []), "where"), first, check_webhook(obj))


def check_webhook(obj: dict[str, Any]) -> str:
    url = obj.get("webhook")
    if not isinstance(url, str) or len(url) > 2000:
        raise BadInput("webhook: must be an http:// or https:// address (at most 2000 characters)")
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
        parts = urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise BadInput(f"webhook: {url[:80]!r} is not an http:// or https:// address with a host")
    if any(c in url for c in "\r\n\t "):
        raise BadInput("webhook: the address holds a space or a line break")
    return url


def as_json(d: Past | Live) -> dict[str, Any]:
    """The definition as JSON again (what is saved): `parse(as_json(d)) == d`."""
    if isinstance(d, Live):
        return {
            "event": d.event,
            "where": [_filter_json(f) for f in d.where],
            "first_time": d.first_time,
            "webhook": d.webhook,
        }
    return {**d.range.as_json(), **_condition_json(d.root)}


def _condition_json(c: Condition) -> dict[str, Any]:
    if isinstance(c, Group):
        return {"match": c.match, "conditions": [_wrapped(x) for x in c.conditions]}
    raise AssertionError(c)


def _wrapped(c: Condition) -> dict[str, Any]:
    if isinstance(c, Group):
        return {"type": "group", **_condition_json(c)}
    if isinstance(c, EventCondition):
        out: dict[str, Any] = {"type": "event", "event": c.event, "did": c.did}
        if c.where:
            out["where"] = [_filter_json(f) for f in c.where]
        return out | _count_json(c.count)
    if isinstance(c, SessionsCondition):
        return {"type": "session_time" if c.total_time else "sessions"} | _count_json(c.count)
    return {"type": "profile", **_filter_json(c.filter)}


def _count_json(c: Counted) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if c.at_least is not None:
        out["at_least"] = c.at_least
    if c.at_most is not None:
        out["at_most"] = c.at_most
    return out


def _filter_json(f: Filter) -> dict[str, Any]:
    out: dict[str, Any] = {"property": f.property, "op": f.op}
    if f.value is not None:
        out["value"] = f.value
    return out


# -- reading ---------------------------------------------------------------------------


def _object(raw: object, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise BadInput(f"{where}: must be a JSON object")
    return raw


def _only(obj: dict[str, Any], where: str, allowed: set[str]) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise BadInput(
            f"{where}: unknown field {unknown[0]!r} (expected {', '.join(sorted(allowed))})"
        )


def _range(obj: dict[str, Any]) -> Range:
    first = _date(obj, "from")
    until = _date(obj, "until")
    days = obj.get("days")
    if days is not None and (
        isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS
    ):
        raise BadInput(f"days: must be a whole number from 1 to {MAX_DAYS}")
    if first is not None and days is not None:
        raise BadInput("from: give 'from' and 'until', or 'days' (and 'until'), not both")
    if first is not None:
        if until is None:
            raise BadInput("until: required with 'from' (the last day of the range)")
        if first > until:
            raise BadInput("from: the first day comes after 'until'")
        if (until - first).days + 1 > MAX_DAYS:
            raise BadInput(f"from: pick at most {MAX_DAYS} days")
    elif days is None:
        days = 30
    return Range(first, until, days)


def _date(obj: dict[str, Any], key: str) -> date | None:
    raw = obj.get(key)
    if raw is None:
        return None
    try:
        if not isinstance(raw, str):
            raise ValueError
        day = date.fromisoformat(raw)
    except ValueError:
        raise BadInput(f"{key}: {str(raw)[:40]!r} is not a date YYYY-MM-DD") from None
    if not 1970 <= day.year <= 9998:
        raise BadInput(f"{key}: pick a day from 1970 to 9998")
    return day


def _group(obj: dict[str, Any], where: str, depth: int, budget: list[int]) -> Group:
    match = obj.get("match", "all")
    if match not in ("all", "any"):
        raise BadInput(f"{where}.match: must be 'all' or 'any'")
    items = obj.get("conditions")
    if not isinstance(items, list) or not items:
        raise BadInput(f"{where}.conditions: must be a non-empty list of conditions")
    out = []
    for i, item in enumerate(items):
        at = f"{'' if where == 'definition' else where + '.'}conditions[{i}]"
        budget[0] -= 1
        if budget[0] < 0:
            raise BadInput(f"{at}: at most {MAX_CONDITIONS} conditions in a segment")
        out.append(_condition(item, at, depth, budget))
    return Group(match, tuple(out))


def _condition(raw: object, where: str, depth: int, budget: list[int]) -> Condition:
    obj = _object(raw, where)
    kind = obj.get("type")
    if kind == "group":
        if depth + 1 > MAX_DEPTH:
            raise BadInput(f"{where}: groups nest at most {MAX_DEPTH} deep")
        _only(obj, where, {"type", "match", "conditions"})
        return _group(obj, where, depth + 1, budget)
    if kind == "event":
        _only(obj, where, {"type", "event", "did", "where", "at_least", "at_most"})
        did = obj.get("did", True)
        if not isinstance(did, bool):
            raise BadInput(f"{where}.did: must be true or false")
        count = _counted(obj, where)
        if not did and (count.at_least is not None or count.at_most is not None):
            raise BadInput(
                f"{where}: 'did': false takes no 'at_least' or 'at_most' (did not = 0 times)"
            )
        if did and count.at_least == 0:
            raise BadInput(f"{where}.at_least: must be at least 1 ('did': false for none)")
        event = _event_name(obj.get("event"), f"{where}.event")
        return EventCondition(event, did, _filters(obj.get("where", []), f"{where}.where"), count)
    if kind in ("sessions", "session_time"):
        _only(obj, where, {"type", "at_least", "at_most"})
        count = _counted(obj, where)
        if count.at_least is None and count.at_most is None:
            raise BadInput(f"{where}: give 'at_least' or 'at_most' (or both)")
        return SessionsCondition(kind == "session_time", count)
    if kind == "profile":
        _only(obj, where, {"type", "property", "op", "value"})
        return ProfileCondition(_filter(obj, where))
    raise BadInput(
        f"{where}.type: {str(kind)[:40]!r} is not one of event, sessions, session_time, "
        "profile, group"
    )


def _counted(obj: dict[str, Any], where: str) -> Counted:
    def whole(key: str) -> int | None:
        v = obj.get(key)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_COUNT:
            raise BadInput(f"{where}.{key}: must be a whole number from 0 to {MAX_COUNT}")
        return v

    lo, hi = whole("at_least"), whole("at_most")
    if lo is not None and hi is not None and lo > hi:
        raise BadInput(f"{where}.at_most: {hi} is less than at_least {lo}")
    return Counted(lo, hi)


def _event_name(raw: object, where: str) -> str:
    if not isinstance(raw, str) or not raw.strip() or len(raw) > MAX_EVENT_NAME:
        raise BadInput(f"{where}: must be an event name (1 to {MAX_EVENT_NAME} characters)")
    return raw


def _filters(raw: object, where: str) -> tuple[Filter, ...]:
    if not isinstance(raw, list):
        raise BadInput(f"{where}: must be a list of property filters")
    if len(raw) > MAX_FILTERS:
        raise BadInput(f"{where}: at most {MAX_FILTERS} property filters")
    out = []
    for i, item in enumerate(raw):
        at = f"{where}[{i}]"
        obj = _object(item, at)
        _only(obj, at, {"property", "op", "value"})
        out.append(_filter(obj, at))
    return tuple(out)


def _filter(obj: dict[str, Any], where: str) -> Filter:
    prop = obj.get("property")
    if not isinstance(prop, str) or not prop or len(prop) > MAX_TEXT:
        raise BadInput(f"{where}.property: must be a property name (1 to {MAX_TEXT} characters)")
    op = obj.get("op", "=")
    if op not in OPS:
        raise BadInput(f"{where}.op: {str(op)[:20]!r} is not one of {', '.join(OPS)}")
    if op in ("exists", "not exists"):
        if "value" in obj:
            raise BadInput(f"{where}.value: '{op}' takes no value")
        return Filter(prop, op, None)
    if "value" not in obj:
        raise BadInput(f"{where}.value: required with '{op}'")
    value = obj["value"]
    if op in NUMERIC_OPS or op == "contains":
        want = "a number" if op in NUMERIC_OPS else "a string"
        ok = (
            isinstance(value, int | float) and not isinstance(value, bool)
            if op in NUMERIC_OPS
            else isinstance(value, str)
        )
        if not ok:
            raise BadInput(f"{where}.value: '{op}' needs {want}")
    if not isinstance(value, str | int | float | bool):
        raise BadInput(f"{where}.value: must be a string, a number, true or false")
    if (isinstance(value, float) and value != value) or value in (float("inf"), float("-inf")):
        raise BadInput(f"{where}.value: must be a finite number")
    if isinstance(value, str) and len(value) > MAX_TEXT:
        raise BadInput(f"{where}.value: at most {MAX_TEXT} characters")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53:
        raise BadInput(f"{where}.value: a whole number of at most 2^53")
    return Filter(prop, op, value)
