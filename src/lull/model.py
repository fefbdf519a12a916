"""Values shared by every engine: sources, reserved names, settings, time and id helpers."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from lull.errors import BadInput

SOURCES = ("web", "ios", "android", "api")
SESSION_CONCLUDED = "Session Concluded"
SYSTEM_EVENTS = frozenset({SESSION_CONCLUDED})
DEFAULT_EXCLUDED = (
    "App Installed",
    "App Uninstalled",
    "Notification Sent",
    "Notification Clicked",
    "UTM Visited",
    "Identity Set",
    "Identity Reset",
    "Identity Error",
)
ANY_ORIGIN = ("*",)
MAX_ORIGINS = 100
_ORIGIN = re.compile(r"^https?://[a-z0-9.-]+(:\d{1,5})?$|^https?://\[[0-9a-f:.]+\](:\d{1,5})?$")
MINUTE_MS = 60_000
DEFAULT_TIMEOUT_MS = 20 * MINUTE_MS
MIN_TIMEOUT_MS = MINUTE_MS
MAX_TIMEOUT_MS = 24 * 60 * MINUTE_MS

# What an event may hold: one definition for every way in (the native API, the SDK
# formats, `lull import`) and out (`lull export`), so that whatever is stored can be
# exported and imported again unchanged (docs/api.md, "What an event may hold").
MAX_ID = 256  # characters of a message id and of a profile id (user, device, identity)
MAX_NAME = 512  # characters of an event name
MAX_EVENT = 32 * 1024  # bytes of an event as JSON (its properties, as stored, counted)
MAX_DEPTH = 64  # arrays and objects inside each other (a request body is counted whole)
# Epoch milliseconds accepted: 1970 to the year 9999, what every reader handles (an ISO
# text with a four-digit year, DuckDB's timestamps, Python's datetime, the browser's Date).
MIN_EPOCH_MS = 0
MAX_EPOCH_MS = 253_402_300_799_999

# ISO-8601 with a date, a time and an offset (or Z). The same pattern is used in SQL
# (ingest/ndjson.py) so the fast and the exact validators agree on what is valid.
ISO_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})$"
_ISO = re.compile(ISO_PATTERN)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# A duration: a bare number (minutes), or numbers with units, largest first or not:
# 90s, 20m, 1h, 1h30m, 30 min, 0.5h, 2 hours.
_BARE = re.compile(r"^\s*(\d{1,9}(?:\.\d{1,6})?)\s*$")
_PART = re.compile(
    r"\s*(\d{1,9}(?:\.\d{1,6})?)\s*(ms|milliseconds?|s|secs?|seconds?|m|mins?|minutes?"
    r"|h|hrs?|hours?|d|days?)(?![a-z])",
    re.IGNORECASE,
)
_UNIT_MS = {"ms": 1, "s": 1000, "m": MINUTE_MS, "h": 60 * MINUTE_MS, "d": 24 * 60 * MINUTE_MS}
# The spelled-out units by their first three letters (or fewer).
_UNIT_OF = {"mil": "ms", "s": "s", "sec": "s", "m": "m", "min": "m", "h": "h", "hr": "h",
            "hrs": "h", "hou": "h", "d": "d", "day": "d"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Settings:
    """A project's session settings (docs/sessions.md, "Settings")."""

    sessions_enabled: bool = False
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    excluded: tuple[str, ...] = DEFAULT_EXCLUDED
    timezone: str = "UTC"
    # Web pages (origins) whose browsers may send events with the project's keys: see
    # parse_origins. Ingestion only: reads and the web app never answer other origins.
    allowed_origins: tuple[str, ...] = ANY_ORIGIN
    excluded_set: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "excluded_set", frozenset(self.excluded))

    def is_eligible(self, name: str, source: str) -> bool:
        """R1, for an event received now."""
        return (
            self.sessions_enabled
            and source != "api"
            and name not in self.excluded_set
            and name not in SYSTEM_EVENTS
        )

    def as_json(self) -> dict[str, object]:
        return {
            "sessions": "on" if self.sessions_enabled else "off",
            "timeout": format_duration(self.timeout_ms),
            "timeout_ms": self.timeout_ms,
            "timezone": self.timezone,
            "excluded": list(self.excluded),
            "allowed_origins": list(self.allowed_origins),
        }

    def allows_origin(self, origin: str) -> bool:
        """May a browser on `origin` (its `Origin` header) send this project events?"""
        return "*" in self.allowed_origins or origin.lower() in self.allowed_origins


def parse_duration(text: str) -> int:
    """`90s`, `20m`, `1h`, `1h30m`, `30 min`, `0.5h` (a bare number is minutes) ->
    milliseconds; a fraction of a millisecond is refused."""
    bare = _BARE.match(text)
    parts = [(bare.group(1), "m")] if bare else []
    at = 0
    while not bare and at < len(text.rstrip()):
        m = _PART.match(text, at)
        if m is None:
            parts = []
            break
        parts.append((m.group(1), m.group(2).lower()))
        at = m.end()
    if not parts:
        raise BadInput(
            f"bad duration {text!r}: use a number and a unit, e.g. 90s, 20m, 1h, 1h30m "
            "(a bare number is minutes)"
        )
    total = sum(Decimal(n) * _UNIT_MS[_UNIT_OF[unit[:3]] if unit != "ms" else "ms"]
                for n, unit in parts)  # fmt: skip
    if total != int(total):
        raise BadInput(f"bad duration {text!r}: a fraction of a millisecond")
    return int(total)


