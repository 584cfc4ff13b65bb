"""``memory://``: keys in this process only; the embedded default and the test double."""

from __future__ import annotations

import threading

from .base import InProcessStore, KeyRecord


class MemoryStore(InProcessStore):
    """Keys in a dict. Not shared between processes: each worker has its own keys."""

    schemes = ("memory",)

    def __init__(self, url: str = "memory://") -> None:
        super().__init__()
        self._lock = threading.Lock()

    def save(self, *records: KeyRecord) -> None:
        with self._lock:
            # Build the new state aside and swap it in, so readers (which take no lock)
            # never see a rotation half applied.
            self._hold({**self._records, **{record.key_id: record for record in records}}.values())
