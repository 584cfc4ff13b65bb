"""The one bounded cache used by the stores and the guard.

Every cache in the project answers "the value for this key, if it is still good", and
every one has the same invalidation story: an entry leaves when it is older than the
cache's ``ttl``, when it is the least recently used one past ``maxsize``, or when its
owner discards it (or clears the cache) because the source of truth changed. A lookup
that raced with an invalidation must not put back what it read before it: ``put`` takes
the :attr:`BoundedCache.generation` seen before the read and is ignored if any
invalidation happened since.

Pure functions of a few hashable arguments (a parsed rate-limit string, say) use
:func:`functools.lru_cache` instead: their answers never go stale.
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
