"""Per-key rate limits and the throttle on failed authentication, on ``limits``.

The guard calls the ``limits`` strategy directly instead of going through Flask-Limiter's
request hooks (which cost more than a bare Flask request): one call per request. The
answers also give the IETF ``RateLimit`` / ``RateLimit-Policy`` headers, in the form of
draft-ietf-httpapi-ratelimit-headers 08 and later (structured fields, ``q``/``w`` and
``r``/``t``), which the usual libraries do not emit.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING, Any, NamedTuple

import limits
import limits.errors
import limits.storage
import limits.strategies
import redis
from limits import RateLimitItem

from stores import KeyRecord

from .config import GuardConfig
from .counters import WindowCounters
from .redis_script import DirectScript

if TYPE_CHECKING:
    from limits.aio.storage import Storage as AsyncStorage

Headers = list[tuple[str, str]]


class LimiterUnavailable(Exception):
    """The limiter's storage did not answer."""


class Window(NamedTuple):
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
        url = config.ratelimit_storage_url
        options: dict[str, Any] = {}
        if url.startswith(("redis", "rediss", "unix")):
            options = {
                "wrap_exceptions": True,
                "socket_timeout": config.store_timeout,
                "socket_connect_timeout": config.store_timeout,
            }
        self.storage: limits.storage.Storage | AsyncStorage
        if url.startswith("memory:") and config.ratelimit_strategy == "fixed-window":
            self.storage = WindowCounters(url)  # see guard.counters for why not limits'
        else:
            self.storage = limits.storage.storage_from_string(url, **options)
        self.strategy = limits.strategies.STRATEGIES[config.ratelimit_strategy](self.storage)
        self.default = parse_limit(config.rate_limit)
        self.failures = parse_limit(config.failed_auth_limit)
        self.fail_open = config.ratelimit_fail_open
        self._send = self._sender()

    def observe(self, wrap: Callable[[Sender], Sender]) -> None:
        """Put ``wrap`` around every storage call (the metrics time and count them).

        The one place the limiter is instrumented: a key's hit and a failed attempt both
        go through ``_send``, on every storage and strategy.
        """
        self._send = wrap(self._send)

    def send_key_hit(self, record: KeyRecord) -> PendingHit:
        """Count one request for ``record``, under its own limit or the default.

        The hit is sent now and its answer read by :meth:`PendingHit.result`, so that on
        Redis the round trip overlaps the work done in between.
        """
        item = parse_limit(record.rate_limit) if record.rate_limit else self.default
        try:
            answer = self._send("key", item, record.key_id)
        except limits.errors.StorageError as exc:
            answer = _failed(exc)
        return PendingHit(answer, self.fail_open)

    def count_failure(self, address: str) -> Window | None:
        """Count a failed attempt that needed the store, in the shared limiter.

        :returns: the window if the address is now over its limit. An outage counts
            nothing: the request is refused anyway.
        """
        with contextlib.suppress(limits.errors.StorageError):
            window = self._send("failed-auth", self.failures, address)()
            return window if window.remaining == 0 else None
        return None

    def _sender(self) -> Sender:
        """How to count a hit and learn the window in as few storage calls as possible.

        A fixed window needs the new count and the window's expiry: one call to the
        memory storage, one Lua script on Redis, where the ``limits`` strategy would
        make three calls (hit, then get and expiry for the headers). Other strategies
        go through ``limits`` as they are.
        """
        if isinstance(self.strategy, limits.strategies.FixedWindowRateLimiter):
            if isinstance(self.storage, limits.storage.RedisStorage):
                return _redis_fixed_window(self.storage)
            if isinstance(self.storage, WindowCounters):
                return _memory_fixed_window(self.storage)
        return self._generic

    def _generic(self, policy: str, item: RateLimitItem, identifier: str) -> Answer:
        allowed = self.strategy.hit(item, policy, identifier)
        stats = self.strategy.get_window_stats(item, policy, identifier)
        return _ready(
            Window(policy, item, stats.remaining, _seconds_until(stats.reset_time), allowed)
        )


