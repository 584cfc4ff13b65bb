"""After keys are created, used, rotated, revoked and imported under every store, no token
or secret appears in any log line, audit entry, exception message or stored value."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import fakeredis
import pytest
import redis
from click.testing import CliRunner

from guard import Keys, KeyStateError, TokenCodec
from guard.cli.commands import cli
from stores import EnvStore, KeyNotFound, KeyStore, MemoryStore, RedisStore
from stores.env import render_records
from tests.conftest import PEPPER, SECRET, Api

LEGACY_SECRET = "legacy-plain-secret-do-not-leak-42"


def dump_redis(client: redis.Redis) -> str:  # type: ignore[type-arg]
    """Every key and value in the database, as text."""
    out = []
    for key in client.scan_iter():
        kind = client.type(key)
        value = {
            b"string": client.get,
            b"set": client.smembers,
            b"hash": client.hgetall,
        }.get(kind, lambda k: b"")(key)
        out.append(f"{key!r}={value!r}")
    return "\n".join(out)


@pytest.fixture(params=["memory", "fakeredis", "redis"])
def store_and_dump(
    request: pytest.FixtureRequest,
) -> Iterator[tuple[KeyStore, Callable[[], str]]]:
    if request.param == "memory":
        store = MemoryStore()
        yield store, lambda: repr(store.records())
    else:
        if request.param == "redis":
            request.applymarker(pytest.mark.redis)
            url = request.getfixturevalue("redis_url")
            raw, text = redis.Redis.from_url(url), redis.Redis.from_url(url, decode_responses=True)
        else:
            server = fakeredis.FakeServer()
            raw = fakeredis.FakeRedis(server=server)
            text = fakeredis.FakeRedis(server=server, decode_responses=True)
        store = RedisStore("redis://", client=text)
        yield store, lambda: dump_redis(raw)
        store.close()


def test_no_secret_leaks_anywhere(
    store_and_dump: tuple[KeyStore, Callable[[], str]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    store, dump = store_and_dump
    keys = Keys(store, TokenCodec([SECRET], [PEPPER]), accept_imported=True)
    api = Api(GUARD_ACCEPT_IMPORTED_KEYS=True)
    api.app.extensions["guard"].keys = keys

    tokens = []
    token, record = keys.create("alice", scopes=["orders:read"])
    tokens.append(token)
    rotated, successor = keys.rotate(record.key_id, grace=0)
    tokens.append(rotated)
    keys.import_secret(LEGACY_SECRET, "legacy", scopes=["orders:read"])
    messages = []
    for failing in (
        lambda: keys.rotate(record.key_id, grace=60),
        lambda: keys.revoke("ffffffffffffffff"),
    ):
        with pytest.raises((KeyStateError, KeyNotFound)) as info:
            failing()
        messages.append(str(info.value))
    for credential in (*tokens, LEGACY_SECRET, token + "x", rotated[:-3]):
        api.client.get("/orders", headers=api.bearer(credential))
    keys.revoke(successor.key_id)
    api.client.get("/orders", headers=api.bearer(rotated))
    cli_output = "\n".join(
        CliRunner().invoke(cli, ["keys", *args], obj=keys).output
        for args in (
            ["list"],
            ["list", "--json"],
            ["show", record.key_id],
            ["show", successor.key_id],
        )
    )
    env_value = render_records(store.records())
    assert EnvStore("env://K", environ={"K": env_value}).records()

    secrets = [LEGACY_SECRET] + [t.split(".")[1] for t in tokens]
    haystacks = {
        "logs": "\n".join(r.getMessage() + repr(r.__dict__) for r in caplog.records),
        "exceptions": "\n".join(messages),
        "CLI listings": cli_output,
        "store": dump(),
        "env value": env_value,
    }
    keys.close()
    assert "guard.audit" in {r.name for r in caplog.records}
    for where, text in haystacks.items():
        for secret in secrets:
            assert secret not in text, f"a secret leaked into {where}"
