"""Identity links: an anonymous id (a device) tied to a known profile by an identify call.

The link holds the identify call's own time (`since`). An anonymous id's event goes to
the profile when its time is at or after that, and stays on the anonymous profile when
it is before it, whenever it arrives: an SDK may deliver its `$identify` before the
batch of events it captured before it. Links stored before lull kept their time have
`since` None: since always. lull never moves events it has stored.

An anonymous id is tied to one profile at a time. Of several identify calls naming the
same user, the earliest counts (an SDK repeats them: on every page load, on every event
that carries both ids); an identify call naming another user moves the id to that user
from its time on, unless an identify call after it (by time) is already known.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple


class Target(NamedTuple):
    """What an anonymous id is tied to: a profile, from a time on (epoch ms)."""

    profile: str
    since: int | None  # None: since always (a link stored before links had times)


# A link as requests carry it to the ingest log and the engine: (anonymous id, target).
Link = tuple[str, Target]
# The profile of an anonymous id's event at a time (None: the profile it is tied to now).
Resolve = Callable[[str, int | None], str]


def follow(aliases: Mapping[str, Target], anonymous: str, at: int | None) -> str:
    """The profile of an anonymous id's event at time `at`: the profile it is tied to
    if the tie holds by then, else the anonymous id itself. `at` None: the tie as it is."""
    target = aliases.get(anonymous)
    if target is None:
        return anonymous
    if at is not None and target.since is not None and at < target.since:
        return anonymous
    return target.profile


def news(resolve: Resolve, anonymous: str, target: Target) -> bool:
    """Does a link of `anonymous` to `target` change what is known (so it is stored)?
    Yes when the id is tied to nobody; to the same profile, when it is earlier than
    that tie; to another profile, when it is not before that tie."""
    now = resolve(anonymous, None)
    if now == anonymous:
        return True
    if target.since is None:
        return now != target.profile
    at = resolve(anonymous, target.since)
    if now == target.profile:
        return at != target.profile
    return at == now
