"""The in-process fixed-window storage behind ``memory://`` limits."""

from __future__ import annotations

import threading

from limits import parse
from limits.strategies import FixedWindowRateLimiter

from guard._counting.memory import SWEEP_INTERVAL, WindowCounters
from tests.conftest import Clock


def test_a_window_counts_hits_until_it_ends_then_starts_over() -> None:
    clock = Clock()
    counters = WindowCounters(clock=clock)
    assert counters.count("k", 60) == (1, clock.now + 60)
    clock.advance(59)
    assert counters.count("k", 60, amount=2) == (3, clock.now + 1)
    clock.advance(1)
    assert counters.get("k") == 0
    assert counters.count("k", 60) == (1, clock.now + 60)


def test_it_serves_the_limits_fixed_window_strategy() -> None:
    clock = Clock()
    strategy = FixedWindowRateLimiter(WindowCounters(clock=clock))
    item = parse("2/minute")
    assert strategy.hit(item, "alice") and strategy.hit(item, "alice")
    assert not strategy.hit(item, "alice")
    assert strategy.hit(item, "bob")
    stats = strategy.get_window_stats(item, "alice")
    assert stats.remaining == 0 and stats.reset_time == clock.now + 60
    clock.advance(60)
    assert strategy.hit(item, "alice")


def test_expired_windows_are_swept_without_being_hit_again() -> None:
    clock = Clock()
    counters = WindowCounters(clock=clock)
    for address in range(1000):
        counters.count(f"failed-auth/{address}", 1)
    clock.advance(max(1, SWEEP_INTERVAL))
    counters.count("key/alice", 60)
    assert counters.reset() == 1  # only alice's window was still open


def test_concurrent_hits_are_all_counted() -> None:
    counters = WindowCounters()

    def hit() -> None:
        for _ in range(2000):
            counters.count("k", 60)

    threads = [threading.Thread(target=hit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counters.get("k") == 16000


def test_a_memory_limiter_starts_no_thread_per_window() -> None:
    before = threading.active_count()
    counters = WindowCounters()
    for n in range(100):
        counters.count(f"k{n}", 0.001)
    assert threading.active_count() == before
