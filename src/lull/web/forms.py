"""The settings form, read and checked as the command line checks `lull settings`."""

from __future__ import annotations

from starlette.datastructures import FormData

from lull.errors import BadInput
from lull.model import Settings, check_timezone, parse_origins, parse_timeout

MAX_EXCLUDED = 200
MAX_NAME = 200


def settings_from_form(form: FormData, current: Settings) -> tuple[Settings, bool]:
    """The new settings and whether to rebuild history; BadInput names the field. A form
    without the allowed origins (an older page) leaves them as they are."""
    if _text(form, "sessions") not in ("on", ""):
        raise BadInput("'Activate sessions' must be on or off")
    sessions = _text(form, "sessions") == "on"
    timeout = parse_timeout(_text(form, "timeout"))
    timezone = check_timezone(_text(form, "timezone").strip())
    names = [line.strip() for line in _text(form, "excluded").splitlines()]
    excluded = tuple(dict.fromkeys(n for n in names if n))
    if len(excluded) > MAX_EXCLUDED:
        raise BadInput(f"at most {MAX_EXCLUDED} excluded events")
    too_long = next((n for n in excluded if len(n) > MAX_NAME), None)
    if too_long is not None:
        raise BadInput(f"excluded event name {too_long[:40]!r}... is over {MAX_NAME} characters")
    origins = (
        parse_origins(_text(form, "allowed_origins").splitlines())
        if "allowed_origins" in form
        else current.allowed_origins
    )
    rebuild = _text(form, "rebuild") == "on"
    return Settings(sessions, timeout, excluded, timezone, origins), rebuild


def _text(form: FormData, key: str) -> str:
    value = form.get(key, "")
    if not isinstance(value, str):
        raise BadInput(f"field {key!r} must be text")
    return value
