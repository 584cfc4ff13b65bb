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

import functools
import math
import time
from collections.abc import Callable, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any, NamedTuple

import limits
import limits.errors
import limits.storage
import limits.strategies
import redis
from limits import RateLimitItem

from stores import KeyRecord

from .context import RequestState
from .counters import WindowCounters
from .errors import GuardUnavailable, RateLimited, refuse, retry_later
from .redis_script import DirectScript

if TYPE_CHECKING:
    from limits.aio.storage import Storage as AsyncStorage

Headers = list[tuple[str, str]]
Items = tuple[RateLimitItem, ...]


class Window(NamedTuple):
    """Where one identifier stands in one window of one policy."""

    policy: str
    item: RateLimitItem
    remaining: int
    reset_in: int
    allowed: bool
    #: The policy's entry in ``RateLimit-Policy``, formatted once per policy and item
    #: (by :func:`quota`), not on every response.
    quota: str


def quota(policy: str, item: RateLimitItem) -> str:
    """A policy's entry in the ``RateLimit-Policy`` header."""
    return f'"{policy}";q={item.amount};w={item.get_expiry()}'


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


@functools.lru_cache(maxsize=256)
def parse_limits(text: str) -> Items:
    """``'100/minute;1000/day'`` as ``limits`` items (parsed once per distinct text).

    :raises ValueError: if any part is not a rate limit.
    """
    items = tuple(limits.parse_many(text))
    if not items:
        raise ValueError(f"{text!r} is not a rate limit")
    return items


#: Reads the windows of a hit already sent, in order (raises ``limits``' StorageError).
Reply = Callable[[], tuple[Window, ...]]


class Counted(NamedTuple):
    """One limit a hit counts."""

    policy: str
    item: RateLimitItem
    identifier: str
    #: ``limits``' own storage key for (item, policy, identifier).
    key: str
    #: The window's length in seconds.
    expiry: int
    #: Its entry in ``RateLimit-Policy``.
    quota: str


#: What one hit counts, limit by limit. The first policy names the counter (``key`` or
#: ``failed-auth``).
Plan = tuple[Counted, ...]
#: Sends one hit under each limit of a plan (in one storage call where it can); gives
#: how to read its reply.
Hit = Callable[[Plan], Reply]


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
            self.storage = WindowCounters(storage_url)  # see guard.counters for why not limits'
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
        plan = _plan(self.storage, record.rate_limit or self.default, "key", record.key_id)
        try:
            return self._hit(plan)
        except limits.errors.StorageError as exc:
            return _failed(exc)

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

    def count_failure(self, address: str) -> Window | None:
        """Count a failed attempt that needed the store, in the shared limiter.

        :returns: the window if the address is now over its limit. An outage counts
            nothing: the request is refused anyway.
        """
        try:
            plan = _plan(self.storage, self.failures, "failed-auth", address)
            (window,) = self._hit(plan)()
        except limits.errors.StorageError:
            return None
        return window if window.remaining == 0 else None

    def _counter(self) -> Hit:
        """How to count a hit: a fixed-window hit and its window in one storage call;
        other strategies through ``limits`` as they are."""
        if isinstance(self.strategy, limits.strategies.FixedWindowRateLimiter):
            if isinstance(self.storage, WindowCounters):
                return _memory_counter(self.storage)
            if isinstance(self.storage, limits.storage.RedisStorage):
                return _redis_counter(self.storage)
        return self._generic

    def _generic(self, plan: Plan) -> Reply:
        windows = []
        for limit in plan:
            policy, item, identifier = limit.policy, limit.item, limit.identifier
            allowed = self.strategy.hit(item, policy, identifier)
            stats = self.strategy.get_window_stats(item, policy, identifier)
            reset_in = _seconds_until(stats.reset_time)
            windows.append(Window(policy, item, stats.remaining, reset_in, allowed, limit.quota))
        done = tuple(windows)
        return lambda: done


@functools.lru_cache(maxsize=4096)
def _plan(
    storage: limits.storage.Storage | AsyncStorage, text: str, counter: str, identifier: str
) -> Plan:
    # Built once per (limits, identifier), from strings only: a key sends a hit every
    # request, and hashing the ``limits`` items on each one cost more than the hit.
    # Each limit is a policy of its own (``key``, ``key-2``, ...), counted under limits'
    # own storage key for (item, policy, identifier), prefixed as its storage does.
    plan = []
    for n, item in enumerate(parse_limits(text), start=1):
        name = counter if n == 1 else f"{counter}-{n}"
        key = item.key_for(name, identifier)
        if isinstance(storage, limits.storage.RedisStorage):
            key = storage.prefixed_key(key)
        plan.append(Counted(name, item, identifier, key, item.get_expiry(), quota(name, item)))
    return tuple(plan)


def _memory_counter(storage: WindowCounters) -> Hit:
    def count(plan: Plan) -> Reply:
        windows = []
        for limit in plan:
            hits, ends = storage.count(limit.key, limit.expiry)
            windows.append(_window(limit, hits, _seconds_until(ends)))
        done = tuple(windows)
        return lambda: done

    return count


def _failed(exc: limits.errors.StorageError) -> Reply:
    def reply() -> tuple[Window, ...]:
        raise exc

    return reply


def _redis_counter(storage: limits.storage.RedisStorage) -> Hit:
    client = storage.get_connection()
    send: Callable[[list[str], list[Any]], Callable[[], Any]]
    if isinstance(client, redis.Redis):
        send = DirectScript(client, _FIXED_WINDOW_LUA).send
    else:
        # A Cluster routes by key and has no single pool: redis-py's Script, read at once.
        script = client.register_script(_FIXED_WINDOW_LUA)

        def send(keys: list[str], args: list[Any]) -> Callable[[], Any]:
            reply = script(keys, args)
            return lambda: reply

    def count(plan: Plan) -> Reply:
        # On a Cluster the limits of a key live in different slots: one call each.
        calls = [plan] if isinstance(client, redis.Redis) else [(limit,) for limit in plan]
        try:
            sent = [
                send(
                    [limit.key for limit in call],
                    [value for limit in call for value in (limit.expiry, 1)],
                )
                for call in calls
            ]
        except storage.base_exceptions as exc:
            raise limits.errors.StorageError(exc) from exc

        def reply() -> tuple[Window, ...]:
            replies: list[Any] = []
            try:
                for read in sent:
                    replies.extend(read())
            except storage.base_exceptions as exc:
                raise limits.errors.StorageError(exc) from exc
            # (count, milliseconds left) for each limit, in the plan's order.
            return tuple(
                _window(
                    limit, int(replies[2 * n]), max(0, math.ceil(int(replies[2 * n + 1]) / 1000))
                )
                for n, limit in enumerate(plan)
            )

        return reply

    return count


_FIXED_WINDOW_LUA = (resources.files(__package__) / "lua" / "fixed_window.lua").read_bytes()


def _window(limit: Counted, count: int, reset_in: int) -> Window:
    amount = limit.item.amount
    return Window(
        limit.policy, limit.item, max(0, amount - count), reset_in, count <= amount, limit.quota
    )


def _seconds_until(when: float) -> int:
    return max(0, math.ceil(when - time.time()))
