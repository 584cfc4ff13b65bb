from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

import pytest

from stores import KeyRecord, MemoryStore, from_url
from stores.testing import MakeStore, OwnerStoreContract, WritableStoreContract


class TestMemoryStore(WritableStoreContract, OwnerStoreContract):
    @pytest.fixture
    def make_store(self) -> MakeStore:
        def make(records: Sequence[KeyRecord]) -> MemoryStore:
            store = from_url("memory://")
            assert isinstance(store, MemoryStore)
            store.save(*records)
            return store

        return make


def test_stores_loads_redis_py_only_for_a_redis_url() -> None:
    script = (
        "import sys, stores\n"
        "stores.from_url('memory://'); stores.from_url('env://X')\n"
        "print('redis' in sys.modules)\n"
        "stores.from_url('redis://127.0.0.1:1/0')\n"
        "print('redis' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["False", "True"]
