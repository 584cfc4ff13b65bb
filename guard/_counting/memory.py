"""Fixed-window counters in this process: the guard's ``memory://`` rate-limit storage.

A ``limits`` storage (the library's extension point), used instead of
``limits.storage.MemoryStorage`` for the fixed-window strategy. That storage expires
keys from a ``threading.Timer`` that lives 10 ms and is started again by the next hit, so
under steady traffic it starts an OS thread about every 10 ms; the benchmark measured
that at about 30 µs per request. Here an expired counter starts over when it is next
hit, and expired counters are swept inline, at most once per :data:`SWEEP_INTERVAL`, so
memory stays bounded by the keys seen in the current windows.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import limits.storage

from guard._counting.plan import Hit, Plan, Reply, seconds_until, window

#: Seconds between sweeps of expired counters.
SWEEP_INTERVAL = 1.0


class WindowCounters(limits.storage.Storage):
    """Counters with an expiry, for ``limits``' fixed-window strategy; thread-safe."""

    def __init__(self, uri: str | None = None, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(uri)
        self._clock = clock
        # key -> [count, expires_at]; a list, so a hit updates it in place.
        self._windows: dict[str, list[float]] = {}
        self._lock = threading.Lock()
        self._next_sweep = 0.0

    @property
    def base_exceptions(self) -> type[Exception]:
        return ValueError

    def count(self, key: str, expiry: float, amount: int = 1) -> tuple[int, float]:
        """Add ``amount`` to ``key``'s window, opening a window of ``expiry`` seconds if
        none is open; ``(count so far, when the window ends)`` in one call."""
        now = self._clock()
        with self._lock:
            window = self._open(key, expiry, now)
            window[0] += amount
            return int(window[0]), window[1]

    def hit(self, plan: Plan) -> tuple[list[tuple[int, float]], bool]:
        """One hit of ``plan``, under one lock: each window counts 1, then each quota
        spends its cost only if every window is within its limit and every quota has
        room, all or none (so no quota is ever overspent, and a refused request spends
        nothing). Each counter's ``(count, end)``, and whether the hit was admitted."""
        now = self._clock()
        with self._lock:
            opened = [self._open(limit.key, limit.expiry, now) for limit in plan]
            admitted = True
            for limit, window in zip(plan, opened, strict=True):
                if not limit.cost:
                    window[0] += 1
                admitted = admitted and window[0] + limit.cost <= limit.amount
            if admitted:
                for limit, window in zip(plan, opened, strict=True):
                    window[0] += limit.cost
            return [(int(window[0]), window[1]) for window in opened], admitted

    def _open(self, key: str, expiry: float, now: float) -> list[float]:
        # Under the lock: ``key``'s window, a new one if none is open.
        if now >= self._next_sweep:
            self._sweep(now)
        window = self._windows.get(key)
        if window is None or window[1] <= now:
            window = self._windows[key] = [0, now + expiry]
        return window

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return self.count(key, expiry, amount)[0]

    def get(self, key: str) -> int:
        window = self._windows.get(key)
        return int(window[0]) if window is not None and window[1] > self._clock() else 0

    def get_expiry(self, key: str) -> float:
        window = self._windows.get(key)
        now = self._clock()
        return window[1] if window is not None and window[1] > now else now

    def check(self) -> bool:
        return True

    def reset(self) -> int | None:
        with self._lock:
            cleared = len(self._windows)
            self._windows.clear()
        return cleared

    def clear(self, key: str) -> None:
        with self._lock:
            self._windows.pop(key, None)

    def _sweep(self, now: float) -> None:
        # Under the lock. A pass over every key, once a second, in place of a thread.
        expired = [key for key, window in self._windows.items() if window[1] <= now]
        for key in expired:
            del self._windows[key]
        self._next_sweep = now + SWEEP_INTERVAL


def counter(storage: WindowCounters) -> Hit:
    def count(plan: Plan) -> Reply:
        if plan[-1].cost:  # a quota (they come last): spent under one lock with the rest
            counts, admitted = storage.hit(plan)
            done = tuple(
                window(limit, hits, seconds_until(ends), admitted)
                for limit, (hits, ends) in zip(plan, counts, strict=True)
            )
            return lambda: done
        windows = []
        for limit in plan:
            hits, ends = storage.count(limit.key, limit.expiry)
            windows.append(window(limit, hits, seconds_until(ends)))
        rates = tuple(windows)
        return lambda: rates

    return count
