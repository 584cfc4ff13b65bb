"""The throttle on failed authentication, per client address, without a round trip on
the success path.

Failures the guard can judge alone (no credentials, a malformed header, a token whose
signature fails) are counted here, in the process, so a flood of forged tokens never
reaches Redis. Failures that needed the store (a well-signed token that is unknown,
revoked or expired) are also counted in the shared limiter; when it reports the address
over its limit, the address is blocked here until that window ends. Every worker thus
blocks an address after at most one more failure of its own.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import NamedTuple

from limits import RateLimitItem

from guard._counting.plan import Window, quota
from stores.cache import BoundedCache

#: Policy name of the failed-attempt window in the ``RateLimit`` headers.
POLICY = "failed-auth"


class _Entry(NamedTuple):
    failures: int
    window_ends: float
    blocked: bool


class FailureThrottle:
    """Failure counts and blocks per address, for the most recent ``maxsize`` addresses."""

    def __init__(
        self, item: RateLimitItem, maxsize: int = 10_000, clock: Callable[[], float] = time.time
    ) -> None:
        self.item = item
        self._quota = quota(POLICY, item)
        self._clock = clock
        self._entries: BoundedCache[str, _Entry] = BoundedCache(maxsize)
        self._lock = threading.Lock()

    def blocked(self, address: str) -> Window | None:
        """The exhausted window while ``address`` is blocked, else ``None``."""
        found = self._entries.get(address)
        if found is None or not found[0].blocked:
            return None
        remaining = found[0].window_ends - self._clock()
        if remaining <= 0:
            return None
        return Window(POLICY, self.item, 0, math.ceil(remaining), False, self._quota)

    def count(self, address: str) -> None:
        """Count a failure the process judged alone; block past the limit."""
        with self._lock:
            entry = self._current(address)
            failures = entry.failures + 1
            blocked = entry.blocked or failures >= self.item.amount
            self._entries.put(address, _Entry(failures, entry.window_ends, blocked))

    def block(self, address: str, seconds: float) -> None:
        """Block ``address`` for ``seconds`` (the shared limiter said it is over)."""
        with self._lock:  # a blocked entry's count is never read again
            self._entries.put(address, _Entry(0, self._clock() + seconds, True))

    def _current(self, address: str) -> _Entry:
        now = self._clock()
        found = self._entries.get(address)
        if found is None or found[0].window_ends <= now:
            return _Entry(0, now + self.item.get_expiry(), False)
        return found[0]
