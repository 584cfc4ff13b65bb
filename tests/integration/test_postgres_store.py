"""The SQL store against a real PostgreSQL server, several stores standing in for workers."""

from __future__ import annotations

import dataclasses
import json
import random
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from guard import Keys, KeyStateError, Reason, TokenCodec
from guard.cli.commands import cli
from stores import StoreUnavailable, from_url
from stores.sql import FALLBACK_TTL, SQLStore, init_schema
from tests.conftest import Api
from tests.integration.shared_store import (
    Connect,
    SharedStoreContract,
    stores_on,
    wait_until,
    warm_worker,
)
from tests.postgres_server import DATABASE, PostgresServer

pytestmark = pytest.mark.postgres


@pytest.fixture
def connect(postgres_url: str) -> Iterator[Connect]:
    """Opens stores on the real server's initialized table, each with its own engine,
    like separate workers."""
    engine = sa.create_engine(postgres_url)
    init_schema(engine)
    engine.dispose()
    with stores_on(postgres_url, SQLStore) as make:
        yield make


class TestPostgresStore(SharedStoreContract):
    """The contract, and a revocation reaching another worker through LISTEN/NOTIFY."""


def test_cache_ttl_bounds_staleness_while_not_listening(
    connect: Connect, postgres_server: PostgresServer, codec: TokenCodec
) -> None:
    worker_store, worker, token, record = warm_worker(connect, codec, cache_ttl=3600)
    # Revoke behind the store's back, so no notification is ever sent: the hour-long
    # cache keeps the record, as on Redis when a message is lost.
    revoked = dataclasses.replace(record, revoked_at=1.0)
    with psycopg.connect(postgres_server.conninfo(), autocommit=True) as raw:
        raw.execute(
            "UPDATE guard_keys SET record = %s WHERE key_id = %s",
            (json.dumps(revoked.to_dict()), record.key_id),
        )
    assert worker.verify(token).ok
    # Once the listener is cut off, the cache is dropped and the short TTL applies.
    with psycopg.connect(postgres_server.conninfo(), autocommit=True) as raw:
        raw.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE query LIKE 'LISTEN%%' AND pid <> pg_backend_pid()"
        )
    wait_until(lambda: worker.verify(token).reason is Reason.REVOKED, timeout=2 * FALLBACK_TTL)
    wait_until(lambda: worker_store.subscribed is True, timeout=5)  # listening again


def test_outage_is_unavailable_and_recovers_without_a_restart(
    connect: Connect, postgres_server: PostgresServer, codec: TokenCodec
) -> None:
    store, keys, token, record = warm_worker(connect, codec)
    postgres_server.stop()
    try:
        # The listener loses its connection and drops the cache; lookups then fail.
        wait_until(lambda: keys.verify(token).reason is Reason.UNAVAILABLE, timeout=3.0)
        with pytest.raises(StoreUnavailable) as info:
            store.check()
        assert isinstance(info.value.__cause__, sa.exc.DBAPIError)
        with pytest.raises(StoreUnavailable):
            keys.revoke(record.key_id)
    finally:
        postgres_server.start()
    # The pool's pre-ping replaces the connections the restart cut.
    wait_until(lambda: keys.verify(token).ok, timeout=5.0)
    wait_until(lambda: store.subscribed is True, timeout=5.0)


@pytest.mark.usefixtures("connect")  # the table is made
def test_an_outage_is_a_503_with_retry_after_never_a_500(
    postgres_url: str, postgres_server: PostgresServer
) -> None:
    api = Api(GUARD_STORE_URL=postgres_url)
    try:
        token = api.issue()
        assert api.client.get("/orders", headers=api.bearer(token)).status_code == 200
        postgres_server.stop()
        try:
            wait_until(
                lambda: api.client.get("/orders", headers=api.bearer(token)).status_code == 503,
                timeout=3.0,
            )
            refused = api.client.get("/orders", headers=api.bearer(token))
            assert refused.status_code == 503
            assert int(refused.headers["Retry-After"]) > 0
        finally:
            postgres_server.start()
        wait_until(
            lambda: api.client.get("/orders", headers=api.bearer(token)).status_code == 200,
            timeout=5.0,
        )
    finally:
        api.close()


def test_concurrent_rotations_and_revocations_lose_none(
    connect: Connect, codec: TokenCodec
) -> None:
    # Two hosts: one rotating every key while the other revokes every key, 200 writes
    # racing on 100 records.
    rotating, revoking = Keys(connect(), codec), Keys(connect(), codec)
    created = [rotating.create(f"key-{n}")[1].key_id for n in range(100)]
    jobs = [("rotate", key_id) for key_id in created] + [("revoke", key_id) for key_id in created]
    random.Random(25).shuffle(jobs)

    def run(job: tuple[str, str]) -> tuple[str, str, str | None]:
        action, key_id = job
        try:
            if action == "rotate":
                _, new = rotating.rotate(key_id, grace=3600)
                return action, key_id, new.key_id
            revoking.revoke(key_id)
            return action, key_id, None
        except KeyStateError:  # revoked before this rotation read it
            return action, key_id, "refused"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(run, jobs))
    successors = {key_id: new for action, key_id, new in outcomes if action == "rotate"}
    final = {record.key_id: record for record in Keys(connect(), codec).store.records()}
    rotated = {key_id: new for key_id, new in successors.items() if new != "refused"}
    # Every revocation stands, whatever rotation ran before or after it.
    assert all(final[key_id].revoked_at is not None for key_id in created)
    # Every rotation reported done is written whole, and none reported refused left a
    # successor behind.
    for key_id, new in rotated.items():
        assert final[key_id].replaced_by == new
        assert final[new].replaces == key_id
    assert len(final) == len(created) + len(rotated)
    assert {r.key_id for r in final.values() if r.replaces} == set(rotated.values())


