from __future__ import annotations

from collections.abc import Sequence

import pytest

from stores import KeyRecord, MemoryStore, from_url
from tests.stores.contract import MakeStore, WritableStoreContract


class TestMemoryStore(WritableStoreContract):
    @pytest.fixture
    def make_store(self) -> MakeStore:
        def make(records: Sequence[KeyRecord]) -> MemoryStore:
            store = from_url("memory://")
            assert isinstance(store, MemoryStore)
            store.save(*records)
            return store

        return make
