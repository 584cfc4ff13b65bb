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
from collections import OrderedDict
from collections.abc import Callable

from limits import RateLimitItem

from .ratelimit import Window


class FailureThrottle:
    """Failure counts and blocks per address, in a bounded LRU."""

    def __init__(
        self, item: RateLimitItem, maxsize: int = 10_000, clock: Callable[[], float] = time.time
    ) -> None:
        self.item = item
        self.maxsize = maxsize
        self._clock = clock
        #: address -> [failures in the window, end of the window, blocked]
        self._entries: OrderedDict[str, list[float]] = OrderedDict()
        self._lock = threading.Lock()

    def blocked(self, address: str) -> Window | None:
        """The exhausted window while ``address`` is blocked, else ``None``."""
        entry = self._entries.get(address)
        if entry is None or not entry[2]:
            return None
        remaining = entry[1] - self._clock()
        if remaining <= 0:
            return None
        return Window("failed-auth", self.item, 0, math.ceil(remaining), False)

    def count(self, address: str) -> None:
        """Count a failure the process judged alone; block past the limit."""
        with self._lock:
            entry = self._entry(address)
            entry[0] += 1
            if entry[0] >= self.item.amount:
                entry[2] = 1

    def block(self, address: str, seconds: float) -> None:
        """Block ``address`` for ``seconds`` (the shared limiter said it is over)."""
        with self._lock:
            entry = self._entry(address)
            entry[1], entry[2] = self._clock() + seconds, 1

    def _entry(self, address: str) -> list[float]:
        now = self._clock()
        entry = self._entries.get(address)
        if entry is None or entry[1] <= now:
            entry = self._entries[address] = [0, now + self.item.get_expiry(), 0]
        self._entries.move_to_end(address)
        while len(self._entries) > self.maxsize:
            self._entries.popitem(last=False)
        return entry
