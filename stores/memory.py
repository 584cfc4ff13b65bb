"""``memory://``: keys in this process only; the embedded default and the test double."""

from __future__ import annotations

import threading

from .base import KeyRecord, KeyStore, index_imported


class MemoryStore(KeyStore):
    """Keys in a dict. Not shared between processes: each worker has its own keys."""

    schemes = ("memory",)

    def __init__(self, url: str = "memory://") -> None:
        self._records: dict[str, KeyRecord] = {}
        self._imported: dict[str, KeyRecord] = {}
        self._lock = threading.Lock()

    def get(self, key_id: str) -> KeyRecord | None:
        return self._records.get(key_id)

    def find_digest(self, digest: str) -> KeyRecord | None:
        return self._imported.get(digest)

    def records(self) -> list[KeyRecord]:
        return list(self._records.values())

    def save(self, *records: KeyRecord) -> None:
        with self._lock:
            # Build the new state aside and swap it in, so readers (which take no lock)
            # never see a rotation half applied.
            updated = {**self._records, **{record.key_id: record for record in records}}
            self._records, self._imported = updated, index_imported(updated.values())
