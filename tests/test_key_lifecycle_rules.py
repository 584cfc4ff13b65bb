"""The rules of a key's life through :class:`guard.Keys`: what each operation stores, the
time it is judged at, what a verdict names, and how it behaves when the store fails or
another writer gets in between."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any

import pytest

import guard.keys.lifecycle
from guard import GuardConfig, Keys, TokenCodec, key_revoked
from guard.keys.lifecycle import WRITE_ATTEMPTS, Reason
from guard.keys.tokens import MAX_TOKEN_LENGTH
from stores import Conflict, InvalidRecord, KeyRecord, MemoryStore, StoreUnavailable
from tests.conftest import BASE_CONFIG, PEPPER, SECRET, Clock


class FailingStore(MemoryStore):
    """A memory store whose reads and last-use writes fail with ``failure`` once set."""

    failure: Exception | None = None

    def get(self, key_id: str) -> KeyRecord | None:
        if self.failure is not None:
            raise self.failure
        return super().get(key_id)

    def find_digest(self, digest: str) -> KeyRecord | None:
        if self.failure is not None:
            raise self.failure
        return super().find_digest(digest)

    def touch(self, used: Mapping[str, float]) -> None:
        if self.failure is not None:
            raise self.failure
        super().touch(used)


class ContendedStore(MemoryStore):
    """Another writer gets in first: the next ``conflicts`` saves raise Conflict, or
    ``meddle`` runs (a concurrent change) before the next save compares."""

    conflicts = 0
    attempts = 0
    meddle: Any = None

    def save(
        self, *records: KeyRecord, expected: Mapping[str, KeyRecord | None] | None = None
    ) -> None:
        self.attempts += 1
        if self.conflicts:
            self.conflicts -= 1
            raise Conflict(list(expected or ()))
        meddle, self.meddle = self.meddle, None
        if meddle is not None:
            meddle()
        super().save(*records, expected=expected)


class FixedIdCodec(TokenCodec):
    """Gives every key the same id, as a (vanishingly unlikely) collision would."""

    @staticmethod
    def new_key_id() -> str:
        return "0123456789abcdef"


def make(store: MemoryStore | None = None, **options: Any) -> Keys:
    return Keys(store or MemoryStore(), TokenCodec([SECRET], [PEPPER]), clock=Clock(), **options)


# -- the time a key is judged at -------------------------------------------------------------


def test_every_operation_uses_the_time_it_is_given_not_the_clock() -> None:
    keys = make()
    later = keys.clock() + 1000
    token, record = keys.create("a", expires_in=100, now=later)
    assert record.created_at == later and record.expires_at == later + 100
    assert keys.verify(token, now=later + 50).ok
    assert keys.verify(token, now=later + 200).reason is Reason.EXPIRED  # remembered token
    _, new = keys.rotate(record.key_id, grace=10, now=later + 1)
    assert new.created_at == later + 1
    revoked = keys.revoke(new.key_id, now=later + 2)
    assert revoked.revoked_at == later + 2
    imported = keys.import_secret("legacy", "b", now=later + 3)
    assert imported.created_at == later + 3


def test_a_first_verification_is_judged_at_the_time_given() -> None:
    keys = make()
    token, _ = keys.create("a", expires_in=100)
    assert keys.verify(token, now=keys.clock() + 200).reason is Reason.EXPIRED


def test_without_a_time_the_clock_is_used() -> None:
    keys = make()
    record = keys.import_secret("legacy", "b")
    assert record.created_at == keys.clock()
    token, created = keys.create("a")
    assert created.created_at == keys.clock()
    assert keys.revoke(created.key_id).revoked_at == keys.clock()
    assert keys.verify(token).reason is Reason.REVOKED


def test_an_imported_key_is_judged_at_the_time_given() -> None:
    keys = make(accept_imported=True)
    record = keys.import_secret("legacy", "b")
    keys.rotate(record.key_id, grace=100)
    assert keys.verify("legacy", now=keys.clock() + 200).reason is Reason.ROTATED
    assert keys.verify("legacy").ok


# -- what a verdict names ------------------------------------------------------------------


def test_a_refusal_names_the_key_it_found() -> None:
    keys = make()
    token, record = keys.create("a")
    key_id, _ = keys.codec.open(token)
    wrong = keys.codec.issue(key_id).token  # same id, another secret
    assert keys.verify(wrong) == (Reason.WRONG_SECRET, record, key_id)
    unknown = keys.codec.issue("fedcba9876543210").token
    assert keys.verify(unknown) == (Reason.UNKNOWN_KEY, None, "fedcba9876543210")


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (StoreUnavailable("down"), Reason.UNAVAILABLE),
        (InvalidRecord("bad record"), Reason.INVALID_RECORD),
    ],
)
def test_a_failing_store_refuses_naming_the_key_remembered_or_not(
    failure: Exception, reason: Reason
) -> None:
    store = FailingStore()
    keys = make(store)
    remembered, record = keys.create("a")
    assert keys.verify(remembered).ok
    fresh, other = keys.create("b")
    store.failure = failure
    assert keys.verify(remembered) == (reason, None, record.key_id)
    assert keys.verify(fresh) == (reason, None, other.key_id)


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (StoreUnavailable("down"), Reason.UNAVAILABLE),
        (InvalidRecord("bad record"), Reason.INVALID_RECORD),
    ],
)
def test_a_failing_store_refuses_an_imported_secret(failure: Exception, reason: Reason) -> None:
    store = FailingStore()
    keys = make(store, accept_imported=True)
    keys.import_secret("legacy", "b")
    store.failure = failure
    assert keys.verify("legacy") == (reason, None, None)


# -- imported secrets ------------------------------------------------------------------------


@pytest.mark.parametrize("secret", ["a", "b" * MAX_TOKEN_LENGTH])
def test_an_imported_secret_of_any_length_within_bounds_verifies(secret: str) -> None:
    keys = make(accept_imported=True)
    record = keys.import_secret(secret, "b")
    assert keys.verify(secret) == (Reason.VALID, record, record.key_id)


@pytest.mark.parametrize("accept_imported", [False, True])
def test_a_token_that_is_not_valid_unicode_is_malformed_never_an_error(
    accept_imported: bool,
) -> None:
    keys = make(accept_imported=accept_imported)
    token, _ = keys.create("a")
    assert keys.verify(token[:-1] + "\ud800").reason is Reason.MALFORMED


def test_an_empty_or_overlong_token_is_malformed_without_a_lookup() -> None:
    store = FailingStore()
    keys = make(store, accept_imported=True)
    store.failure = StoreUnavailable("a lookup was made")
    assert keys.verify("") == (Reason.MALFORMED, None, None)
    assert keys.verify("b" * (MAX_TOKEN_LENGTH + 1)) == (Reason.MALFORMED, None, None)


def test_an_imported_secret_keeps_what_it_was_given() -> None:
    keys = make()
    record = keys.import_secret(
        "legacy", "billing", scopes=["a"], rate_limit="5/minute", metadata={"team": "x"}
    )
    assert (record.name, record.scopes, record.rate_limit, record.metadata) == (
        "billing",
        ("a",),
        "5/minute",
        {"team": "x"},
    )
    assert keys.store.get(record.key_id) == record


def test_a_secret_no_client_could_send_is_refused_with_the_reason() -> None:
    message = (
        f"a secret must be 1 to {MAX_TOKEN_LENGTH} characters of RFC 6750's b64token "
        "(letters, digits, - . _ ~ + /, then = padding): no other can be sent as a "
        "Bearer token"
    )
    for secret in ["has space", "b" * (MAX_TOKEN_LENGTH + 1)]:
        with pytest.raises(ValueError) as info:
            make().import_secret(secret, "b")
        assert str(info.value) == message


def test_rotating_an_imported_key_gives_a_token_of_this_servers_format() -> None:
    keys = make()
    record = keys.import_secret("legacy", "b")
    token, new = keys.rotate(record.key_id, grace=0)
    assert new.imported is False
    assert keys.verify(token) == (Reason.VALID, new, new.key_id)


# -- what a rotation stores ------------------------------------------------------------------


def test_a_successor_is_digested_under_the_newest_pepper_and_keeps_the_lifetime() -> None:
    clock = Clock()
    old = Keys(MemoryStore(), TokenCodec([SECRET], ["o" * 32]), clock=clock)
    _, record = old.create("a", expires_in=100)
    clock.advance(50)
    keys = Keys(old.store, TokenCodec([SECRET], ["o" * 32, PEPPER]), clock=clock)
    token, new = keys.rotate(record.key_id, grace=10)
    assert new.pepper_id == keys.codec.digest("x")[1] != record.pepper_id
    assert (new.created_at, new.expires_at) == (clock.now, clock.now + 100)
    assert keys.verify(token).ok


# -- collisions, conflicts and concurrent writers ---------------------------------------------


def test_a_colliding_key_id_never_replaces_the_existing_key() -> None:
    keys = Keys(MemoryStore(), FixedIdCodec([SECRET], [PEPPER]), clock=Clock())
    token, first = keys.create("a")
    with pytest.raises(Conflict):
        keys.create("b")
    with pytest.raises(Conflict):
        keys.import_secret("legacy", "c")
    assert keys.store.records() == [first] and keys.verify(token).ok


def test_a_write_is_tried_again_while_other_writers_get_in_first() -> None:
    store = ContendedStore()
    keys = make(store)
    _, record = keys.create("a")
    store.conflicts, store.attempts = WRITE_ATTEMPTS - 1, 0
    assert keys.revoke(record.key_id).revoked_at is not None
    assert store.attempts == WRITE_ATTEMPTS


def test_a_write_gives_up_after_its_attempts() -> None:
    store = ContendedStore()
    keys = make(store)
    _, record = keys.create("a")
    store.conflicts, store.attempts = WRITE_ATTEMPTS, 0
    with pytest.raises(Conflict):
        keys.revoke(record.key_id)
    assert store.attempts == WRITE_ATTEMPTS and keys.store.get(record.key_id) == record


def test_an_update_never_undoes_a_revocation_made_meanwhile() -> None:
    store = ContendedStore()
    keys = make(store)
    _, record = keys.create("a", scopes=["x"])
    revoked = dataclasses.replace(record, revoked_at=1.0)
    store.meddle = lambda: MemoryStore.save(store, revoked)
    updated = keys.update(record.key_id, scopes=["y"])
    assert updated.revoked_at == 1.0 and updated.scopes == ("y",)
    assert keys.store.get(record.key_id) == updated


# -- updates -------------------------------------------------------------------------------


def test_an_update_keeps_what_it_is_not_told_to_change() -> None:
    keys = make()
    _, record = keys.create("a", scopes=["x"], rate_limit="5/minute", metadata={"team": "t"})
    updated = keys.update(record.key_id, scopes=["y"], metadata={"absent": None})
    assert (updated.scopes, updated.rate_limit, updated.metadata) == (
        ("y",),
        "5/minute",
        {"team": "t"},
    )


# -- signals and configuration -------------------------------------------------------------------


def test_a_revocation_is_signalled_by_the_keys_that_made_it() -> None:
    keys = make()
    _, record = keys.create("a")
    heard: list[tuple[object, KeyRecord]] = []

    def hear(sender: object, key: KeyRecord) -> None:
        heard.append((sender, key))

    with key_revoked.connected_to(hear, sender=keys):
        revoked = keys.revoke(record.key_id)
    assert heard == [(keys, revoked)]


def test_keys_from_config_take_every_setting() -> None:
    clock = Clock()
    config = GuardConfig.from_mapping(
        {
            **BASE_CONFIG,
            "GUARD_TOKEN_PREFIX": "acme_",
            "GUARD_ACCEPT_IMPORTED_KEYS": True,
            "GUARD_STORE_URL": "redis://127.0.0.1:1/0",
            "GUARD_STORE_PREFIX": "shop:",
            "GUARD_STORE_TIMEOUT": 0.25,
            "GUARD_STORE_CACHE_TTL": 2.0,
        }
    )
    keys = Keys.from_config(config, clock=clock)
    try:
        assert keys.accept_imported is True and keys.clock is clock
        assert keys.codec.prefix == "acme_"
        assert keys.codec.digest("s") == TokenCodec([SECRET], [PEPPER]).digest("s")
        store: Any = keys.store
        assert store.prefix == "shop:" and store.cache.ttl == 2.0
        assert store.client.connection_pool.connection_kwargs["socket_timeout"] == 0.25
    finally:
        keys.close()


# -- last-use times ----------------------------------------------------------------------------


def test_last_use_times_lost_to_an_outage_are_dropped_not_raised() -> None:
    store = FailingStore()
    keys = make(store)
    _, record = keys.create("a")
    store.failure = StoreUnavailable("down")
    keys.note_use(record)
    keys.flush_uses()
    store.failure = None
    keys.flush_uses()
    assert store.last_used(record.key_id) is None
    keys.close()


def test_last_use_times_reach_the_store_in_the_background(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(guard.keys.lifecycle, "USE_FLUSH_INTERVAL", 0.01)
    keys = make()
    _, record = keys.create("a")
    keys.note_use(record, now=5.0)
    # No flush here: the batch's own thread writes it (polled, with a generous bound).
    for _ in range(1000):
        if keys.store.last_used(record.key_id) is not None:
            break
        time.sleep(0.01)
    assert keys.store.last_used(record.key_id) == 5.0
    keys.close()


def test_many_uses_of_one_key_never_push_out_another_keys_last_use() -> None:
    keys = make()
    _, first = keys.create("a")
    _, busy = keys.create("b")
    keys.note_use(first, now=1.0)
    for second in range(20_000):
        keys.note_use(busy, now=2.0 + second)
    keys.flush_uses()
    assert keys.store.last_used(first.key_id) == 1.0
    keys.close()
