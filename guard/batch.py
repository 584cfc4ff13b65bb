"""Work batched off the request path: items are queued in the process and a background
thread hands them to ``flush`` every ``interval`` seconds, so a request never waits on
I/O. A batch that ``flush`` fails on, or that overflows ``max_pending``, goes to
``on_failure`` instead: nothing is retried twice or silently dropped.

The thread is started on first use in each process: a thread started before gunicorn
forks its workers does not exist in them.
"""

from __future__ import annotations

import atexit
import collections
import os
import threading
from collections.abc import Callable
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
        self._pending: collections.deque[Item] = collections.deque()
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._closed = threading.Event()

    def add(self, item: Item) -> None:
        """Queue ``item``; never blocks on I/O."""
        if self._pid != os.getpid():
            self._start()
        self._pending.append(item)
        if len(self._pending) > self.max_pending:
            self._on_failure([self._pending.popleft()], None)

    def flush(self) -> None:
        """Hand every pending item to ``flush`` now."""
        with self._lock:
            # Swap rather than copy: requests go on appending to the new deque.
            items, self._pending = self._pending, collections.deque()
            if not items:
                return
            try:
                self._flush(list(items))
            except Exception as exc:
                self._on_failure(list(items), exc)

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
