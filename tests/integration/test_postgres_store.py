"""The SQL store against a real PostgreSQL server, several stores standing in for workers."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import pytest
import sqlalchemy as sa

from guard import Keys, Reason, TokenCodec
from stores import KeyRecord, from_url
from stores.sql import SQLStore, init_schema
from stores.testing import MakeStore, WritableStoreContract
from tests.integration.test_redis_server import wait_until

pytestmark = pytest.mark.postgres

Connect = Callable[..., SQLStore]


@pytest.fixture
def connect(postgres_url: str) -> Iterator[Connect]:
    """Opens stores on the real server, each with its own engine, like separate workers."""
    engine = sa.create_engine(postgres_url)
    init_schema(engine)
    engine.dispose()
    opened: list[SQLStore] = []

    def make(cache_ttl: float = 5.0) -> SQLStore:
        store = from_url(postgres_url, cache_ttl=cache_ttl, timeout=0.5)
        assert isinstance(store, SQLStore)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


class TestPostgresStore(WritableStoreContract):
    @pytest.fixture
    def make_store(self, connect: Connect) -> MakeStore:
        def make(records: Sequence[KeyRecord]) -> SQLStore:
            store = connect()
            store.save(*records)
            return store

        return make


def cached(store: SQLStore, key_id: str) -> bool:
    return store.cache.get(key_id) is not None


def test_revocation_reaches_another_worker_well_under_a_second(
    connect: Connect, codec: TokenCodec
) -> None:
    operator = Keys(connect(), codec)
    worker_store = connect(cache_ttl=3600)
    worker = Keys(worker_store, codec)
    token, record = operator.create("alice")
    wait_until(lambda: worker.verify(token).ok and cached(worker_store, record.key_id), 5)
    operator.revoke(record.key_id)
    # The cache would keep the record for an hour: only the notification can refuse it.
    assert wait_until(lambda: worker.verify(token).reason is Reason.REVOKED, timeout=1.0) < 1.0
