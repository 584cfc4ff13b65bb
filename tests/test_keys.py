from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import pytest

import guard.keys.lifecycle
from guard import Keys, KeyStateError, Reason, TokenCodec
from stores import (
    Conflict,
    InvalidRecord,
    KeyNotFound,
    KeyRecord,
    MemoryStore,
    StoreUnavailable,
)
from tests.conftest import Clock

DAY = 86_400.0


class CountingStore(MemoryStore):
    """A memory store that counts lookups, or fails every one when ``down``."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0
        self.down = False
        self.touches: list[dict[str, float]] = []

    def touch(self, used: Mapping[str, float]) -> None:
        self.touches.append(dict(used))
        super().touch(used)

    def get(self, key_id: str) -> KeyRecord | None:
        self.lookups += 1
        if self.down:
            raise StoreUnavailable("down")
        return super().get(key_id)

    def find_digest(self, digest: str) -> KeyRecord | None:
        self.lookups += 1
        if self.down:
            raise StoreUnavailable("down")
        return super().find_digest(digest)


@pytest.fixture
def store() -> CountingStore:
    return CountingStore()


@pytest.fixture
def keys(store: CountingStore, codec: TokenCodec, clock: Clock) -> Keys:
    return Keys(store, codec, clock=clock)


def test_created_key_verifies_with_its_record(keys: Keys) -> None:
    token, record = keys.create("alice", scopes=["orders:read"], rate_limit="10/second")
    verdict = keys.verify(token)
    assert verdict.ok
    assert verdict.record == record
    assert record.scopes == ("orders:read",)
    assert token not in repr(record)


def test_forged_token_is_refused_without_a_store_lookup(keys: Keys, store: CountingStore) -> None:
    token, _ = keys.create("alice")
    forged = TokenCodec(["f" * 32], ["p" * 32]).issue(token[3:19]).token
    for candidate in (forged, "Bearer nonsense", token[:-2], ""):
        assert not keys.verify(candidate).ok
    assert store.lookups == 0


def test_expired_key_is_refused_as_expired(keys: Keys, clock: Clock) -> None:
    token, _ = keys.create("alice", expires_in=DAY)
    clock.advance(DAY - 1)
    assert keys.verify(token).ok
    clock.advance(1)
    assert keys.verify(token).reason is Reason.EXPIRED


def test_revoked_key_is_refused_as_revoked(keys: Keys) -> None:
    token, record = keys.create("alice")
    keys.revoke(record.key_id)
    verdict = keys.verify(token)
    assert verdict.reason is Reason.REVOKED
    assert verdict.key_id == record.key_id


def test_revoking_twice_keeps_the_first_time(keys: Keys, clock: Clock) -> None:
    _, record = keys.create("alice")
    first = keys.revoke(record.key_id)
    clock.advance(60)
    assert keys.revoke(record.key_id).revoked_at == first.revoked_at


def test_rotated_key_is_valid_through_grace_then_refused_as_rotated(
    keys: Keys, clock: Clock
) -> None:
    old_token, old = keys.create("alice", scopes=["a"], rate_limit="5/second", expires_in=DAY)
    new_token, new = keys.rotate(old.key_id, grace=3600)
    assert (new.name, new.scopes, new.rate_limit, new.replaces) == (
        "alice",
        ("a",),
        "5/second",
        old.key_id,
    )
    assert new.expires_at == clock.now + DAY
    clock.advance(3599)
    assert keys.verify(old_token).ok
    assert keys.verify(new_token).ok
    clock.advance(1)
    assert keys.verify(old_token).reason is Reason.ROTATED
    assert keys.verify(new_token).ok


def test_a_key_is_never_rotated_twice(keys: Keys) -> None:
    _, old = keys.create("alice")
    keys.rotate(old.key_id, grace=60)
    with pytest.raises(KeyStateError, match="already rotated"):
        keys.rotate(old.key_id, grace=60)


def test_revoked_key_cannot_be_rotated(keys: Keys) -> None:
    _, old = keys.create("alice")
    keys.revoke(old.key_id)
    with pytest.raises(KeyStateError, match="revoked"):
        keys.rotate(old.key_id, grace=60)


def test_lifecycle_on_unknown_id_raises_key_not_found(keys: Keys) -> None:
    with pytest.raises(KeyNotFound):
        keys.revoke("ffffffffffffffff")
    with pytest.raises(KeyNotFound):
        keys.rotate("ffffffffffffffff", grace=1)


def test_unknown_key_and_wrong_secret_have_their_own_reasons(keys: Keys, codec: TokenCodec) -> None:
    unknown = codec.issue("ffffffffffffffff").token
    assert keys.verify(unknown).reason is Reason.UNKNOWN_KEY
    _, record = keys.create("alice")
    other_secret = codec.issue(record.key_id).token  # right id, signed, other secret
    assert keys.verify(other_secret).reason is Reason.WRONG_SECRET


def test_unavailable_store_gives_unavailable_never_valid(keys: Keys, store: CountingStore) -> None:
    token, _ = keys.create("alice")
    store.down = True
    assert keys.verify(token).reason is Reason.UNAVAILABLE


class OpenCounter:
    """Counts the signature checks a codec makes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        original = TokenCodec.open

        def counting(codec: TokenCodec, token: str) -> tuple[str, str]:
            self.calls += 1
            return original(codec, token)

        monkeypatch.setattr(TokenCodec, "open", counting)


