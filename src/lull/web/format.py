"""How the pages show times and lengths."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from lull.model import parse_time


def local_time(iso: str, tz: str) -> str:
    """An ISO-8601 UTC time (as the read API gives it) in the project's zone."""
    ms = parse_time(iso, "time")
    return (
        datetime.fromtimestamp(ms / 1000, UTC)
        .astimezone(ZoneInfo(tz))
        .strftime("%Y-%m-%d %H:%M:%S")
    )


def length(seconds: int | float | None) -> str:
    """12 -> '12s', 754 -> '12m 34s', 7260 -> '2h 1m'."""
    if seconds is None:
        return ""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60}s"
    return f"{s // 3600}h {s % 3600 // 60}m"