#: Reads the answer to a hit already sent: its window (or raises ``StorageError``).
Answer = Callable[[], Window]
#: Sends one hit, ``(policy, item, identifier)``, and gives the means to read its answer.
Sender = Callable[[str, RateLimitItem, str], Answer]


class PendingHit:
    """A key's hit, sent; read its answer once with :meth:`result` or :meth:`settle`."""

    __slots__ = ("_answer", "_fail_open", "_read")

    def __init__(self, answer: Answer, fail_open: bool) -> None:
        self._answer = answer
        self._fail_open = fail_open
        self._read = False

    def result(self) -> Window | None:
        """The window, or ``None`` when the storage failed and limits fail open.

        :raises LimiterUnavailable: when the storage failed and limits fail closed.
        """
        self._read = True
        try:
            return self._answer()
        except limits.errors.StorageError as exc:
            if not self._fail_open:
                raise LimiterUnavailable("rate limit storage did not answer") from exc
        return None

    def settle(self) -> None:
        """Read the answer if nobody did (an exempt view): the hit still counts."""
        if not self._read:
            with contextlib.suppress(LimiterUnavailable):
                self.result()


def _ready(window: Window) -> Answer:
    return lambda: window


def _failed(exc: limits.errors.StorageError) -> Answer:
    def answer() -> Window:
        raise exc

    return answer


def _memory_fixed_window(storage: WindowCounters) -> Sender:
    key_for = _keys(lambda key: key)

    def hit(policy: str, item: RateLimitItem, identifier: str) -> Answer:
        count, ends = storage.count(key_for(policy, item, identifier), item.get_expiry())
        return _ready(_window(policy, item, count, _seconds_until(ends)))

    return hit


def _redis_fixed_window(storage: limits.storage.RedisStorage) -> Sender:
    client = storage.get_connection()
    send: Callable[[list[str], list[Any]], Callable[[], Any]]
    if isinstance(client, redis.Redis):
        send = DirectScript(client, _FIXED_WINDOW_LUA).send
    else:
        # A cluster client routes by key and has no single pool: redis-py's Script,
        # waited for at once.
        script = client.register_script(_FIXED_WINDOW_LUA)

        def send(keys: list[str], args: list[Any]) -> Callable[[], Any]:
            reply = script(keys, args)
            return lambda: reply

    key_for = _keys(storage.prefixed_key)

    def hit(policy: str, item: RateLimitItem, identifier: str) -> Answer:
        key = key_for(policy, item, identifier)
        try:
            read = send([key], [item.get_expiry(), 1])
        except storage.base_exceptions as exc:
            raise limits.errors.StorageError(exc) from exc

        def answer() -> Window:
            try:
                count, pttl = read()
            except storage.base_exceptions as exc:
                raise limits.errors.StorageError(exc) from exc
            return _window(policy, item, int(count), max(0, math.ceil(int(pttl) / 1000)))

        return answer

    return hit


def _keys(finish: Callable[[str], str]) -> Callable[[str, RateLimitItem, str], str]:
    """The storage key of ``(policy, item, identifier)``, as ``limits`` names it, kept for
    the identifiers seen lately: a key sends a hit every request, and ``key_for``
    rebuilds the same string each time."""

    @functools.lru_cache(maxsize=4096)
    def key_for(policy: str, item: RateLimitItem, identifier: str) -> str:
        return finish(item.key_for(policy, identifier))

    return key_for


_FIXED_WINDOW_LUA = (resources.files(__package__) / "lua" / "fixed_window.lua").read_bytes()


def _window(policy: str, item: RateLimitItem, count: int, reset_in: int) -> Window:
    return Window(policy, item, max(0, item.amount - count), reset_in, count <= item.amount)


def _seconds_until(when: float) -> int:
    return max(0, math.ceil(when - time.time()))
