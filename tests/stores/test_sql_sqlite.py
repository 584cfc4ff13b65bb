"""The SQL store on a SQLite file: the contract, the schema check at start-up, and what a
SQLite store promises instead of notifications (a short cache TTL)."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest
import sqlalchemy as sa

import stores.sql
from guard import Keys, Reason, TokenCodec
from stores import InvalidRecord, InvalidStoreURL, KeyRecord, StoreUnavailable, from_url
from stores.sql import FALLBACK_TTL, SchemaMismatch, SQLStore, init_schema, share_engine
from stores.testing import ALICE, LEGACY, MakeStore, OwnerStoreContract, WritableStoreContract
from tests.conftest import Api
from tests.integration.shared_store import wait_until


class TestSQLiteStore(WritableStoreContract, OwnerStoreContract):
    @pytest.fixture
    def make_store(self, sqlite_url: str) -> MakeStore:
        def make(records: Sequence[KeyRecord]) -> SQLStore:
            store = from_url(sqlite_url)
            assert isinstance(store, SQLStore)
            store.save(*records)
            return store

        return make


def test_a_missing_table_stops_the_store_naming_the_command(tmp_path: Path) -> None:
    with pytest.raises(SchemaMismatch, match=r"'guard_keys' does not exist.*`guard store init`"):
        from_url(f"sqlite:///{tmp_path / 'keys.db'}")


def test_an_older_table_stops_the_store_naming_the_command(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A guard one schema version ahead of the table (its next release, say).
    monkeypatch.setattr(stores.sql, "SCHEMA_VERSION", 2)
    with pytest.raises(SchemaMismatch, match=r"schema version 1;.* 2: run `guard store init`"):
        from_url(sqlite_url)


def test_a_newer_table_is_refused_not_downgraded(sqlite_url: str) -> None:
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as raw:
        raw.execute("UPDATE guard_keys SET version = 99 WHERE key_id = ''")
    with pytest.raises(SchemaMismatch, match="newer than this guard's 1: upgrade"):
        from_url(sqlite_url)
    with pytest.raises(SchemaMismatch, match="newer"):
        init_schema(sa.create_engine(sqlite_url))


def test_the_table_holds_digests_never_a_token_or_secret(
    sqlite_url: str, codec: TokenCodec
) -> None:
    keys = Keys(from_url(sqlite_url), codec)
    token, record = keys.create("alice")
    _, secret = codec.open(token)
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as raw:
        dump = "\n".join(raw.iterdump())
    assert record.digest in dump
    assert token not in dump and secret not in dump


def test_the_table_is_named_from_the_store_prefix(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    init_schema(sa.create_engine(url), prefix="svc-a:")
    from_url(url, prefix="svc-a:").save(ALICE)
    with sqlite3.connect(tmp_path / "keys.db") as raw:
        assert raw.execute("SELECT count(*) FROM svc_a_keys").fetchone() == (2,)
    with pytest.raises(SchemaMismatch, match="'guard_keys' does not exist"):
        from_url(url)  # another prefix, another table
    with pytest.raises(InvalidStoreURL, match="lowercase letters"):
        from_url(url, prefix="Guard Keys:")


def test_a_revocation_reaches_another_process_within_the_short_ttl(
    sqlite_url: str, codec: TokenCodec
) -> None:
    worker = Keys(from_url(sqlite_url, cache_ttl=3600), codec)
    operator = Keys(from_url(sqlite_url), codec)
    token, record = operator.create("alice")
    assert worker.verify(token).ok
    operator.revoke(record.key_id)
    # No notifications on SQLite: the worker's cache is trusted FALLBACK_TTL at most.
    assert wait_until(lambda: worker.verify(token).reason is Reason.REVOKED, 2 * FALLBACK_TTL)


def test_an_unreadable_row_is_invalid_for_its_key_alone(sqlite_url: str) -> None:
    store = from_url(sqlite_url)
    store.save(ALICE, LEGACY)
    broken = json.dumps({**ALICE.to_dict(), "digest": "z" * 64})
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as raw:
        raw.execute("UPDATE guard_keys SET record = ? WHERE key_id = ?", (broken, ALICE.key_id))
    fresh = from_url(sqlite_url)
    with pytest.raises(InvalidRecord, match="unreadable record for key '0123456789abcdef'"):
        fresh.get(ALICE.key_id)
    assert fresh.get(LEGACY.key_id) == LEGACY


def test_a_shared_engine_is_used_and_left_open(sqlite_url: str) -> None:
    engine = sa.create_engine(sqlite_url)
    share_engine("app", engine)
    store = from_url("sqlalchemy://app")
    assert isinstance(store, SQLStore) and store.engine is engine
    store.save(dataclasses.replace(ALICE, name="shared"))
    store.close()
    with engine.connect() as conn:  # the app's engine still works
        assert conn.execute(sa.text("SELECT count(*) FROM guard_keys")).scalar() == 2
    with pytest.raises(InvalidStoreURL, match="no engine is shared as 'other'"):
        from_url("sqlalchemy://other")


def test_an_engine_can_be_handed_over_directly(sqlite_url: str) -> None:
    engine = sa.create_engine(sqlite_url)
    store = from_url("sqlite://", engine=engine)
    assert isinstance(store, SQLStore) and store.engine is engine
    assert SQLStore(engine).records() == []


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("sqlite://", "needs a file"),
        ("sqlite:///:memory:", "needs a file"),
        ("postgresql+psycopg://guard:hunter2@db:port/keys", "cannot read the SQL store URL"),
        ("sqlalchemy://", "sqlalchemy://NAME names an engine shared"),
    ],
)
def test_unusable_urls_are_refused_clearly(url: str, complaint: str) -> None:
    with pytest.raises(InvalidStoreURL, match=complaint) as info:
        from_url(url)
    assert "hunter2" not in str(info.value)


def test_an_engine_on_another_database_is_refused() -> None:
    engine = sa.create_engine("mysql+pymysql://db/keys", module=sqlite3)
    with pytest.raises(InvalidStoreURL, match="postgresql\\+psycopg or sqlite, not mysql"):
        SQLStore(engine)


def test_a_database_unreachable_at_start_up_is_checked_on_first_use(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A worker booting during an outage starts (refusing with 503) instead of failing to
    # boot, which would make gunicorn stop every worker.
    path = tmp_path / "not-yet" / "keys.db"
    store = from_url(f"sqlite:///{path}")
    assert "cannot check the key table yet" in caplog.text
    with pytest.raises(StoreUnavailable):
        store.get(ALICE.key_id)
    path.parent.mkdir()
    with pytest.raises(StoreUnavailable, match=r"does not exist.*`guard store init`"):
        store.get(ALICE.key_id)  # reachable now, but the table is missing: still refused
    init_schema(sa.create_engine(f"sqlite:///{path}"))
    store.save(ALICE)
    assert store.get(ALICE.key_id) == ALICE


def test_a_guard_runs_on_the_engine_an_app_shared(sqlite_url: str) -> None:
    # As docs/deployment.md shows for Flask-SQLAlchemy, whose db.engine is such an engine.
    engine = sa.create_engine(sqlite_url)
    share_engine("app", engine)
    api = Api(GUARD_STORE_URL="sqlalchemy://app")
    token = api.issue()
    assert api.client.get("/orders", headers=api.bearer(token)).status_code == 200
    api.close()
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM guard_keys")).scalar() == 2
