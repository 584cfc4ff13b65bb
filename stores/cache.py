"""The one bounded cache for every cache that holds state, and the list of all caches.

Every cache that can go stale answers "the value for this key, if it is still good", and
every one has the same invalidation story: an entry leaves when it is older than the
cache's ``ttl``, when it is the least recently used one past ``maxsize``, or when its
owner discards it (or clears the cache) because the source of truth changed. A lookup
that raced with an invalidation must not put back what it read before it: ``put`` takes
the :attr:`BoundedCache.generation` seen before the read and is ignored if any
invalidation happened since. Each is owned by an object (a store, an app's guard), so it
goes with it and never keeps another app's objects alive.

Pure functions of a few strings or numbers use :func:`functools.lru_cache` instead:
their answers never go stale, so there is nothing to invalidate.

Every cache in ``guard/`` and ``stores/`` (``tests/test_caches.py`` checks this list
against the code), as ``module`` owner.name (helper, size): what it holds; what
invalidates it.

Holding state, on :class:`BoundedCache`:

- ``stores/redis.py`` RedisStore.cache (RecordCache, 10,000): key records by id, "no
  such key" included; a pub/sub message naming the key (every save publishes one, and
  this process's own saves discard at once), the whole cache when the listener
  (re)subscribes or drops, ``GUARD_STORE_CACHE_TTL`` for a lost message; bypassed while
  the listener is not subscribed.
- ``stores/redis.py`` RedisStore.owner_cache (BoundedCache, 10,000): owner records by
  name, "no such owner" included; a pub/sub message ``owner:{name}`` (every owner write
  publishes one), and otherwise as ``RedisStore.cache``.
- ``stores/sql.py`` SQLStore._owner_cache (BoundedCache, 10,000): owner records by name,
  "no such owner" included; a NOTIFY ``owner:{name}`` (every owner write sends one), and
  at most ``FALLBACK_TTL`` (1 s) old, listener or not.
- ``stores/sql.py`` SQLStore.cache (RecordCache, 10,000): key records by id, "no such
  key" included; a NOTIFY naming the key (every write sends one in its transaction), the
  whole cache when the listener (re)connects, ``GUARD_STORE_CACHE_TTL`` for a lost
  message; used only while the listener is listening.
- ``stores/sql.py`` SQLStore._fallback (RecordCache, 10,000): the same, while not
  listening and always on SQLite; at most ``FALLBACK_TTL`` (1 s) old.
- ``guard/keys/lifecycle.py`` Keys._verified (BoundedCache, 4,096): token fingerprint
  -> (key id, digest) of tokens that passed verification; each use reads the record
  again and judges it (revocation, expiry, rotation apply at once), and the entry is
  discarded when the record is gone or holds another digest.
- ``guard/keys/lifecycle.py`` Keys._noted (BoundedCache, 4,096): key id -> the second
  it was last noted as used; never (a hint: an evicted key is noted once more).
- ``guard/_request/throttle.py`` FailureThrottle._entries (BoundedCache, 10,000):
  client address -> failed attempts, window end, blocked; the window's end, read on every
  lookup (an expired entry counts as none); the shared limiter stays the truth.
- ``guard/_request/pipeline.py`` GuardState.policies (BoundedCache, 4,096): endpoint ->
  the view it was found for and that view's policy, per app; looked up again when the
  endpoint's view is another object (a view swapped into ``app.view_functions``).
- ``guard/_request/rate_limits.py`` RateLimits._plans (BoundedCache, 4,096): (limit
  string, counter, identifier) -> the hit's plan, per limiter; never (a function of its
  strings and the limiter's storage, and it goes with the limiter).
- ``guard/_counting/direct_script.py`` DirectScript._packed (BoundedCache, 4,096): a
  script call's arguments -> its packed command, per script; never (packing is pure).
- ``guard/observability/metrics.py`` Metrics._children (BoundedCache, 4,096): label
  values -> the ``guard_requests`` child, per app; never (``labels()`` gives the same
  child for the life of the counter, and the guard removes none).
- ``stores/redis_acl.py`` DenialLog._named (BoundedCache, 64): a Redis ``NOPERM``
  message -> the ACL rules the user lacks, per part (store, limiter, audit stream);
  never (the rules lacking when a message was first seen; an ACL fixed stops that
  message).
- ``guard/observability/readiness.py`` Readiness._answer (BoundedCache, 1): the last
  readiness answer (store, limiter) per app; its one-second TTL, so a load balancer's
  polls cost one probe a second per worker.

Pure, on :func:`functools.lru_cache` or a constant table:

- ``guard/_counting/plan.py`` parse_limits (lru_cache, 256): a limit string -> its
  ``limits`` items.
- ``guard/observability/audit.py`` _shared (lru_cache, 256): the audit fields a client's
  requests share -> their cleaned values and JSON text.
- ``guard/observability/audit.py`` _utc_second (lru_cache, 2): an epoch second -> its
  ISO 8601 text.
- ``guard/observability/audit.py`` _MILLISECONDS (table, 1,000): ``000`` to ``999``.
- ``guard/_request/security_headers.py`` SecurityHeaders.for_policy (lru_cache, 64): a
  Content-Security-Policy -> the security headers under it; pure given the instance's
  HSTS max age, fixed at construction (an ``lru_cache`` on a method is process-wide and
  holds its instance: one per app, 64 at most).
- ``guard/_request/cors.py`` Cors._headers (lru_cache, 1,024): a CORS request's shape ->
  the headers Flask-CORS's rules give it, per instance; pure given the instance's
  settings.
- ``guard/_request/addresses.py`` networks (lru_cache, 1,024): a key record's
  ``allow_from`` strings -> their parsed networks; a changed allowlist is another key.
- ``guard/_request/throttle.py`` FailureThrottle.client (lru_cache, 4,096): a client
  address -> what its failures are counted under (an IPv6 address's network), per
  instance; pure given the instance's prefix length.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from .base import KeyRecord

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """A thread-safe LRU of at most ``maxsize`` entries, each good for ``ttl`` seconds
    (``None``: until evicted or discarded). Reads take no lock."""

    def __init__(
        self,
        maxsize: int,
        ttl: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.maxsize = maxsize
        self.ttl = ttl
        self._clock = clock
        # key -> ((value,), expires): the 1-tuple a hit returns is made once, on put.
        self._entries: OrderedDict[K, tuple[tuple[V], float]] = OrderedDict()
        self._lock = threading.Lock()
        #: Bumped by every invalidation, so a lookup that raced with one is not cached.
        self.generation = 0

    def get(self, key: K) -> tuple[V] | None:
        """``(value,)`` if a fresh entry is cached (a 1-tuple, so a cached ``None`` is
        told apart from a miss), else ``None``."""
        entry = self._entries.get(key)
        if entry is None or (self.ttl is not None and entry[1] <= self._clock()):
            return None
        return entry[0]

    def put(self, key: K, value: V, generation: int | None = None) -> None:
        """Cache ``value``; with ``generation``, only if nothing was invalidated since
        :attr:`generation` had that value."""
        if self.maxsize <= 0 or (self.ttl is not None and self.ttl <= 0):
            return
        expires = self._clock() + self.ttl if self.ttl is not None else 0.0
        with self._lock:
            if generation is not None and generation != self.generation:
                return
            self._entries[key] = ((value,), expires)
            self._entries.move_to_end(key)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)

    def discard(self, key: K) -> None:
        with self._lock:
            self.generation += 1
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self.generation += 1
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class RecordCache(BoundedCache[str, KeyRecord | None]):
    """Key records by id for a store; ``None`` caches "no such key".

    It may answer with a record up to ``ttl`` seconds old; the Redis store discards
    entries as invalidation messages arrive, so the TTL only bounds staleness when one
    is lost.
    """

    def __init__(
        self, ttl: float, maxsize: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(maxsize, ttl, clock)
