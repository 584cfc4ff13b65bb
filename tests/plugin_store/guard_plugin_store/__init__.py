"""``plugin://``: a third party's store, written against :class:`stores.KeyStore` alone.

Records live in this process, like ``memory://``; what it shows is the path a store in
another distribution takes: declared in the ``guard.stores`` entry point group, imported
only when its scheme is used, and proven by :mod:`stores.testing`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from stores import Conflict, KeyRecord, KeyStore


class PluginStore(KeyStore):
    """Keys in a dict, written under one lock so compare and swap are one step."""

    schemes = ("plugin",)
    persistent = False

    def __init__(self, url: str) -> None:
        self.url = url
        self._records: dict[str, KeyRecord] = {}
        self._lock = threading.Lock()

    def get(self, key_id: str) -> KeyRecord | None:
        return self._records.get(key_id)

    def find_digest(self, digest: str) -> KeyRecord | None:
        # Imported keys only: a signed key's digest must never stand in for its token.
        return next((r for r in self._records.values() if r.imported and r.digest == digest), None)

    def records(self) -> list[KeyRecord]:
        return list(self._records.values())

    def save(
        self, *records: KeyRecord, expected: Mapping[str, KeyRecord | None] | None = None
    ) -> None:
        with self._lock:
            changed = sorted(
                key_id
                for key_id, record in (expected or {}).items()
                if self._records.get(key_id) != record
            )
            if changed:
                raise Conflict(changed)
            # A new dict swapped in: readers, who take no lock, never see half a rotation.
            self._records = {**self._records, **{r.key_id: r for r in records}}
