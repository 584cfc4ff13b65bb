"""The contract on fakeredis: fast, and enough to pin down the Redis store's logic.
The same contract runs on a real redis-server in tests/integration."""

from __future__ import annotations

import json
from collections.abc import Sequence

import fakeredis
import pytest

from stores import InvalidRecord, KeyRecord, RedisStore, StoreUnavailable
from stores.testing import ALICE, LEGACY, MakeStore, OwnerStoreContract, WritableStoreContract


class TestFakeRedisStore(WritableStoreContract, OwnerStoreContract):
    @pytest.fixture
    def make_store(self) -> MakeStore:
        def make(records: Sequence[KeyRecord]) -> RedisStore:
            store = RedisStore("redis://", client=fakeredis.FakeRedis(decode_responses=True))
            store.save(*records)
            return store

        return make


@pytest.mark.parametrize(
    "stored",
    [
        "{garbage",
        json.dumps({**ALICE.to_dict(), "digest": "z" * 64}),
        json.dumps({**ALICE.to_dict(), "digest": "é" * 64}),
        json.dumps({**ALICE.to_dict(), "digest": "A" * 64}),
        json.dumps({**ALICE.to_dict(), "digest": "a" * 63}),
    ],
)
def test_an_unreadable_record_is_invalid_for_its_key_alone(stored: str) -> None:
    client = fakeredis.FakeRedis(decode_responses=True)
    store = RedisStore("redis://", client=client)
    store.save(LEGACY)
    client.set(f"guard:key:{ALICE.key_id}", stored)
    with pytest.raises(InvalidRecord, match="unreadable record for key '0123456789abcdef'"):
        store.get(ALICE.key_id)
    assert store.get(LEGACY.key_id) == LEGACY  # the store as a whole still answers


def test_driver_errors_become_store_unavailable() -> None:
    server = fakeredis.FakeServer()
    server.connected = False
    store = RedisStore("redis://", client=fakeredis.FakeRedis(server=server, decode_responses=True))
    with pytest.raises(StoreUnavailable) as info:
        store.get(ALICE.key_id)
    assert info.value.__cause__ is not None
    with pytest.raises(StoreUnavailable):
        store.save(ALICE)
    with pytest.raises(StoreUnavailable):
        store.check()


def test_key_prefix_is_configurable() -> None:
    client = fakeredis.FakeRedis(decode_responses=True)
    RedisStore("redis://", client=client, prefix="svc-a:").save(ALICE)
    assert client.exists(f"svc-a:key:{ALICE.key_id}")
    assert RedisStore("redis://", client=client, prefix="svc-b:").get(ALICE.key_id) is None


def test_a_client_without_decoded_responses_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="decode_responses=True"):
        RedisStore("redis://", client=fakeredis.FakeRedis())