def test_store_init_run_twice_changes_nothing_the_second_time(
    postgres_url: str, postgres_server: PostgresServer
) -> None:
    runner = CliRunner()
    first = runner.invoke(cli, ["--store", postgres_url, "store", "init", "--prefix", "svc:"])
    assert first.exit_code == 0, first.output
    assert "created the key table svc_keys" in first.output
    before = schema_and_rows(postgres_server)
    second = runner.invoke(cli, ["--store", postgres_url, "store", "init", "--prefix", "svc:"])
    assert second.exit_code == 0, second.output
    assert "nothing changed" in second.output
    assert schema_and_rows(postgres_server) == before


def schema_and_rows(server: PostgresServer) -> tuple[list[Any], ...]:
    """The table's columns, indexes and rows, with the row versions PostgreSQL keeps
    (xmin changes on any write, even one that writes the same values)."""
    with psycopg.connect(server.conninfo()) as raw:
        columns = raw.execute(
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns"
            " WHERE table_name = 'svc_keys' ORDER BY column_name"
        ).fetchall()
        indexes = raw.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'svc_keys'"
            " ORDER BY indexname"
        ).fetchall()
        rows = raw.execute(
            "SELECT xmin::text, key_id, record, version FROM svc_keys ORDER BY key_id"
        ).fetchall()
    assert columns and indexes and rows
    return columns, indexes, rows


def test_a_worker_started_during_an_outage_serves_once_postgres_returns(
    connect: Connect, postgres_url: str, postgres_server: PostgresServer, codec: TokenCodec
) -> None:
    token, _ = Keys(connect(), codec).create("alice")
    postgres_server.stop()
    try:
        late = from_url(postgres_url, timeout=0.5)  # no error: checked on first use
        keys = Keys(late, codec)
        assert keys.verify(token).reason is Reason.UNAVAILABLE
    finally:
        postgres_server.start()
    try:
        wait_until(lambda: keys.verify(token).ok, timeout=5.0)
    finally:
        late.close()


GUIDE = Path(__file__).resolve().parents[2] / "docs" / "deployment.md"


def documented_grants() -> list[str]:
    """The GRANT statements the deployment guide gives the guard's database user, on the
    tests' database."""
    match = re.search(r"```sql\nCREATE ROLE guard_app .*?\n(.*?)```", GUIDE.read_text(), re.S)
    assert match, "the guide shows the guard_app role's grants"
    grants = [line.rstrip(";") for line in match.group(1).splitlines() if line]
    assert grants and all(grant.startswith("GRANT ") for grant in grants)
    return [grant.replace("DATABASE app ", f"DATABASE {DATABASE} ") for grant in grants]


def test_the_documented_least_privileges_are_enough_for_every_guard_operation(
    connect: Connect, postgres_server: PostgresServer, codec: TokenCodec
) -> None:
    with psycopg.connect(postgres_server.conninfo(), autocommit=True) as admin:
        if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = 'guard_app'").fetchone() is None:
            admin.execute("CREATE ROLE guard_app LOGIN")
        for grant in documented_grants():
            admin.execute(grant)
    url = sa.make_url(postgres_server.url).set(username="guard_app")
    store = from_url(url.render_as_string(hide_password=False), timeout=0.5)
    assert isinstance(store, SQLStore)
    operator, worker = Keys(store, codec, accept_imported=True), Keys(connect(), codec)
    try:
        token, record = operator.create("alice")
        operator.import_secret("legacy-secret-value-0123456789", "legacy")
        assert operator.verify("legacy-secret-value-0123456789").ok
        _, new = operator.rotate(record.key_id, grace=60)
        operator.revoke(new.key_id)
        assert operator.verify(token).ok
        operator.note_use(record)
        operator.flush_uses()
        assert store.last_used(record.key_id) is not None
        assert len(store.records()) == 3
        store.check()
        wait_until(lambda: store.subscribed is True, timeout=5)  # LISTEN needs no grant
        assert worker.verify(token).ok
        denied = pytest.raises(sa.exc.ProgrammingError, match="permission denied")
        with denied, store.engine.begin() as conn:  # nothing it was not granted
            conn.execute(sa.text("DELETE FROM guard_keys"))
    finally:
        store.close()


FORKED_WORKER = """
import os, sys, time
from guard import Keys, Reason, TokenCodec
from stores import from_url

store = from_url(sys.argv[1])  # built before the fork, as under gunicorn --preload
keys = Keys(store, TokenCodec(["s" * 32], ["p" * 32]))
token, record = keys.create("alice")
read, write = os.pipe()
child = os.fork()
if child == 0:
    assert keys.verify(token).ok  # the child's own pool and listener
    while not store.subscribed:
        time.sleep(0.01)
    os.write(write, b"ready")
    deadline = time.monotonic() + 1.0
    while keys.verify(token).reason is not Reason.REVOKED:
        assert time.monotonic() < deadline, "the revocation did not reach the child"
        time.sleep(0.01)
    os._exit(0)
os.read(read, 5)
keys.revoke(record.key_id)  # the parent's connections still work after the fork
_, status = os.waitpid(child, 0)
print(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.usefixtures("connect")  # the table is made
def test_a_store_built_before_a_fork_gives_the_child_its_own_connections(
    postgres_url: str,
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", FORKED_WORKER, postgres_url],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.stdout.strip() == "0", done.stderr
