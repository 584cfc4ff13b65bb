"""Per-key rate limits and the shared count of failed authentications, on ``limits``.

A limit string may hold several limits (``100/minute;1000/day``, as Flask-Limiter reads
it): every one is counted and enforced, and each is a policy in the ``RateLimit`` /
``RateLimit-Policy`` headers (draft-ietf-httpapi-ratelimit-headers 08 and later:
structured fields, ``q``/``w`` and ``r``/``t``), which the usual libraries do not emit.

The guard calls the ``limits`` strategy directly instead of through Flask-Limiter's
request hooks (which cost more than a bare Flask request). For the fixed window, the
default, a hit on every limit of a key and the windows' expiries take one storage call:
one call to the in-process counters, one Lua script on Redis. On one Redis server or a
Sentinel service a key's requests are counted from quota leases its process took from
those same counters (:mod:`guard._counting.leases`): never over any limit, and most
requests wait for no round trip. A failed attempt is counted on Redis every time, as
the throttle must see each one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import limits
import limits.errors
import limits.storage
import limits.strategies
import redis

from guard._counting import memory, redis_hits
from guard._counting.leases import Leases
from guard._counting.memory import WindowCounters
from guard._counting.plan import (
    Hit,
    Plan,
    Reply,
    Window,
    charge,
    parse_limits,
    plan_for,
    seconds_until,
    spend_each,
    window,
)
from guard._request.state import RequestState, refuse
from guard.config import GuardConfig
from guard.errors import GuardUnavailable, QuotaExceeded, RateLimited, retry_later
from stores import KeyRecord, OwnerRecord, Quota
from stores.cache import BoundedCache
from stores.redis import CLIENT_SCHEMES, client_from_url, connection_options

if TYPE_CHECKING:
    from limits.aio.storage import Storage as AsyncStorage

Headers = list[tuple[str, str]]

#: Plans a limiter remembers, by (limit string, counter, identifier).
PLAN_CACHE_SIZE = 4096


def headers(windows: Sequence[Window]) -> Headers:
    """The ``RateLimit-Policy`` and ``RateLimit`` headers listing every window (a quota
    too: its entry says ``qu="request"``, and a lifetime quota has no ``w`` or ``t``)."""
    if len(windows) == 1:  # the usual case, on every authenticated response
        (w,) = windows
        policies = w.quota
        state = f'"{w.policy}";r={w.remaining};t={w.reset_in}'
    else:
        policies = ", ".join(w.quota for w in windows)
        state = ", ".join(
            f'"{w.policy}";r={w.remaining};t={w.reset_in}'
            if w.refills
            else f'"{w.policy}";r={w.remaining}'
            for w in windows
        )
    return [("RateLimit-Policy", policies), ("RateLimit", state)]


def retry_after(windows: Sequence[Window]) -> Headers:
    """``Retry-After`` (the longest wait among exhausted windows) and the limit headers;
    no ``Retry-After`` when a lifetime quota is spent: waiting never helps there."""
    refused = [w for w in windows if not w.allowed]
    if not all(w.refills for w in refused):
        return headers(windows)
    wait = max((w.reset_in for w in refused), default=1)
    return [("Retry-After", str(max(1, wait))), *headers(windows)]


def storage_for(
    url: str, strategy: str, timeout: float, max_connections: int = 0
) -> limits.storage.Storage | AsyncStorage:
    """The ``limits`` storage for ``url``, on a Redis client built the way the store's
    is (:func:`stores.redis.client_from_url`: the same timeouts, retry, health check, TLS
    and Sentinel handling), so a hung limiter fails closed in ``timeout`` as the store
    does.

    One server or a Sentinel service: ``limits``' ``RedisStorage`` on that client's
    connection pool (its documented ``connection_pool`` argument; a Sentinel pool follows
    the master across a failover, and every count is read from the master, never from a
    lagging replica). A Cluster: ``limits`` builds its ``RedisCluster`` itself and takes
    no client or pool, so :func:`stores.redis.connection_options` is what it shares.
    ``max_connections`` caps the pool (``GUARD_REDIS_MAX_CONNECTIONS``), refusing at
    once past it: each thread's hits hold a connection for the thread's life
    (:mod:`guard._counting.direct_script`) and loading the script takes a second one,
    so threads waiting for a free connection could all be waiting on each other.
    """
    scheme = urlsplit(url).scheme
    if scheme == "memory" and strategy == "fixed-window":
        return WindowCounters(url)  # guard._counting.memory: why not limits'
    if scheme == "redis+cluster":
        return limits.storage.RedisClusterStorage(
            url, wrap_exceptions=True, **connection_options(timeout, max_connections)
        )
    if scheme in CLIENT_SCHEMES:
        # Bytes replies, as on the client limits makes itself (redis-py's default).
        client = client_from_url(
            url,
            timeout,
            decode_responses=False,
            max_connections=max_connections,
            wait_for_connection=False,
        )
        return limits.storage.RedisStorage(
            url, connection_pool=client.connection_pool, wrap_exceptions=True
        )
    return limits.storage.storage_from_string(url)


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
        max_connections: int = 0,
    ) -> None:
        self.storage_url = storage_url
        self.timeout = timeout
        self.max_connections = max_connections
        self.storage = storage_for(storage_url, strategy, timeout, max_connections)
        self.strategy = limits.strategies.STRATEGIES[strategy](self.storage)
        self.default = default
        self.failures = failures
        parse_limits(default)  # a bad setting fails here, not on the first request
        self.fail_open = fail_open
        self._plans: BoundedCache[tuple[str, str, str], Plan] = BoundedCache(PLAN_CACHE_SIZE)
        self._hit: Hit = self._counter()
        self._leases = self._lease_table()
        self._key_hit: Hit = self._hit if self._leases is None else self._leases.count
        #: A key's requests are counted from leases (its counters include units leased
        #: to processes and not yet spent).
        self.leased = self._leases is not None

    @classmethod
    def from_config(cls, config: GuardConfig) -> RateLimits:
        """The limiter ``GUARD_RATE_LIMIT`` and ``GUARD_RATELIMIT_*`` describe: the app's,
        and the ``guard`` command's, which reads the same counters."""
        return cls(
            config.ratelimit_storage_url,
            config.ratelimit_strategy,
            default=config.rate_limit,
            failures=config.failed_auth_limit,
            fail_open=config.ratelimit_fail_open,
            timeout=config.store_timeout,
            max_connections=config.redis_max_connections,
        )

    def storage_options(self) -> dict[str, Any]:
        """Options for ``limits.storage.storage_from_string(self.storage_url, ...)`` that
        connect as this limiter does, for a storage built that way (Flask-Limiter's,
        behind ``guard.limiter``): on one server this limiter's own connection pool; on a
        Sentinel service or a Cluster, whose ``limits`` storages take no pool, the same
        :func:`stores.redis.connection_options`. Errors come as ``limits``' StorageError,
        which the guard answers with 503."""
        scheme = urlsplit(self.storage_url).scheme
        if scheme not in CLIENT_SCHEMES:
            return {}
        storage = self.storage
        client = (
            storage.get_connection() if isinstance(storage, limits.storage.RedisStorage) else None
        )
        if scheme != "redis+sentinel" and isinstance(client, redis.Redis):
            return {"wrap_exceptions": True, "connection_pool": client.connection_pool}
        options = {
            "wrap_exceptions": True,
            **connection_options(self.timeout, self.max_connections),
        }
        if scheme == "redis+sentinel":
            options["sentinel_kwargs"] = {"socket_timeout": self.timeout}
        return options

    def observe(self, wrap: Callable[[Hit], Hit]) -> None:
        """Put ``wrap`` around every storage call (the metrics time and count them): a
        key's hit and a failed attempt both go through it, on every storage and strategy;
        with leases, a key's hit is a storage call only when it waits for a lease.
        """
        self._hit = wrap(self._hit)
        if self._leases is None:
            self._key_hit = self._hit
        else:
            self._leases.observe(wrap)

    def plan(self, text: str, counter: str, identifier: str) -> Plan:
        """The plan of ``identifier``'s hit under ``text`` (:func:`plan_for`), built once.

        Remembered by strings only: a key sends a hit every request, and hashing the
        ``limits`` items on each one cost more than the hit. A plan is a pure function of
        its strings and this limiter's storage, so it never goes stale; it lives as
        long as the limiter (one per app), not the process.
        """
        key = (text, counter, identifier)
        found = self._plans.get(key)
        if found is not None:
            return found[0]
        plan = plan_for(self.storage, text, counter, identifier)
        self._plans.put(key, plan)
        return plan

    def enforce(self, state: RequestState, record: KeyRecord, cost: Callable[[], int]) -> None:
        """The rate-limit stage: count the request under each of its key's limits (or the
        default's) and its owner's, and spend its ``cost`` from the key's quota and its
        owner's; refuse it (429) over any limit or with a quota spent, or (503) when the
        storage failed and limits fail closed.

        A key with a quota, or an owner with limits or a quota, is counted exactly, in
        one storage call for all of them (one script on Redis), not from a lease: a
        lease's units held by one process could not be spent by another, and a quota's
        last units must go to whoever asks; an owner's windows are shared by keys whose
        leases would each hold some. A key with neither costs what it did (the cost is
        not even asked for).
        """
        plan = self.plan(record.rate_limit or self.default, "key", record.key_id)
        hit = self._key_hit
        if record.quota is not None or state.owner is not None:
            shared = self._shared(plan, record, state.owner, cost)
            if shared is not plan:  # anything more than the key's own windows
                plan, hit = shared, self._hit
        try:
            state.windows = hit(plan)()
        except limits.errors.StorageError:
            if not self.fail_open:
                refuse(state, GuardUnavailable, "limiter_unavailable", retry_later())
        for counted in state.windows:
            if not counted.allowed:
                # A spent quota is the refusal to name: waiting out a window does not end it.
                spent = any(w.item is None and not w.allowed for w in state.windows)
                kind = QuotaExceeded if spent else RateLimited
                refuse(state, kind, kind.error, retry_after(state.windows))

    def _shared(
        self, plan: Plan, record: KeyRecord, owner: OwnerRecord | None, cost: Callable[[], int]
    ) -> Plan:
        """``plan`` (the key's own windows) with its owner's windows, and the charges of
        the key's quota and its owner's for this request (none when it costs 0)."""
        plan = (*plan, *self._owner_windows(owner))
        quotas = _quotas(record, owner)
        spend = cost() if quotas else 0
        if not spend:
            return plan
        now = time.time()
        return (*plan, *(charge(name, who, quota, spend, now) for name, who, quota in quotas))

    def _owner_windows(self, owner: OwnerRecord | None) -> Plan:
        if owner is None or owner.rate_limit is None:
            return ()
        return self.plan(owner.rate_limit, "owner", owner.name)

    def usage(self, record: KeyRecord, owner: OwnerRecord | None = None) -> tuple[Window, ...]:
        """Where ``record``'s key stands in each of its windows and its ``owner``'s, then
        in its quota and its owner's, read from the counters without counting a hit
        (``limits``' own ``get_window_stats`` and ``get``, for every strategy and
        storage). On Redis a window's count includes the units processes hold leased and
        have not spent yet: they were added to the counter when leased.

        :raises limits.errors.StorageError: when the storage did not answer.
        """
        windows = []
        key_windows = self.plan(record.rate_limit or self.default, "key", record.key_id)
        for limit in (*key_windows, *self._owner_windows(owner)):
            assert limit.item is not None  # a plan of limits holds rate windows
            stats = self.strategy.get_window_stats(limit.item, limit.policy, limit.identifier)
            reset_in = seconds_until(stats.reset_time)
            windows.append(
                Window(limit.policy, limit.item, stats.remaining, reset_in, True, limit.quota)
            )
        now = time.time()
        for name, who, quota in _quotas(record, owner):
            spent = charge(name, who, quota, 1, now)  # described, not spent
            windows.append(window(spent, self._counters().get(spent.key), 0))
        return tuple(windows)

    def clear(self, record: KeyRecord, *, quota: bool = False) -> tuple[str, ...]:
        """Clear ``record``'s key's window counters (``limits``' own ``clear``): its next
        request opens a new window in each; with ``quota``, its quota's count too (its
        owner's windows and quota, shared with other keys, are left alone). The
        policies cleared, in order.

        :raises limits.errors.StorageError: when the storage did not answer.
        """
        plan = self.plan(record.rate_limit or self.default, "key", record.key_id)
        for limit in plan:
            assert limit.item is not None  # a plan of limits holds rate windows
            self.strategy.clear(limit.item, limit.policy, limit.identifier)
        cleared = [limit.policy for limit in plan]
        if quota and record.quota is not None:
            self._counters().clear(charge("quota", record.key_id, record.quota, 1, time.time()).key)
            cleared.append("quota")
        return tuple(cleared)

    def count_failure(self, client: str) -> Window | None:
        """Count a failed attempt that needed the store, in the shared limiter.

        :returns: the window if the client is now over its limit.
        :raises limits.errors.StorageError: when the storage did not answer.
        """
        plan = self.plan(self.failures, "failed-auth", client)
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

    def _lease_table(self) -> Leases | None:
        """A key's hits from leases, for the fixed window on one Redis server or a
        Sentinel service (a Cluster keeps a key's windows in different slots, which one
        script cannot lease together: there every request is counted on Redis)."""
        if not isinstance(self.strategy, limits.strategies.FixedWindowRateLimiter):
            return None
        if not isinstance(self.storage, limits.storage.RedisStorage):
            return None
        client = self.storage.get_connection()
        if not isinstance(client, redis.Redis):
            return None
        return Leases(client, self.storage.base_exceptions)

    def _generic(self, plan: Plan) -> Reply:
        windows = []
        for limit in plan:
            policy, item, identifier = limit.policy, limit.item, limit.identifier
            if item is None:
                continue  # a quota: spent below, once every window has admitted the hit
            allowed = self.strategy.hit(item, policy, identifier)
            stats = self.strategy.get_window_stats(item, policy, identifier)
            reset_in = seconds_until(stats.reset_time)
            windows.append(Window(policy, item, stats.remaining, reset_in, allowed, limit.quota))
        quotas = [limit for limit in plan if limit.item is None]
        if quotas:
            admitted = all(window.allowed for window in windows)
            windows += spend_each(self._counters(), quotas, admitted)
        done = tuple(windows)
        return lambda: done

    def _counters(self) -> limits.storage.Storage:
        # The strategy took this storage, so it is one of limits' synchronous ones.
        return cast(limits.storage.Storage, self.storage)


def _quotas(record: KeyRecord, owner: OwnerRecord | None) -> list[tuple[str, str, Quota]]:
    """The quotas a request of ``record``'s key spends from: its own, its owner's."""
    found = [] if record.quota is None else [("quota", record.key_id, record.quota)]
    if owner is not None and owner.quota is not None:
        found.append(("owner-quota", owner.name, owner.quota))
    return found
