"""Identity links by time (server/identity.py): which profile an anonymous id's event goes
to, which identify calls change that, and the link's time through the ingest log."""

from __future__ import annotations

from lull.server.door import Batch, from_arrow, to_arrow
from lull.server.identity import Target, follow, news


def test_an_event_goes_to_the_user_from_the_identify_calls_time_on() -> None:
    aliases = {"anon": Target("u", 1000), "old": Target("u-old", None)}
    assert follow(aliases, "anon", 999) == "anon"  # recorded before it: the device's
    assert follow(aliases, "anon", 1000) == "u"  # at it or after: the user's
    assert follow(aliases, "anon", None) == "u"  # the tie as it is
    assert follow(aliases, "old", 0) == "u-old"  # a link from before links had times
    assert follow(aliases, "nobody", 5) == "nobody"


def test_which_identify_calls_are_news() -> None:
    aliases: dict[str, Target] = {}

    def resolve(anonymous: str, at: int | None) -> str:
        return follow(aliases, anonymous, at)

    def identify(profile: str, at: int) -> bool:
        tie = Target(profile, at)
        if news(resolve, "anon", tie):
            aliases["anon"] = tie
            return True
        return False

    assert identify("u", 1000)  # the first
    assert not identify("u", 2000)  # repeated later: the tie keeps its time
    assert identify("u", 500) and aliases["anon"] == Target("u", 500)  # an earlier one came late
    assert not identify("v", 400)  # another user, before the tie: an older call
    assert identify("v", 3000) and aliases["anon"] == Target("v", 3000)  # a later one moves it
    aliases["anon"] = Target("u", None)  # stored before links had times
    assert not identify("u", 10) and identify("v", 10)


def test_a_links_time_goes_through_the_ingest_log() -> None:
    batch = Batch(7, 5000, [], [("anon", Target("u", 1234))])
    [back] = from_arrow(to_arrow("shop", batch), {"shop": 7})
    assert back.links == [("anon", Target("u", 1234))]
