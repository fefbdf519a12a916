"""Settings changes while the server runs: saved, and history rebuilt if asked, by the
single writer between two group commits, so no event is applied under half-changed
settings. Afterwards the project's in-memory state is rebuilt from the store exactly as
a restart would rebuild it.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

from lull.errors import BadInput
from lull.model import Settings, check_timezone, parse_origins, parse_timeout
from lull.resessionize import resessionize
from lull.store.db import transaction
from lull.store.projects import forget_change, get_settings, save_settings

if TYPE_CHECKING:
    from lull.server.live import LiveEngine

T = TypeVar("T")
# New settings, or how to make them from the settings in force when the change is made.
NewSettings = Settings | Callable[[Settings], Settings]

# The fields a settings change may carry (PUT /api/v1/settings), with what each holds.
FIELDS = {
    "sessions_enabled": "true or false",
    "timeout": "a duration such as 90s, 20m, 1h (1m to 24h)",
    "timezone": "an IANA time zone such as Europe/Paris",
    "excluded": "a list of event names",
    "allowed_origins": 'a list of origins such as "https://example.com", or "*"',
    "rebuild": "true or false",
}


@dataclass(slots=True)
class SettingsChange:
    """A request for the writer: new settings for a project, and whether to rebuild."""

    project_id: int
    settings: NewSettings
    rebuild: bool
    future: Future[dict[str, object]]


def parse_change(body: object) -> tuple[Callable[[Settings], Settings], bool]:
    """A settings change as sent over HTTP (a JSON object with any of FIELDS) -> how to
    change the settings in force (fields left out keep their value) and whether to
    rebuild. Applied by the writer, so two changes sent at once both take effect."""
    if not isinstance(body, dict):
        raise BadInput("body must be a JSON object with any of: " + ", ".join(FIELDS))
    for name in body:
        if name not in FIELDS:
            raise BadInput(f"unknown field {name!r}: use any of {', '.join(FIELDS)}")
    changes: dict[str, Any] = {}
    if "sessions_enabled" in body:
        changes["sessions_enabled"] = _flag(body, "sessions_enabled")
    if "timeout" in body:
        changes["timeout_ms"] = _parsed(body, "timeout", parse_timeout)
    if "timezone" in body:
        changes["timezone"] = _parsed(body, "timezone", check_timezone)
    if "excluded" in body:
        names = body["excluded"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise BadInput(f"field 'excluded': expected {FIELDS['excluded']}")
        changes["excluded"] = tuple(dict.fromkeys(n.strip() for n in names if n.strip()))
    if "allowed_origins" in body:
        origins = body["allowed_origins"]
        if not isinstance(origins, list) or not all(isinstance(o, str) for o in origins):
            raise BadInput(f"field 'allowed_origins': expected {FIELDS['allowed_origins']}")
        try:
            changes["allowed_origins"] = parse_origins(origins)
        except BadInput as e:
            raise BadInput(f"field 'allowed_origins': {e.message}") from None
    rebuild = _flag(body, "rebuild") if "rebuild" in body else False
    if rebuild and changes.get("sessions_enabled") is False:
        raise _no_rebuild()
    return lambda current: replace(current, **changes), rebuild


def _no_rebuild() -> BadInput:
    # R1: while sessions are off no event gets a session, so there is nothing to build
    return BadInput("field 'rebuild': sessions are off; turn them on to rebuild history")


def _shown(value: object) -> str:
    """A value as the error names it: short, whatever was sent."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _flag(body: dict[str, object], name: str) -> bool:
    value = body[name]
    if not isinstance(value, bool):
        raise BadInput(f"field {name!r}: expected {FIELDS[name]}, got {_shown(value)}")
    return value


def _parsed(body: dict[str, object], name: str, parse: Callable[[str], T]) -> T:
    value = body[name]
    if not isinstance(value, str) or len(value) > 64:
        raise BadInput(f"field {name!r}: expected {FIELDS[name]}, got {_shown(value)}")
    try:
        return parse(value)
    except BadInput as e:
        raise BadInput(f"field {name!r}: {e.message}") from None


def apply(engine: LiveEngine, change: SettingsChange) -> None:
    """On the writer thread: save the settings, rebuild the project's sessions if asked
    (putting the old settings back if that fails), then reload the project's state."""
    con, pid = engine.con, change.project_id
    engine.flush_profiles()
    try:
        old = get_settings(con, pid)
        new = change.settings(old) if callable(change.settings) else change.settings
        if change.rebuild and not new.sessions_enabled:
            raise _no_rebuild()
    except BaseException as e:  # refused before anything changed: no state to rebuild
        change.future.set_exception(e)
        return
    try:
        with transaction(con):
            save_settings(con, pid, new)
        rebuilt = None
        if change.rebuild:
            try:
                rebuilt = resessionize(con, pid, now=engine.clock())
            except BaseException:
                with transaction(con):
                    save_settings(con, pid, old, history=False)
                    forget_change(con, pid)
                raise
    except BaseException as e:
        engine.reload(pid)
        change.future.set_exception(e)
        return
    engine.reload(pid)
    change.future.set_result(
        {
            "settings": engine.settings(pid).as_json(),
            "rebuilt": None if rebuilt is None else rebuilt.as_json(),
        }
    )
