"""What a store that several workers share must do beyond the contract, on a real
server: a revocation reaches another worker's cache well under a second. Run by the
Redis and the PostgreSQL tests, each module providing a ``connect`` fixture (a
:func:`stores_on` its server)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest

from guard import Keys, Reason, TokenCodec
from stores import KeyRecord, KeyStore, from_url
from stores.testing import MakeStore, OwnerStoreContract, WritableStoreContract

#: ``connect(cache_ttl=...)``: another store on the same server, as a worker opens one.
Connect = Callable[..., Any]


@contextmanager
def stores_on(url: str, kind: type[KeyStore]) -> Iterator[Connect]:
    """Opens ``kind`` stores on ``url``, each with its own connections like separate
    workers, and closes them all at the end."""
    opened: list[KeyStore] = []

    def make(cache_ttl: float = 5.0) -> Any:
        store = from_url(url, cache_ttl=cache_ttl, timeout=0.5)
        assert isinstance(store, kind)
        opened.append(store)
        return store

    try:
        yield make
    finally:
        for store in opened:
            store.close()


def wait_until(condition: Callable[[], bool], timeout: float) -> float:
    """Seconds until ``condition()`` held; fails the test after ``timeout``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            pytest.fail(f"condition not reached within {timeout}s")
        time.sleep(0.001)
    return time.monotonic() - start


def cached(store: Any, key_id: str) -> bool:
    """Whether ``store`` (with a process-local ``cache``) holds ``key_id`` now."""
    return store.cache.get(key_id) is not None


def warm_worker(
    connect: Connect, codec: TokenCodec, cache_ttl: float = 5.0
) -> tuple[Any, Keys, str, KeyRecord]:
    """A worker's store and keys, holding in its cache a key another worker issued:
    ``(store, keys, token, record)``."""
    store = connect(cache_ttl=cache_ttl)
    keys = Keys(store, codec)
    token, record = Keys(connect(), codec).create("alice")
    wait_until(lambda: keys.verify(token).ok and cached(store, record.key_id), 5)
    return store, keys, token, record


class SharedStoreContract(WritableStoreContract, OwnerStoreContract):
    @pytest.fixture
    def make_store(self, connect: Connect) -> MakeStore:
        def make(records: Sequence[KeyRecord]) -> KeyStore:
            store: KeyStore = connect()
            store.save(*records)
            return store

        return make

    def test_revocation_reaches_another_worker_well_under_a_second(
        self, connect: Connect, codec: TokenCodec
    ) -> None:
        _, worker, token, record = warm_worker(connect, codec, cache_ttl=3600)
        Keys(connect(), codec).revoke(record.key_id)
        # The cache would keep the record for an hour: only the invalidation can refuse it.
        wait_until(lambda: worker.verify(token).reason is Reason.REVOKED, timeout=1.0)

    def test_disabling_and_enabling_reach_another_worker_well_under_a_second(
        self, connect: Connect, codec: TokenCodec
    ) -> None:
        _, worker, token, record = warm_worker(connect, codec, cache_ttl=3600)
        operator = Keys(connect(), codec)
        operator.disable(record.key_id)
        wait_until(lambda: worker.verify(token).reason is Reason.DISABLED, timeout=1.0)
        operator.enable(record.key_id)
        wait_until(lambda: worker.verify(token).ok, timeout=1.0)
