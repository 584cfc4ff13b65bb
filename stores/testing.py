"""The store contract: what every credential store must do, for store authors' test suites.

The guard's own suite runs it over every backend it ships (memory, env, Redis, SQL), and a
store in another distribution proves itself the same way: subclass the contract that fits
and provide one fixture, ``make_store``, returning a callable that builds a store holding
exactly the records it is given (a fresh, empty backend each time)::

    import pytest
    from stores.testing import MakeStore, WritableStoreContract

    from mystore import MyStore


    class TestMyStore(WritableStoreContract):
        @pytest.fixture
        def make_store(self) -> MakeStore:
            def make(records):
                store = MyStore("my://test")
                store.save(*records)
                return store

            return make

:class:`StoreContract` is what every store must do (reads, last use, ``check``);
:class:`WritableStoreContract` adds atomic saves and the compare-and-set every lifecycle
write relies on, so a revocation is never undone by a concurrent rotation;
:class:`ReadOnlyStoreContract` is for stores that refuse writes at run time (``env://``);
:class:`OwnerStoreContract` adds owner records (:meth:`~stores.KeyStore.get_owner` and
the rest), for a writable store that keeps them (one that does not refuses them with
:class:`~stores.OwnersUnsupported`, and its keys cannot name owners).
Every test goes through :class:`~stores.KeyStore`'s public methods only.

This module imports pytest and is for test suites only: nothing the guard ships imports it.
For pytest's detailed assertion messages in these tests, call
``pytest.register_assert_rewrite("stores.testing")`` in your ``conftest.py`` before
importing it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import pytest

from stores import (
    Conflict,
    KeyNotFound,
    KeyRecord,
    KeyStore,
    OwnerRecord,
    Quota,
    ReadOnlyStore,
)

MakeStore = Callable[[Sequence[KeyRecord]], KeyStore]

ALICE = KeyRecord(
    key_id="0123456789abcdef",
    name="alice",
    digest="a" * 64,
    pepper_id="p1",
    created_at=1_800_000_000.0,
    scopes=("orders:read", "orders:write"),
    expires_at=1_900_000_000.0,
    rate_limit="100/minute",
    metadata={"team": "payments"},
)
#: A key with every optional field set, for the round trip of each.
METERED = KeyRecord(
    key_id="00112233445566ff",
    name="metered",
    digest="c" * 64,
    pepper_id="p1",
    created_at=1_800_000_000.5,
    quota=Quota(10_000, "monthly", since=1_800_000_000.5, counter="00112233445566ff"),
    owner="acme",
)
#: An owner with limits and a quota shared by its keys.
ACME = OwnerRecord(
    "acme", rate_limit="1000/minute;50000/day", quota=Quota(100_000, "30d", 1.8e9, "acme")
)
LEGACY = KeyRecord(
    key_id="fedcba9876543210",
    name="legacy",
    digest="b" * 64,
    pepper_id="p1",
    created_at=1_700_000_000,
    imported=True,
)


class StoreContract:
    @pytest.fixture
    def make_store(self) -> MakeStore:
        raise NotImplementedError

    def test_get_returns_the_record_as_saved(self, make_store: MakeStore) -> None:
        store = make_store([ALICE])
        assert store.get(ALICE.key_id) == ALICE

    def test_get_unknown_id_returns_none(self, make_store: MakeStore) -> None:
        assert make_store([ALICE]).get("ffffffffffffffff") is None

    def test_require_unknown_id_raises_key_not_found(self, make_store: MakeStore) -> None:
        with pytest.raises(KeyNotFound) as info:
            make_store([]).require("ffffffffffffffff")
        assert info.value.key_id == "ffffffffffffffff"

    def test_find_digest_finds_imported_keys_only(self, make_store: MakeStore) -> None:
        store = make_store([ALICE, LEGACY])
        assert store.find_digest(LEGACY.digest) == LEGACY
        assert store.find_digest(ALICE.digest) is None

    def test_every_optional_field_reads_back_as_saved(self, make_store: MakeStore) -> None:
        store = make_store([METERED])
        assert store.get(METERED.key_id) == METERED
        assert store.records() == [METERED]

    def test_records_lists_every_key(self, make_store: MakeStore) -> None:
        store = make_store([ALICE, LEGACY])
        assert sorted(store.records(), key=lambda r: r.name) == [ALICE, LEGACY]

    def test_check_passes_when_the_backend_answers(self, make_store: MakeStore) -> None:
        make_store([]).check()

    def test_an_address_allowlist_round_trips(self, make_store: MakeStore) -> None:
        fenced = dataclasses.replace(ALICE, allow_from=("10.0.0.0/8", "2001:db8::/32"))
        store = make_store([fenced])
        assert store.get(ALICE.key_id) == fenced
        assert store.records() == [fenced]

    def test_last_use_keeps_the_latest_time_whatever_the_order(self, make_store: MakeStore) -> None:
        store = make_store([ALICE])
        assert store.last_used(ALICE.key_id) is None
        store.touch({ALICE.key_id: 1_850_000_100.0})
        store.touch({ALICE.key_id: 1_850_000_050.0})  # a slower worker's older batch
        assert store.last_used(ALICE.key_id) == 1_850_000_100.0


class WritableStoreContract(StoreContract):
    def test_save_replaces_a_record_and_readers_see_the_new_one(
        self, make_store: MakeStore
    ) -> None:
        store = make_store([ALICE])
        assert store.get(ALICE.key_id) == ALICE  # warm any cache
        revoked = dataclasses.replace(ALICE, revoked_at=1_850_000_000.0)
        store.save(revoked)
        assert store.get(ALICE.key_id) == revoked

    def test_save_stores_several_records_together(self, make_store: MakeStore) -> None:
        store = make_store([])
        store.save(ALICE, LEGACY)
        assert {r.key_id for r in store.records()} == {ALICE.key_id, LEGACY.key_id}
        assert store.find_digest(LEGACY.digest) == LEGACY

    def test_a_write_expecting_a_changed_record_writes_nothing(self, make_store: MakeStore) -> None:
        store = make_store([ALICE])
        revoked = dataclasses.replace(ALICE, revoked_at=1_850_000_000.0)
        store.save(revoked, expected={ALICE.key_id: ALICE})
        rotated = dataclasses.replace(ALICE, replaced_by=LEGACY.key_id, grace_until=1.9e9)
        # Prepared from the record before the revocation: refused, the revocation stays.
        with pytest.raises(Conflict) as info:
            store.save(rotated, LEGACY, expected={ALICE.key_id: ALICE, LEGACY.key_id: None})
        assert info.value.key_ids == [ALICE.key_id]
        assert store.get(ALICE.key_id) == revoked
        assert store.get(LEGACY.key_id) is None and store.find_digest(LEGACY.digest) is None

    def test_a_write_expecting_no_record_never_overwrites_one(self, make_store: MakeStore) -> None:
        store = make_store([ALICE])
        with pytest.raises(Conflict):
            store.save(dataclasses.replace(ALICE, name="mallory"), expected={ALICE.key_id: None})
        assert store.get(ALICE.key_id) == ALICE
        store.save(LEGACY, expected={LEGACY.key_id: None})
        assert store.get(LEGACY.key_id) == LEGACY

    def test_is_not_read_only(self, make_store: MakeStore) -> None:
        assert make_store([]).read_only is False


class ReadOnlyStoreContract(StoreContract):
    def test_save_is_refused_with_a_clear_error(self, make_store: MakeStore) -> None:
        store = make_store([])
        assert store.read_only is True
        with pytest.raises(ReadOnlyStore, match="read-only"):
            store.save(ALICE)
        with pytest.raises(ReadOnlyStore, match="read-only"):
            store.save_owner(ACME)


class OwnerStoreContract:
    """Owner records, beside :class:`WritableStoreContract`, for a store keeping them."""

    def test_an_owner_reads_back_as_saved(self, make_store: MakeStore) -> None:
        store = make_store([METERED])
        assert store.get_owner("acme") is None  # an owner named by keys, with no record
        store.save_owner(ACME)
        assert store.get_owner("acme") == ACME
        assert store.owners() == [ACME]
        assert store.records() == [METERED]  # owners are not keys

    def test_saving_an_owner_replaces_it_and_readers_see_the_new_one(
        self, make_store: MakeStore
    ) -> None:
        store = make_store([])
        store.save_owner(ACME)
        assert store.get_owner("acme") == ACME  # warm any cache
        changed = dataclasses.replace(ACME, rate_limit="10/minute", quota=None)
        store.save_owner(changed)
        assert store.get_owner("acme") == changed

    def test_deleting_an_owner_removes_its_record_only(self, make_store: MakeStore) -> None:
        store = make_store([METERED])
        store.save_owner(ACME)
        assert store.get_owner("acme") == ACME
        assert store.delete_owner("acme") is True
        assert store.get_owner("acme") is None and store.owners() == []
        assert store.delete_owner("acme") is False
        assert store.get(METERED.key_id) == METERED