def test_a_verified_token_is_not_checked_again_but_its_record_is_judged_every_time(
    keys: Keys, store: CountingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    token, record = keys.create("alice")
    opened = OpenCounter(monkeypatch)
    assert keys.verify(token).ok and keys.verify(token).ok
    assert opened.calls == 1 and store.lookups == 2
    keys.revoke(record.key_id)
    assert keys.verify(token).reason is Reason.REVOKED
    store.down = True
    assert keys.verify(token).reason is Reason.UNAVAILABLE


def test_a_verified_token_is_checked_again_once_its_record_holds_another_digest(
    keys: Keys, store: CountingStore
) -> None:
    token, record = keys.create("alice")
    _, other = keys.create("bob")
    assert keys.verify(token).ok
    store.save(dataclasses.replace(record, digest=other.digest))
    assert keys.verify(token).reason is Reason.WRONG_SECRET
    lookups = store.lookups
    assert keys.verify(token).reason is Reason.WRONG_SECRET
    assert store.lookups == lookups + 1  # forgotten: one lookup, not two


def test_forged_tokens_neither_fill_nor_evict_the_verified_tokens(
    store: CountingStore, codec: TokenCodec, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(guard.keys.lifecycle, "VERIFIED_CACHE_SIZE", 2)
    keys = Keys(store, codec)
    token, _ = keys.create("alice")
    keys.verify(token)
    forged = token[:-5] + ("B" if token[-5] != "B" else "C") + token[-4:]
    opened = OpenCounter(monkeypatch)
    for n in range(10):
        assert not keys.verify(codec.issue(f"{n:016x}").token).ok  # well signed, unknown
        assert not keys.verify(forged).ok
    assert keys.verify(token).ok
    assert opened.calls == 20  # alice's token was still remembered
    others = [keys.create(f"k{n}")[0] for n in range(2)]
    for other in others:
        keys.verify(other)
    opened.calls = 0
    assert keys.verify(token).ok and opened.calls == 1  # the oldest went first


def test_imported_secret_verifies_only_when_imported_keys_are_accepted(
    store: CountingStore, codec: TokenCodec, clock: Clock
) -> None:
    legacy = "legacy-api-key-from-2019"
    Keys(store, codec).import_secret(legacy, "billing", scopes=["invoices:read"])
    assert Keys(store, codec).verify(legacy).reason is Reason.MALFORMED
    assert store.lookups == 0

    accepting = Keys(store, codec, accept_imported=True, clock=clock)
    verdict = accepting.verify(legacy)
    assert verdict.ok and verdict.record is not None
    assert verdict.record.scopes == ("invoices:read",)
    assert legacy not in repr(verdict.record)
    assert accepting.verify("some-other-secret").reason is Reason.UNKNOWN_KEY
    store.down = True
    assert accepting.verify(legacy).reason is Reason.UNAVAILABLE


def test_imported_key_id_is_not_usable_as_a_signed_token(keys: Keys, codec: TokenCodec) -> None:
    record = keys.import_secret("legacy", "billing")
    assert keys.verify(codec.issue(record.key_id).token).reason is Reason.UNKNOWN_KEY


def test_imported_secret_survives_a_pepper_rotation(store: CountingStore) -> None:
    old = TokenCodec(["s" * 32], ["o" * 32])
    Keys(store, old).import_secret("legacy", "billing")
    rotated = TokenCodec(["s" * 32], ["o" * 32, "n" * 32])
    assert Keys(store, rotated, accept_imported=True).verify("legacy").ok


@pytest.mark.parametrize(
    "secret", ["", "x" * 513, "line\nbreak", "with space", "user@host", "wow!", "=abc", "é"]
)
def test_import_refuses_secrets_no_bearer_header_can_carry(keys: Keys, secret: str) -> None:
    with pytest.raises(ValueError, match="RFC 6750"):
        keys.import_secret(secret, "bad")
    assert keys.store.records() == []


def test_unknown_wrong_secret_and_revoked_keys_cost_the_same_comparison(
    keys: Keys, codec: TokenCodec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No timing oracle: each path computes and compares one digest, in constant time."""
    _, record = keys.create("alice")
    revoked_token, revoked = keys.create("bob")
    keys.revoke(revoked.key_id)
    calls: list[str] = []
    original = TokenCodec.matches

    def counting(self: TokenCodec, rec: KeyRecord, secret: str) -> bool:
        calls.append(rec.key_id)
        return original(self, rec, secret)

    monkeypatch.setattr(TokenCodec, "matches", counting)
    cases = {
        "unknown": codec.issue("ffffffffffffffff").token,
        "wrong_secret": codec.issue(record.key_id).token,
        "revoked": revoked_token,
    }
    for name, token in cases.items():
        calls.clear()
        keys.verify(token)
        assert len(calls) == 1, name


def test_uses_are_written_in_batches_one_per_key_with_the_last_time(
    keys: Keys, store: CountingStore
) -> None:
    _, alice = keys.create("alice")
    _, bob = keys.create("bob")
    for when in range(100, 1100):
        keys.note_use(alice, now=float(when))
    keys.note_use(bob, now=200.0)
    assert store.last_used(alice.key_id) is None  # nothing written on the request path
    keys.flush_uses()
    # A busy key is one entry of one batch, not one per request.
    assert store.touches == [{alice.key_id: 1099.0, bob.key_id: 200.0}]
    assert store.last_used(alice.key_id) == 1099.0
    assert store.last_used(bob.key_id) == 200.0


def test_a_key_is_noted_once_a_second_and_each_key_on_its_own(
    keys: Keys, store: CountingStore
) -> None:
    _, alice = keys.create("alice")
    _, bob = keys.create("bob")
    keys.note_use(alice, now=100.2)
    keys.note_use(bob, now=100.3)  # another key, the same second: noted too
    keys.note_use(alice, now=100.9)  # a second already noted: kept to the second
    keys.flush_uses()
    assert store.touches == [{alice.key_id: 100.2, bob.key_id: 100.3}]
    keys.note_use(alice, now=101.0)  # the next second is noted again
    keys.flush_uses()
    assert store.last_used(alice.key_id) == 101.0


def test_a_revocation_during_a_rotation_is_never_undone(keys: Keys) -> None:
    token, record = keys.create("alice")
    new_token, new, old = keys.prepare_rotation(record.key_id, grace=DAY)
    keys.revoke(record.key_id)  # lands between the rotation's read and its write
    with pytest.raises(Conflict):
        keys.save_rotation(new, old)
    assert keys.verify(token).reason is Reason.REVOKED
    assert keys.verify(new_token).reason is Reason.UNKNOWN_KEY
    with pytest.raises(KeyStateError, match="revoked"):
        keys.rotate(record.key_id, grace=DAY)


class RacingStore(MemoryStore):
    """Lets another writer in once, just before this process's next write."""

    def __init__(self) -> None:
        super().__init__()
        self.before_next_write: Callable[[], object] | None = None

    def save(
        self, *records: KeyRecord, expected: Mapping[str, KeyRecord | None] | None = None
    ) -> None:
        other, self.before_next_write = self.before_next_write, None
        if other is not None:
            other()
        super().save(*records, expected=expected)


def test_a_revocation_keeps_a_change_made_meanwhile_and_an_update_keeps_a_revocation(
    codec: TokenCodec, clock: Clock
) -> None:
    store = RacingStore()
    keys = Keys(store, codec, clock=clock)
    token, record = keys.create("alice", scopes=["a"])
    store.before_next_write = lambda: keys.update(record.key_id, scopes=["b"])
    revoked = keys.revoke(record.key_id)
    assert revoked.scopes == ("b",) and revoked.revoked_at is not None
    store.before_next_write = lambda: keys.revoke(record.key_id)
    updated = keys.update(record.key_id, rate_limit="5/minute;1/day", metadata={"team": "x"})
    assert updated.revoked_at is not None and updated.rate_limit == "5/minute;1/day"
    assert keys.verify(token).reason is Reason.REVOKED


def test_update_changes_scopes_limit_and_metadata_without_rotating(keys: Keys) -> None:
    token, record = keys.create("alice", scopes=["a"], metadata={"team": "t", "old": "x"})
    updated = keys.update(
        record.key_id, scopes=["b", "c"], rate_limit="9/minute", metadata={"old": None, "n": "1"}
    )
    assert (updated.scopes, updated.rate_limit) == (("b", "c"), "9/minute")
    assert updated.metadata == {"team": "t", "n": "1"} and updated.digest == record.digest
    verdict = keys.verify(token)
    assert verdict.ok and verdict.record == updated
    assert keys.update(record.key_id, rate_limit="").rate_limit is None


def test_a_record_with_a_malformed_digest_cannot_be_built_so_none_is_saved(
    codec: TokenCodec, clock: Clock
) -> None:
    store = MemoryStore()
    keys = Keys(store, codec, clock=clock)
    token, record = keys.create("alice")
    for digest in ("é" * 64, "\udcff" * 64, "zz"):
        with pytest.raises(InvalidRecord, match="field 'digest' has an invalid value"):
            dataclasses.replace(record, digest=digest)
    assert keys.verify(token).ok
