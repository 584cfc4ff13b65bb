"""Disabling a key: `guard keys disable ID` turns it off without destroying it, and
`guard keys enable ID` turns it back on, as an operator runs them and a client meets them."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

import fakeredis
import pytest

from guard import Keys, KeyStateError, Reason, TokenCodec
from stores import EnvStore, KeyRecord, KeyStore, MemoryStore, RedisStore, from_url
from stores.env import render_records
from stores.testing import ALICE
from tests.conftest import Api
from tests.guard_command import guard_keys as guard


def audited(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "guard.audit"]


def test_a_disabled_key_is_refused_like_an_invalid_one_until_enabled(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="guard.audit")
    created = guard(sqlite_url, "create", "--name", "ci", "--scopes", "orders:read", "--json")
    assert created.returncode == 0, created.stderr
    token, key_id = json.loads(created.stdout)["token"], json.loads(created.stdout)["id"]
    # A short cache: SQLite has no notifications, and this test is about the refusal.
    api = Api(GUARD_STORE_URL=sqlite_url, GUARD_STORE_CACHE_TTL=0)
    try:
        assert api.client.get("/orders", headers=api.bearer(token)).status_code == 200

        disabled = guard(sqlite_url, "disable", key_id, "--json")
        assert disabled.returncode == 0, disabled.stderr
        assert json.loads(disabled.stdout)["state"] == "disabled"
        refused = api.client.get("/orders", headers=api.bearer(token))
        forged = api.client.get("/orders", headers=api.bearer(token[:-2] + "xx"))
        assert refused.status_code == forged.status_code == 401
        assert refused.headers["WWW-Authenticate"] == forged.headers["WWW-Authenticate"]
        assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
        # Nothing tells the client why: the bodies differ by their request ids alone.
        assert {**refused.json, "request_id": ""} == {**forged.json, "request_id": ""}
        assert audited(caplog)[-2]["reason"] == "disabled"
        listed = guard(sqlite_url, "list", "--state", "disabled", "--json")
        assert [row["id"] for row in json.loads(listed.stdout)] == [key_id]

        enabled = guard(sqlite_url, "enable", key_id)
        assert enabled.returncode == 0 and f"enabled {key_id} (ci): active" in enabled.stderr
        assert api.client.get("/orders", headers=api.bearer(token)).status_code == 200
        shown = json.loads(guard(sqlite_url, "show", key_id, "--json").stdout)
        assert shown["scopes"] == ["orders:read"]  # everything else was kept
    finally:
        api.close()


def test_a_revoked_key_cannot_be_enabled(sqlite_url: str) -> None:
    key_id = json.loads(guard(sqlite_url, "create", "--name", "ci", "--json").stdout)["id"]
    assert guard(sqlite_url, "disable", key_id).returncode == 0
    assert guard(sqlite_url, "revoke", key_id).returncode == 0
    refused = guard(sqlite_url, "enable", key_id)
    assert refused.returncode == 1
    assert refused.stderr.strip() == f"Error: key {key_id} is revoked and cannot be enabled"
    shown = json.loads(guard(sqlite_url, "show", key_id, "--json").stdout)
    assert shown["state"] == "revoked"


def test_disabling_an_unknown_key_names_it(sqlite_url: str) -> None:
    missing = guard(sqlite_url, "disable", "ffffffffffffffff")
    assert missing.returncode == 1
    assert missing.stderr.strip() == "Error: no key with id ffffffffffffffff"


def test_a_disabled_key_cannot_be_rotated_into_a_working_one(keys: Keys) -> None:
    _, record = keys.create("ci")
    keys.disable(record.key_id)
    with pytest.raises(ValueError, match="is disabled and cannot be rotated"):
        keys.rotate(record.key_id, grace=3600)


def test_a_scope_taken_from_a_successor_is_taken_from_its_disabled_predecessor(
    keys: Keys,
) -> None:
    old_token, old = keys.create("ci", scopes=["orders:read", "orders:write"])
    _, new = keys.rotate(old.key_id, grace=3600)
    keys.disable(old.key_id)
    keys.update(new.key_id, scopes=["orders:read"])
    keys.enable(old.key_id)
    verdict = keys.verify(old_token)
    assert verdict.ok and verdict.record is not None
    assert verdict.record.scopes == ("orders:read",)


def test_enabling_keeps_any_other_refusal(keys: Keys) -> None:
    token, record = keys.create("ci", expires_in=60)
    keys.disable(record.key_id)
    assert keys.verify(token).reason is Reason.DISABLED
    keys.enable(record.key_id)
    assert keys.verify(token, now=record.created_at + 61).reason is Reason.EXPIRED


# -- The field in every store ------------------------------------------------------------


def _memory(records: Sequence[KeyRecord], _: str) -> KeyStore:
    store = MemoryStore()
    store.save(*records)
    return store


def _env(records: Sequence[KeyRecord], _: str) -> KeyStore:
    return EnvStore("env://KEYS", environ={"KEYS": render_records(records)})


def _redis(records: Sequence[KeyRecord], _: str) -> KeyStore:
    store = RedisStore("redis://", client=fakeredis.FakeRedis(decode_responses=True))
    store.save(*records)
    return store


def _sql(records: Sequence[KeyRecord], url: str) -> KeyStore:
    store = from_url(url)
    store.save(*records)
    return store


@pytest.mark.parametrize("make", [_memory, _env, _redis, _sql], ids=lambda f: f.__name__[1:])
def test_the_disabled_field_round_trips_in_every_store(make: Any, sqlite_url: str) -> None:
    disabled = KeyRecord.from_dict({**ALICE.to_dict(), "disabled": True})
    store = make([disabled], sqlite_url)
    try:
        assert store.get(ALICE.key_id) == disabled and disabled.disabled
        assert store.records() == [disabled]
    finally:
        store.close()


def test_a_record_written_before_the_field_existed_loads_as_enabled() -> None:
    before = ALICE.to_dict()
    assert "disabled" not in before  # what every earlier version wrote
    assert KeyRecord.from_dict(before).refusal(ALICE.created_at) is None
    with pytest.raises(ValueError, match="'disabled' has an invalid value: true or false"):
        KeyRecord.from_dict({**before, "disabled": "yes"})


def test_a_revoked_key_may_be_disabled_and_stays_revoked(keys: Keys) -> None:
    _, record = keys.create("ci")
    keys.revoke(record.key_id)
    assert keys.disable(record.key_id).refusal(0) == "revoked"
    with pytest.raises(KeyStateError) as refused:
        keys.enable(record.key_id)
    assert str(refused.value) == f"key {record.key_id} is revoked and cannot be enabled"


class RacingStore(MemoryStore):
    """A store where another operator's write lands between this one's read and its
    write, as two operators' commands meet on a shared store."""

    def __init__(self) -> None:
        super().__init__()
        self.between: list[Callable[[], object]] = []

    def get(self, key_id: str) -> KeyRecord | None:
        record = super().get(key_id)
        while self.between:
            self.between.pop()()
        return record


@pytest.mark.parametrize("change", ["disable", "enable"])
def test_disabling_or_enabling_never_writes_over_a_revocation_made_meanwhile(
    change: str, codec: TokenCodec
) -> None:
    store = RacingStore()
    keys = Keys(store, codec)
    _, record = keys.create("ci")
    if change == "enable":
        keys.disable(record.key_id)
    store.between.append(lambda: Keys(store, codec).revoke(record.key_id))
    # The change is tried again on the record as it now is: disabled as well, or refused.
    if change == "disable":
        assert keys.disable(record.key_id).disabled
    else:
        with pytest.raises(KeyStateError):
            keys.enable(record.key_id)
    assert store.require(record.key_id).refusal(0) == "revoked"
