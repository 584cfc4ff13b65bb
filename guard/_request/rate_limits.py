"""Per-key rate limits and the shared count of failed authentications, on ``limits``.

A limit string may hold several limits (``100/minute;1000/day``, as Flask-Limiter reads
it): every one is counted and enforced, and each is a policy in the ``RateLimit`` /
``RateLimit-Policy`` headers (draft-ietf-httpapi-ratelimit-headers 08 and later:
structured fields, ``q``/``w`` and ``r``/``t``), which the usual libraries do not emit.

The guard calls the ``limits`` strategy directly instead of through Flask-Limiter's
request hooks (which cost more than a bare Flask request). For the fixed window, the
default, a hit on every limit of a key and the windows' expiries take one storage call:
one call to the in-process counters, one Lua script on Redis.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import limits
import limits.errors
import limits.storage
import limits.strategies

from guard._counting import memory, redis_hits
from guard._counting.memory import WindowCounters
from guard._counting.plan import (
    Hit,
    Plan,
    Reply,
    Window,
    failed,
    parse_limits,
    plan_for,
    seconds_until,
)
from guard._request.state import RequestState, refuse
from guard.errors import GuardUnavailable, RateLimited, retry_later
from stores import KeyRecord

if TYPE_CHECKING:
    from limits.aio.storage import Storage as AsyncStorage

Headers = list[tuple[str, str]]


def headers(windows: Sequence[Window]) -> Headers:
    """The ``RateLimit-Policy`` and ``RateLimit`` headers listing every window."""
    if len(windows) == 1:  # the usual case, on every authenticated response
        (w,) = windows
        policies = w.quota
        state = f'"{w.policy}";r={w.remaining};t={w.reset_in}'
    else:
        policies = ", ".join(w.quota for w in windows)
        state = ", ".join(f'"{w.policy}";r={w.remaining};t={w.reset_in}' for w in windows)
    return [("RateLimit-Policy", policies), ("RateLimit", state)]


def retry_after(windows: Sequence[Window]) -> Headers:
    """``Retry-After`` (the longest wait among exhausted windows) and the limit headers."""
    wait = max((w.reset_in for w in windows if not w.allowed), default=1)
    return [("Retry-After", str(max(1, wait))), *headers(windows)]


class RateLimits:
    """The per-key limits and the failed-attempt count, on one storage.

    When the storage is down the request is refused with 503, unless ``fail_open`` is
    set, in which case the limit is skipped.
    Either way a limiter outage never skips authentication.
    """

    def __init__(
        self,
        storage_url: str,
        strategy: str,
        *,
        default: str,
        failures: str,
        fail_open: bool,
        timeout: float,
    ) -> None:
        options: dict[str, Any] = {}
        if storage_url.startswith(("redis", "rediss", "unix")):
            options = {
                "wrap_exceptions": True,
                "socket_timeout": timeout,
                "socket_connect_timeout": timeout,
            }
        self.storage: limits.storage.Storage | AsyncStorage
        if storage_url.startswith("memory:") and strategy == "fixed-window":
            self.storage = WindowCounters(storage_url)  # guard._counting.memory: why not limits'
        else:
            self.storage = limits.storage.storage_from_string(storage_url, **options)
        self.strategy = limits.strategies.STRATEGIES[strategy](self.storage)
        self.default = default
        self.failures = failures
        parse_limits(default)  # a bad setting fails here, not on the first request
        self.fail_open = fail_open
        self._hit: Hit = self._counter()
        #: Whether a hit waits for a round trip (Redis), so sending it early pays.
        self.remote = isinstance(self.storage, limits.storage.RedisStorage)

    def observe(self, wrap: Callable[[Hit], Hit]) -> None:
        """Put ``wrap`` around every storage call (the metrics time and count them): a
        key's hit and a failed attempt both go through it, on every storage and strategy.
        """
        self._hit = wrap(self._hit)

    def send_key_hit(self, record: KeyRecord) -> Reply:
        """Count one request for ``record`` under each of its limits (or the default's):
        sent now, its reply read by calling what this returns (``limits``' StorageError
        when the storage failed)."""
        plan = plan_for(self.storage, record.rate_limit or self.default, "key", record.key_id)
        try:
            return self._hit(plan)
        except limits.errors.StorageError as exc:
            return failed(exc)

    def enforce(self, state: RequestState, record: KeyRecord, sent: Reply | None = None) -> None:
        """The rate-limit stage: count the request (or read the hit ``sent`` for it
        earlier), refuse it (429) over any limit, or (503) when the storage failed and
        limits fail closed."""
        try:
            state.windows = (sent or self.send_key_hit(record))()
        except limits.errors.StorageError:
            if not self.fail_open:
                refuse(state, GuardUnavailable, "limiter_unavailable", retry_later())
        for window in state.windows:
            if not window.allowed:
                refuse(state, RateLimited, "rate_limited", retry_after(state.windows))

    def count_failure(self, client: str) -> Window | None:
        """Count a failed attempt that needed the store, in the shared limiter.

        :returns: the window if the client is now over its limit.
        :raises limits.errors.StorageError: when the storage did not answer.
        """
        plan = plan_for(self.storage, self.failures, "failed-auth", client)
        (window,) = self._hit(plan)()
        return window if window.remaining == 0 else None

    def _counter(self) -> Hit:
        """How to count a hit: a fixed-window hit and its window in one storage call;
        other strategies through ``limits`` as they are."""
        if isinstance(self.strategy, limits.strategies.FixedWindowRateLimiter):
            if isinstance(self.storage, WindowCounters):
                return memory.counter(self.storage)
            if isinstance(self.storage, limits.storage.RedisStorage):
                return redis_hits.counter(self.storage)
        return self._generic

    def _generic(self, plan: Plan) -> Reply:
        windows = []
        for limit in plan:
            policy, item, identifier = limit.policy, limit.item, limit.identifier
            allowed = self.strategy.hit(item, policy, identifier)
            stats = self.strategy.get_window_stats(item, policy, identifier)
            reset_in = seconds_until(stats.reset_time)
            windows.append(Window(policy, item, stats.remaining, reset_in, allowed, limit.quota))
        done = tuple(windows)
        return lambda: done
