"""Every lifecycle write knows its outcome, and what it saves can be read back.

In process, over a store that loses replies (review round 3, items 1, 2, 5 and 18; the
same behaviours through the installed command and a real Redis are in
tests/integration).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import pytest

from guard import Keys, Reason, TokenCodec
from guard.keys import InvalidKeySettings, WriteUnconfirmed
from stores import KeyRecord, MemoryStore, StoreUnavailable
from tests.conftest import Clock

HOUR = 3600.0
REFUSED = r"^not saved: field '"


class LossyStore(MemoryStore):
    """A memory store whose next ``losses`` writes fail as a timeout does: applied (or,
    with ``applies`` off, not) and unanswered, with ``meanwhile`` (another operator's
    write) run before the failure. Every write that answers is counted, as each
    publishes on Redis."""

    def __init__(self) -> None:
        super().__init__()
        self.losses = 0
        self.applies = True
        self.meanwhile: Callable[[], object] | None = None
        self.answered: list[tuple[str, ...]] = []

    def save(
        self, *records: KeyRecord, expected: Mapping[str, KeyRecord | None] | None = None
    ) -> None:
        if self.losses > 0:
            self.losses -= 1
            if self.applies:
                super().save(*records, expected=expected)
            other, self.meanwhile = self.meanwhile, None
            if other is not None:
                other()
            raise StoreUnavailable("timeout")
        super().save(*records, expected=expected)
        self.answered.append(tuple(record.key_id for record in records))

    def get(self, key_id: str) -> KeyRecord | None:
        # A store builds its lookup from the id (Redis: a key name): never anything else.
        assert isinstance(key_id, str), f"looked up {key_id!r}"
        return super().get(key_id)


@pytest.fixture
def store() -> LossyStore:
    return LossyStore()


@pytest.fixture
def lossy(store: LossyStore, codec: TokenCodec, clock: Clock) -> Keys:
    return Keys(store, codec, clock=clock)


def test_a_write_applied_but_unanswered_is_confirmed_by_writing_it_again(
    lossy: Keys, store: LossyStore
) -> None:
    store.losses = 1
    token, record = lossy.create("alice")
    assert lossy.verify(token).ok and store.answered == [(record.key_id,)]
    store.losses = 1
    new_token, new = lossy.rotate(record.key_id, grace=HOUR)
    assert lossy.verify(new_token).ok
    assert store.require(record.key_id).replaced_by == new.key_id
    assert store.answered[-1] == (new.key_id, record.key_id)


def test_a_write_that_did_not_apply_is_sent_again_as_first_decided(
    lossy: Keys, store: LossyStore
) -> None:
    store.losses, store.applies = 1, False
    token, record = lossy.create("alice")
    assert lossy.verify(token).ok and store.answered == [(record.key_id,)]


def test_a_write_neither_as_read_nor_as_written_is_decided_again(
    lossy: Keys, store: LossyStore
) -> None:
    _, record = lossy.create("alice", scopes=["a"])
    # The revocation is lost before it applies, and meanwhile another operator changes
    # the scopes: it is decided again on the record as it now is.
    store.losses, store.applies = 1, False
    store.meanwhile = lambda: lossy.update(record.key_id, scopes=["b"])
    revoked = lossy.revoke(record.key_id)
    assert revoked.scopes == ("b",) and revoked.revoked_at is not None
    assert store.require(record.key_id) == revoked


def test_an_unanswered_check_is_unconfirmed_and_keeps_the_token_out_of_its_message(
    lossy: Keys, store: LossyStore
) -> None:
    store.losses = 2
    with pytest.raises(WriteUnconfirmed) as raised:
        lossy.create("alice")
    unconfirmed = raised.value
    assert unconfirmed.token is not None and unconfirmed.record is not None
    assert unconfirmed.token not in str(unconfirmed) and "may or may not be saved" in str(
        unconfirmed
    )
    assert lossy.verify(unconfirmed.token).ok  # it had applied: the token was not lost
    assert store.require(unconfirmed.record.key_id) == unconfirmed.record
    _, record = lossy.create("bob")
    store.losses = 2
    with pytest.raises(WriteUnconfirmed) as raised:
        lossy.rotate(record.key_id, grace=HOUR)
    assert raised.value.token is not None and lossy.verify(raised.value.token).ok
    store.losses = 2
    with pytest.raises(WriteUnconfirmed) as raised:
        lossy.revoke(record.key_id)
    assert raised.value.token is None


def test_every_revocation_saves_so_a_repeated_one_publishes_again(
    lossy: Keys, store: LossyStore, clock: Clock
) -> None:
    token, record = lossy.create("alice")
    first = lossy.revoke(record.key_id)
    clock.advance(60)
    store.answered.clear()
    assert lossy.revoke(record.key_id) == first  # the first time is kept
    assert store.answered == [(record.key_id,)]
    assert lossy.verify(token).reason is Reason.REVOKED


def test_a_revocation_dated_in_the_future_is_refused_now_and_corrected_by_the_next(
    keys: Keys, clock: Clock
) -> None:
    token, record = keys.create("alice")
    ahead = keys.revoke(record.key_id, now=clock() + 600)
    assert ahead.revoked_at == clock() + 600
    assert keys.verify(token).reason is Reason.REVOKED
    assert keys.revoke(record.key_id).revoked_at == clock()


@pytest.mark.parametrize(
    "settings",
    [
        {"name": "n" * 257},
        {"name": "a\nb"},
        {"name": ""},
        {"scopes": ["ok", "bad\x00"]},
        {"rate_limit": "x" * 257},
        {"metadata": {"n": "v" * 1025}},
        {"metadata": {"\x1b": "v"}},
    ],
)
def test_settings_no_store_reads_back_are_refused_and_nothing_is_saved(
    keys: Keys, settings: dict[str, object]
) -> None:
    settings = {"name": "alice", **settings}
    with pytest.raises(InvalidKeySettings, match=REFUSED):
        keys.create(**settings)  # type: ignore[arg-type]
    with pytest.raises(InvalidKeySettings, match=REFUSED):
        keys.import_secret("legacy", **settings)  # type: ignore[arg-type]
    assert keys.store.records() == []
    _, record = keys.create("alice")
    changes = {k: v for k, v in settings.items() if k != "name"}
    if changes:
        with pytest.raises(InvalidKeySettings, match=REFUSED):
            keys.update(record.key_id, **changes)  # type: ignore[arg-type]
        assert keys.store.records() == [record]


def test_the_limits_themselves_are_allowed(keys: Keys) -> None:
    _, record = keys.create("n" * 256, metadata={"k" * 256: "v" * 1024})
    assert keys.store.require(record.key_id) == record
    assert KeyRecord.from_dict(record.to_dict()) == record


def test_an_update_mid_rotation_changes_every_token_that_works(lossy: Keys, clock: Clock) -> None:
    _, first = lossy.create("alice", scopes=["a", "b"])
    _, second = lossy.rotate(first.key_id, grace=HOUR)
    clock.advance(2 * HOUR)  # first's grace is over: updating later keys leaves it be
    _, third = lossy.rotate(second.key_id, grace=HOUR)

    def ids(key_id: str) -> list[str]:
        return [r.key_id for r in lossy.rotation_of(lossy.store.require(key_id))]

    assert ids(first.key_id) == [first.key_id, second.key_id, third.key_id]
    assert ids(second.key_id) == [second.key_id, third.key_id]
    assert ids(third.key_id) == [third.key_id, second.key_id]
    lossy.update(third.key_id, scopes=["a"], metadata={"team": "x"})
    scopes = {r.key_id: r.scopes for r in lossy.store.records()}
    assert scopes == {first.key_id: ("a", "b"), second.key_id: ("a",), third.key_id: ("a",)}
    assert lossy.store.require(second.key_id).metadata == {"team": "x"}
    assert lossy.update(first.key_id, rate_limit="5/minute").rate_limit == "5/minute"
    assert {r.rate_limit for r in lossy.store.records()} == {"5/minute"}


def test_links_a_store_was_edited_into_are_followed_once_and_only_both_ways(
    lossy: Keys, store: LossyStore
) -> None:
    _, a = lossy.create("a")
    _, b = lossy.create("b")
    _, c = lossy.create("c")
    _, d = lossy.create("d")
    # a -> b -> c -> b (a loop), d claims to replace b, which names c as its successor,
    # and c names a successor that is gone.
    store.save(dataclasses.replace(a, replaced_by=b.key_id))
    store.save(dataclasses.replace(b, replaced_by=c.key_id))
    store.save(dataclasses.replace(c, replaced_by=b.key_id))
    store.save(dataclasses.replace(d, replaces=b.key_id, replaced_by="0000000000000000"))
    chain = lossy.rotation_of(store.require(a.key_id))
    assert [r.key_id for r in chain] == [a.key_id, b.key_id, c.key_id]
    assert [r.key_id for r in lossy.rotation_of(store.require(d.key_id))] == [d.key_id]
    lossy.update(a.key_id, scopes=["x"])
    assert {r.key_id for r in store.records() if r.scopes == ("x",)} == {
        a.key_id,
        b.key_id,
        c.key_id,
    }


def test_an_update_that_changes_nothing_writes_nothing(lossy: Keys, store: LossyStore) -> None:
    _, record = lossy.create("alice", scopes=["a"])
    store.answered.clear()
    assert lossy.update(record.key_id, scopes=["a"]) == record
    assert store.answered == []
