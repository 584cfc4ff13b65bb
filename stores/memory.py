"""``memory://``: keys in this process only; the embedded default and the test double."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from .base import InProcessStore, KeyRecord, OwnerRecord, check_expected


class MemoryStore(InProcessStore):
    """Keys in a dict. Not shared between processes: each worker has its own keys, and
    they end with the process (so the ``guard`` command refuses to write to one)."""

    schemes = ("memory",)
    persistent = False

    def __init__(self, url: str = "memory://") -> None:
        super().__init__()
        self._lock = threading.Lock()

    def save(
        self, *records: KeyRecord, expected: Mapping[str, KeyRecord | None] | None = None
    ) -> None:
        # One lock around compare and swap: two writers never both pass the compare.
        with self._lock:
            check_expected(self._records, expected)
            # Build the new state aside and swap it in, so readers (which take no lock)
            # never see a rotation half applied.
            self._hold({**self._records, **{record.key_id: record for record in records}}.values())

    def save_owner(self, owner: OwnerRecord) -> None:
        with self._lock:
            self._owners[owner.name] = owner

    def delete_owner(self, name: str) -> bool:
        with self._lock:
            return self._owners.pop(name, None) is not None
