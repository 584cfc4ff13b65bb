"""The failed-attempt throttle, driven through its public methods with a clock the test
moves: when an address is blocked, for how long, and what it forgets."""

from __future__ import annotations

import limits
import pytest

from guard._counting.plan import Window
from guard._request.throttle import POLICY, FailureThrottle
from tests.conftest import Clock

THREE_PER_MINUTE = limits.parse("3/minute")
#: Its entry in the RateLimit-Policy header of a blocked address's 429.
QUOTA = '"failed-auth";q=3;w=60'


@pytest.fixture
def throttle(clock: Clock) -> FailureThrottle:
    return FailureThrottle(THREE_PER_MINUTE, clock=clock)


def test_an_address_is_blocked_at_exactly_the_limit_not_before(throttle: FailureThrottle) -> None:
    throttle.count("10.0.0.1")
    throttle.count("10.0.0.1")
    assert throttle.blocked("10.0.0.1") is None
    throttle.count("10.0.0.1")
    assert throttle.blocked("10.0.0.1") == Window(POLICY, THREE_PER_MINUTE, 0, 60, False, QUOTA)


def test_failures_of_one_address_never_block_another(throttle: FailureThrottle) -> None:
    for _ in range(3):
        throttle.count("10.0.0.1")
    assert throttle.blocked("10.0.0.2") is None
    throttle.count("10.0.0.2")
    assert throttle.blocked("10.0.0.2") is None


def test_an_unknown_address_is_not_blocked(throttle: FailureThrottle) -> None:
    assert throttle.blocked("10.0.0.1") is None


def test_the_wait_counts_down_with_the_clock_rounded_up(
    throttle: FailureThrottle, clock: Clock
) -> None:
    for _ in range(3):
        throttle.count("10.0.0.1")
    clock.advance(20.5)
    assert throttle.blocked("10.0.0.1") == Window(POLICY, THREE_PER_MINUTE, 0, 40, False, QUOTA)


def test_the_block_ends_exactly_when_the_window_does(
    throttle: FailureThrottle, clock: Clock
) -> None:
    for _ in range(3):
        throttle.count("10.0.0.1")
    clock.advance(59.5)
    assert throttle.blocked("10.0.0.1") == Window(POLICY, THREE_PER_MINUTE, 0, 1, False, QUOTA)
    clock.advance(0.5)
    assert throttle.blocked("10.0.0.1") is None


def test_failures_are_forgotten_when_their_window_ends(
    throttle: FailureThrottle, clock: Clock
) -> None:
    throttle.count("10.0.0.1")
    throttle.count("10.0.0.1")
    clock.advance(60)  # the window ends exactly now: a new one starts with this failure
    throttle.count("10.0.0.1")
    throttle.count("10.0.0.1")
    assert throttle.blocked("10.0.0.1") is None
    throttle.count("10.0.0.1")
    assert throttle.blocked("10.0.0.1") is not None


def test_failures_within_the_window_add_up(throttle: FailureThrottle, clock: Clock) -> None:
    throttle.count("10.0.0.1")
    clock.advance(30)
    throttle.count("10.0.0.1")
    clock.advance(29)
    throttle.count("10.0.0.1")
    # The window started with the first failure: 1 s of it is left.
    assert throttle.blocked("10.0.0.1") == Window(POLICY, THREE_PER_MINUTE, 0, 1, False, QUOTA)


def test_a_block_from_the_shared_limiter_lasts_the_seconds_it_gives(
    throttle: FailureThrottle, clock: Clock
) -> None:
    throttle.block("10.0.0.1", 30)
    assert throttle.blocked("10.0.0.1") == Window(POLICY, THREE_PER_MINUTE, 0, 30, False, QUOTA)
    clock.advance(29.9)
    assert throttle.blocked("10.0.0.1") == Window(POLICY, THREE_PER_MINUTE, 0, 1, False, QUOTA)
    clock.advance(0.1)
    assert throttle.blocked("10.0.0.1") is None


def test_a_block_of_under_a_second_still_asks_for_a_one_second_wait(
    throttle: FailureThrottle,
) -> None:
    throttle.block("10.0.0.1", 0.5)
    assert throttle.blocked("10.0.0.1") == Window(POLICY, THREE_PER_MINUTE, 0, 1, False, QUOTA)


def test_a_blocked_address_stays_blocked_when_it_fails_again(
    throttle: FailureThrottle, clock: Clock
) -> None:
    throttle.count("10.0.0.1")
    throttle.block("10.0.0.1", 30)
    throttle.count("10.0.0.1")  # one failure of its own, far under the limit of 3
    assert throttle.blocked("10.0.0.1") == Window(POLICY, THREE_PER_MINUTE, 0, 30, False, QUOTA)
    clock.advance(30)
    assert throttle.blocked("10.0.0.1") is None


def test_when_a_block_ends_the_address_starts_a_fresh_window(
    throttle: FailureThrottle, clock: Clock
) -> None:
    throttle.count("10.0.0.1")
    throttle.count("10.0.0.1")
    throttle.block("10.0.0.1", 10)
    clock.advance(10)
    assert throttle.blocked("10.0.0.1") is None
    throttle.count("10.0.0.1")
    throttle.count("10.0.0.1")
    assert throttle.blocked("10.0.0.1") is None
    throttle.count("10.0.0.1")
    assert throttle.blocked("10.0.0.1") is not None


def test_the_most_recent_ten_thousand_addresses_are_remembered(clock: Clock) -> None:
    throttle = FailureThrottle(THREE_PER_MINUTE, clock=clock)
    throttle.block("10.0.0.1", 30)
    for n in range(9_999):
        throttle.count(f"192.0.2.{n}")
    assert throttle.blocked("10.0.0.1") is not None
    throttle.count("198.51.100.1")
    assert throttle.blocked("10.0.0.1") is None  # the oldest address is forgotten


def test_a_smaller_memory_forgets_sooner(clock: Clock) -> None:
    throttle = FailureThrottle(THREE_PER_MINUTE, maxsize=2, clock=clock)
    throttle.block("10.0.0.1", 30)
    throttle.count("10.0.0.2")
    assert throttle.blocked("10.0.0.1") is not None
    throttle.count("10.0.0.3")
    assert throttle.blocked("10.0.0.1") is None


def test_the_real_clock_is_used_by_default() -> None:
    throttle = FailureThrottle(THREE_PER_MINUTE)
    throttle.block("10.0.0.1", 3600)
    assert throttle.blocked("10.0.0.1") is not None
