"""A small process-local cache of key records, bounded in size and age.

It may answer with a record up to ``ttl`` seconds old; the Redis store clears entries
as invalidation messages arrive, so the TTL only bounds staleness when one is lost.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from .base import KeyRecord

#: A cached answer: the record, or ``None`` for "no such key".
Entry = tuple[KeyRecord | None, float]


class RecordCache:
    """LRU of ``key_id -> (record or None, expiry)``; ``None`` caches a negative answer."""

    def __init__(
        self, ttl: float, maxsize: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.maxsize = maxsize
        self._clock = clock
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._lock = threading.Lock()
        #: Bumped by every invalidation, so a lookup that raced with one is not cached.
        self.generation = 0

    def get(self, key_id: str) -> Entry | None:
        """``(record, expiry)`` if a fresh answer is cached, else ``None``."""
        entry = self._entries.get(key_id)
        if entry is None or entry[1] <= self._clock():
            return None
        return entry

    def put(self, key_id: str, record: KeyRecord | None, generation: int) -> None:
        """Cache an answer fetched when :attr:`generation` was ``generation``."""
        if self.ttl <= 0:
            return
        with self._lock:
            if generation != self.generation:
                return
            self._entries[key_id] = (record, self._clock() + self.ttl)
            self._entries.move_to_end(key_id)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)

    def discard(self, key_id: str) -> None:
        with self._lock:
            self.generation += 1
            self._entries.pop(key_id, None)

    def clear(self) -> None:
        with self._lock:
            self.generation += 1
            self._entries.clear()
