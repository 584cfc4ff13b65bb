"""Work batched off the request path: items are queued in the process and a background
thread hands them to ``flush`` every ``interval`` seconds, so a request never waits on
I/O. A batch that ``flush`` fails on, or that overflows ``max_pending``, goes to
``on_failure`` instead: nothing is retried twice or silently dropped. An item added with
a ``key`` replaces the pending item of the same key (the latest value is what counts).

The thread is started on first use in each process: a thread started before gunicorn
forks its workers does not exist in them.
"""

from __future__ import annotations

import atexit
import itertools
import os
import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

Item = TypeVar("Item")


class Batcher(Generic[Item]):
    def __init__(
        self,
        flush: Callable[[list[Item]], None],
        on_failure: Callable[[list[Item], BaseException | None], None],
        *,
        interval: float = 1.0,
        max_pending: int = 10_000,
    ) -> None:
        self._flush = flush
        self._on_failure = on_failure
        self.interval = interval
        self.max_pending = max_pending
        # Insertion-ordered, so the oldest item is the first to overflow.
        self._pending: dict[Hashable, Item] = {}
        self._serial = itertools.count()
        self._pid: int | None = None
        self._lock = threading.Lock()
        # Held through a flush's I/O, which _lock never is: adding never waits on I/O.
        self._flushing = threading.Lock()
        self._closed = threading.Event()

    def add(self, item: Item, key: Hashable | None = None) -> None:
        """Queue ``item`` (in place of the pending item of the same ``key``, if given);
        never blocks on I/O."""
        if self._pid != os.getpid():
            self._start()
        overflow: list[Item] = []
        with self._lock:  # a flush swaps the dict: no item may land in the old one
            self._pending[next(self._serial) if key is None else key] = item
            if len(self._pending) > self.max_pending:
                overflow.append(self._pending.pop(next(iter(self._pending))))
        if overflow:
            self._on_failure(overflow, None)

    def flush(self) -> None:
        """Hand every pending item to ``flush`` now."""
        with self._flushing:
            with self._lock:
                pending, self._pending = self._pending, {}
            if not pending:
                return
            items = list(pending.values())
            try:
                self._flush(items)
            except Exception as exc:
                self._on_failure(items, exc)

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            threading.Thread(target=self._run, name="guard-batch", daemon=True).start()
            atexit.register(self.flush)

    def close(self) -> None:
        """Flush what is pending and stop the thread."""
        self._closed.set()
        self.flush()

    def _run(self) -> None:
        while not self._closed.wait(self.interval):
            self.flush()
