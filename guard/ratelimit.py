"""Per-key rate limits and the throttle on failed authentication, on ``limits``.

The guard calls the ``limits`` strategy directly instead of going through Flask-Limiter's
request hooks (which cost more than a bare Flask request): one call per request. The
answers also give the IETF ``RateLimit`` / ``RateLimit-Policy`` headers, in the form of
draft-ietf-httpapi-ratelimit-headers 08 and later (structured fields, ``q``/``w`` and
``r``/``t``), which the usual libraries do not emit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import time
from collections.abc import Iterator
from typing import Any

import limits
import limits.errors
import limits.storage
import limits.strategies
from limits import RateLimitItem

from stores import KeyRecord

from .config import GuardConfig

Headers = list[tuple[str, str]]


class LimiterUnavailable(Exception):
    """The limiter's storage did not answer."""


@dataclasses.dataclass(frozen=True, slots=True)
class Window:
    """Where one identifier stands in its current window."""

    policy: str
    item: RateLimitItem
    remaining: int
    reset_in: int
    allowed: bool

    def headers(self) -> Headers:
        return [
            (
                "RateLimit-Policy",
                f'"{self.policy}";q={self.item.amount};w={self.item.get_expiry()}',
            ),
            ("RateLimit", f'"{self.policy}";r={self.remaining};t={self.reset_in}'),
        ]

    def retry_after(self) -> Headers:
        return [("Retry-After", str(max(1, self.reset_in))), *self.headers()]


@functools.lru_cache(maxsize=256)
def parse_limit(text: str) -> RateLimitItem:
    """``'100/minute'`` as a ``limits`` item (parsed once per distinct text)."""
    return limits.parse(text)


class RateLimits:
    """The per-key limit and the per-address failure throttle, on one storage.

    When the storage is down, :class:`LimiterUnavailable` is raised (the request is
    refused with 503) unless ``GUARD_RATELIMIT_FAIL_OPEN`` is set, in which case the
    limit is skipped. Either way a limiter outage never skips authentication.
    """

    def __init__(self, config: GuardConfig) -> None:
        options: dict[str, Any] = {}
        if config.ratelimit_storage_url.startswith(("redis", "rediss", "unix")):
            options = {
                "wrap_exceptions": True,
                "socket_timeout": config.store_timeout,
                "socket_connect_timeout": config.store_timeout,
            }
        self.storage = limits.storage.storage_from_string(config.ratelimit_storage_url, **options)
        self.strategy = limits.strategies.STRATEGIES[config.ratelimit_strategy](self.storage)
        self.default = parse_limit(config.rate_limit)
        self.failures = parse_limit(config.failed_auth_limit)
        self.fail_open = config.ratelimit_fail_open

    def hit_key(self, record: KeyRecord) -> Window | None:
        """Count one request for ``record``, under its own limit or the default."""
        item = parse_limit(record.rate_limit) if record.rate_limit else self.default
        with self._outage():
            allowed = self.strategy.hit(item, "key", record.key_id)
            stats = self.strategy.get_window_stats(item, "key", record.key_id)
            return Window("key", item, stats.remaining, _seconds_until(stats.reset_time), allowed)
        return None

    def failures_exhausted(self, address: str) -> Window | None:
        """The window if ``address`` has used up its failed attempts, else ``None``."""
        with self._outage():
            if self.strategy.test(self.failures, "auth-failures", address):
                return None
            stats = self.strategy.get_window_stats(self.failures, "auth-failures", address)
            reset_in = _seconds_until(stats.reset_time)
            return Window("failed-auth", self.failures, 0, reset_in, False)
        return None

    def count_failure(self, address: str) -> None:
        """Count a failed attempt. An outage is ignored here: the request is refused
        anyway, and :meth:`failures_exhausted` applies the outage policy."""
        with contextlib.suppress(limits.errors.StorageError):
            self.strategy.hit(self.failures, "auth-failures", address)

    @contextlib.contextmanager
    def _outage(self) -> Iterator[None]:
        """Apply the outage policy: swallow storage errors when failing open, else
        re-raise them as :class:`LimiterUnavailable`."""
        try:
            yield
        except limits.errors.StorageError as exc:
            if not self.fail_open:
                raise LimiterUnavailable("rate limit storage did not answer") from exc


def _seconds_until(when: float) -> int:
    return max(0, math.ceil(when - time.time()))
