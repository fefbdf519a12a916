"""The brake on failed sign-ins, on its own clock."""

from __future__ import annotations

import pytest

from lull.errors import TooManyRequests
from lull.web.auth import Throttle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failures_up_to_the_limit_are_allowed_then_refused() -> None:
    clock = Clock()
    t = Throttle(limit=3, window_s=60, clock=clock)
    for _ in range(3):
        t.check("ann")
        t.failed("ann")
    with pytest.raises(TooManyRequests, match="try again in 1 minute"):
        t.check("ann")
    t.check("bob")  # another key is not held back


def test_the_refusal_ends_when_the_oldest_failure_leaves_the_window() -> None:
    clock = Clock()
    t = Throttle(limit=2, window_s=600, clock=clock)
    t.failed("ann")
    clock.now += 300
    t.failed("ann")
    clock.now += 299
    with pytest.raises(TooManyRequests, match="1 minute"):
        t.check("ann")
    clock.now += 1.5
    t.check("ann")


def test_a_success_forgets_the_failures() -> None:
    t = Throttle(limit=2, clock=Clock())
    t.failed("ann")
    t.failed("ann")
    t.succeeded("ann")
    t.check("ann")
