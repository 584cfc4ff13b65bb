"""The throttle on failed authentication, per client, without a round trip on the
success path.

A failure is a token that did not verify: one whose signature fails is judged here alone,
so a flood of forged tokens never reaches Redis; one that needed the store (unknown,
revoked, expired, or an imported secret no key has) is counted here and in the shared
limiter; when either says the client is over its limit, it is blocked here until that
window ends, in every worker after at most one more failure of its own. Counting in the
process too keeps the throttle on while the shared limiter is down.

A request without credentials, or with a header that cannot be read, is no guess and
counts for nothing: behind one NAT address a client that forgot its token must not lock
out the others. What a block stops is guessing (:mod:`guard._request.auth`): a token the
server signed cannot be guessed, so it is verified whatever its client's failures.

A client is an IPv4 address, or the network of an IPv6 address's first
``GUARD_FAILED_AUTH_IPV6_PREFIX`` bits (64 by default): one host commonly holds a whole
/64, and counting its addresses one by one would never block it.
"""

from __future__ import annotations

import functools
import ipaddress
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
        self,
        item: RateLimitItem,
        maxsize: int = 10_000,
        clock: Callable[[], float] = time.time,
        *,
        ipv6_prefix: int = 64,
    ) -> None:
        self.item = item
        # Pure: a client's network depends on its address alone.
        self.client: Callable[[str], str] = functools.lru_cache(maxsize=4096)(
            functools.partial(client_of, ipv6_prefix=ipv6_prefix)
        )
        self._quota = quota(POLICY, item)
        self._clock = clock
        self._entries: BoundedCache[str, _Entry] = BoundedCache(maxsize)
        self._lock = threading.Lock()

    def blocked(self, client: str) -> Window | None:
        """The exhausted window while ``client`` (see :meth:`client`) is blocked."""
        found = self._entries.get(client)
        if found is None or not found[0].blocked:
            return None
        remaining = found[0].window_ends - self._clock()
        if remaining <= 0:
            return None
        return Window(POLICY, self.item, 0, math.ceil(remaining), False, self._quota)

    def count(self, client: str) -> None:
        """Count a failure of ``client``; block it past the limit."""
        with self._lock:
            entry = self._current(client)
            failures = entry.failures + 1
            blocked = entry.blocked or failures >= self.item.amount
            self._entries.put(client, _Entry(failures, entry.window_ends, blocked))

    def block(self, client: str, seconds: float) -> None:
        """Block ``client`` for ``seconds`` (the shared limiter said it is over)."""
        with self._lock:  # a blocked entry's count is never read again
            self._entries.put(client, _Entry(0, self._clock() + seconds, True))

    def _current(self, client: str) -> _Entry:
        now = self._clock()
        found = self._entries.get(client)
        if found is None or found[0].window_ends <= now:
            return _Entry(0, now + self.item.get_expiry(), False)
        return found[0]


def client_of(address: str, *, ipv6_prefix: int) -> str:
    """What failures of ``address`` are counted under: the address itself for IPv4 (and
    an IPv4-mapped IPv6 address), its ``/ipv6_prefix`` network for IPv6."""
    if ":" not in address:
        return address
    try:
        ip = ipaddress.IPv6Address(address.partition("%")[0])
    except ValueError:
        return address
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((ip, ipv6_prefix), strict=False))