def parse_timeout(text: str) -> int:
    ms = parse_duration(text)
    if not MIN_TIMEOUT_MS <= ms <= MAX_TIMEOUT_MS:
        hint = (
            f" (a bare number is minutes: for seconds write {text.strip()}s)"
            if _BARE.match(text) and ms > MAX_TIMEOUT_MS
            else ""
        )
        raise BadInput(f"session timeout {text!r} is out of range: allow 1m to 24h{hint}")
    return ms


def parse_excluded(text: str) -> tuple[str, ...]:
    """`--excluded "A,B"` as event names: trimmed, blanks and repeats dropped."""
    return tuple(dict.fromkeys(x.strip() for x in text.split(",") if x.strip()))


def parse_origins(values: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Allowed origins as a user gives them -> a checked, lowercased, deduplicated tuple.

    Each is `*` (any page) or a browser origin: `https://example.com`, `http://127.0.0.1:8080`
    (a scheme, a host and perhaps a port; no path, as a browser's `Origin` header has none).
    An empty tuple allows no page: only clients that are not browsers can send.
    """
    out: dict[str, None] = {}
    for raw in values:
        value = raw.strip().lower().rstrip("/")
        if not value:
            continue
        if value != "*" and not _ORIGIN.match(value):
            raise BadInput(
                f"bad origin {raw.strip()[:80]!r}: use * or a scheme and host such as "
                "https://example.com or http://127.0.0.1:8080 (no path)"
            )
        out[value] = None
    if len(out) > MAX_ORIGINS:
        raise BadInput(f"at most {MAX_ORIGINS} allowed origins")
    return tuple(out)


def format_duration(ms: int) -> str:
    for unit in ("h", "m", "s"):
        if ms % _UNIT_MS[unit] == 0:
            return f"{ms // _UNIT_MS[unit]}{unit}"
    return f"{ms}ms"


def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadInput(
            f"unknown time zone {name!r}: use an IANA name such as Europe/Paris"
        ) from None
    return name


def parse_time(value: object, what: str) -> int:
    """ISO-8601 with an offset, or integer epoch ms -> epoch ms. Raises BadInput naming `what`."""
    if isinstance(value, bool):
        raise BadInput(f"{what}: expected an ISO-8601 time or epoch milliseconds, got a boolean")
    if isinstance(value, int):
        if not MIN_EPOCH_MS <= value <= MAX_EPOCH_MS:
            raise BadInput(
                f"{what}: epoch milliseconds {value} out of range: use a time from 1970 to 9999 "
                f"({MIN_EPOCH_MS} to {MAX_EPOCH_MS})"
            )
        return value
    if isinstance(value, str):
        if not _ISO.match(value):
            raise BadInput(
                f"{what}: {value!r} is not an ISO-8601 time with an offset or Z "
                "(e.g. 2026-11-01T10:00:00.000Z)"
            )
        text = value[:-1] + "+00:00" if value.endswith("Z") else value
        try:
            ms = _to_ms(datetime.fromisoformat(text))
        except ValueError:
            raise BadInput(f"{what}: {value!r} is not a valid date and time") from None
        if not MIN_EPOCH_MS <= ms <= MAX_EPOCH_MS:  # what every reader handles
            raise BadInput(f"{what}: {value!r} is out of range: use a time from 1970 to 9999")
        return ms
    raise BadInput(
        f"{what}: expected an ISO-8601 time or epoch milliseconds, got {type(value).__name__}"
    )


def check_epoch(ms: int, what: str) -> int:
    """`ms` if it is within what every reader handles; BadInput naming `what` if not."""
    if not MIN_EPOCH_MS <= ms <= MAX_EPOCH_MS:
        raise BadInput(f"{what}: {ms} ms is out of range: the time must fall from 1970 to 9999")
    return ms


def _to_ms(dt: datetime) -> int:
    return (dt - _EPOCH) // timedelta(milliseconds=1)


def format_time(ms: int) -> str:
    """Epoch ms -> ISO-8601 UTC with milliseconds and Z."""
    sec, milli = divmod(ms, 1000)
    return (_EPOCH + timedelta(seconds=sec)).strftime("%Y-%m-%dT%H:%M:%S") + f".{milli:03d}Z"


def session_id_for(profile_id: str, message_id: str) -> str:
    """R3: derived from the profile and the session's first event (same as SQL md5 below)."""
    return hashlib.md5(f"{profile_id}\x1f{message_id}".encode()).hexdigest()


def session_id_sql(profile: str, message: str) -> str:
    """`session_id_for` as a SQL expression over two columns (DuckDB; Spark alike)."""
    return f"md5({profile} || chr(31) || {message})"
