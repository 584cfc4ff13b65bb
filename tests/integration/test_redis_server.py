"""The Redis store against a real redis-server, several clients standing in for workers."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import redis.client

from guard import Keys, Reason, TokenCodec
from stores import Conflict, RedisStore, StoreUnavailable, from_url
from tests.conftest import Api
from tests.integration.shared_store import (
    Connect,
    SharedStoreContract,
    stores_on,
    wait_until,
    warm_worker,
)
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis


@pytest.fixture
def connect(redis_url: str) -> Iterator[Connect]:
    """Opens stores on the real server, each with its own client, like separate workers."""
    with stores_on(redis_url, RedisStore) as make:
        yield make


class TestRealRedisStore(SharedStoreContract):
    """The contract, and a revocation reaching another worker through pub/sub."""


def test_cache_ttl_bounds_staleness_when_a_message_is_lost(
    connect: Connect, redis_server: RedisServer, codec: TokenCodec
) -> None:
    _, worker, token, record = warm_worker(connect, codec, cache_ttl=0.3)
    # Revoke behind the store's back, so no invalidation message is ever sent.
    revoked = dataclasses.replace(record, revoked_at=1.0)
    with redis_server.client() as raw:
        raw.set(f"guard:key:{record.key_id}", json.dumps(revoked.to_dict()))
    assert worker.verify(token).ok
    wait_until(lambda: worker.verify(token).reason is Reason.REVOKED, timeout=2.0)


def test_outage_is_unavailable_and_recovers_without_a_restart(
    connect: Connect, redis_server: RedisServer, codec: TokenCodec
) -> None:
    store, keys, token, _ = warm_worker(connect, codec)
    redis_server.stop()
    try:
        # The listener loses its subscription and drops the cache; lookups then fail.
        wait_until(lambda: keys.verify(token).reason is Reason.UNAVAILABLE, timeout=3.0)
        with pytest.raises(StoreUnavailable):
            store.check()
    finally:
        redis_server.start()
    # The server came back empty (no persistence in tests): the point is that the store
    # answers again by itself, with no restart of the client.
    wait_until(lambda: keys.verify(token).reason is Reason.UNKNOWN_KEY, timeout=5.0)


def test_a_hung_redis_is_given_up_on_within_the_timeout(
    connect: Connect, redis_server: RedisServer, codec: TokenCodec
) -> None:
    keys = Keys(connect(cache_ttl=0), codec)
    token, _ = keys.create("alice")
    assert redis_server.process is not None
    with redis_server.client() as raw:
        raw.execute_command("CLIENT", "PAUSE", "2000", "ALL")
    start = time.monotonic()
    assert keys.verify(token).reason is Reason.UNAVAILABLE
    assert time.monotonic() - start < 1.5  # 0.5 s timeout, no retry on timeouts


def test_closing_a_store_while_its_listener_reads_leaves_no_thread_failure(
    redis_url: str,
) -> None:
    # The listener is blocked in a read whenever it is idle; close() pulls the connection
    # from under it. pytest fails this test if that thread dies with an exception.
    for _ in range(20):
        store = from_url(redis_url, timeout=0.5)
        assert isinstance(store, RedisStore)
        [listener] = started_listeners(functools.partial(store.get, "0000000000000000"))
        wait_until(functools.partial(getattr, store, "subscribed"), timeout=5)
        store.close()
        listener.join(5)
        assert not listener.is_alive()


def started_listeners(action: Callable[[], object]) -> list[threading.Thread]:
    """The invalidation listeners that ``action`` started."""
    before = set(threading.enumerate())
    action()
    return [t for t in threading.enumerate() if t.name == "guard-invalidate" and t not in before]


# What redis-py's parser raises when close() disconnects under a read at an unlucky point.
TORN_READ = AttributeError("'NoneType' object has no attribute 'readline'")


def test_a_listener_failure_is_logged_and_the_listener_reconnects(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    failures = iter([TORN_READ])
    real = redis.client.PubSub.get_message

    def flaky(pubsub: redis.client.PubSub, *args: Any, **kwargs: Any) -> Any:
        for failure in failures:
            raise failure
        return real(pubsub, *args, **kwargs)

    monkeypatch.setattr(redis.client.PubSub, "get_message", flaky)
    store = from_url(redis_url, timeout=0.5)
    assert isinstance(store, RedisStore)
    store.get("0000000000000000")
    wait_until(lambda: store.subscribed, timeout=5)  # subscribed again after the failure
    store.close()
    assert "key invalidation listener failed; reconnecting" in caplog.text


def test_a_read_torn_by_close_ends_the_listener_quietly(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = from_url(redis_url, timeout=0.5)
    assert isinstance(store, RedisStore)

    request_done = threading.Event()

    def torn(pubsub: redis.client.PubSub, *args: Any, **kwargs: Any) -> Any:
        request_done.wait(5)  # close under the listener's read, not under the request's
        store.close()
        raise TORN_READ

    monkeypatch.setattr(redis.client.PubSub, "get_message", torn)
    [listener] = started_listeners(lambda: store.get("0000000000000000"))
    request_done.set()
    listener.join(5)
    assert not listener.is_alive()
    assert "listener failed" not in caplog.text


def test_a_stored_record_with_a_malformed_digest_is_a_401_and_audited_never_a_500(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="guard.audit")
    api = Api(GUARD_STORE_URL=redis_url)
    try:
        bad, good = api.issue("bad"), api.issue("good")
        bad_id = bad.split(".")[0].removeprefix("gk_")
        with redis.Redis.from_url(redis_url, decode_responses=True) as raw:
            stored = json.loads(raw.get(f"guard:key:{bad_id}") or "")
            for digest in ("é" * 64, "not hex at all"):
                raw.set(f"guard:key:{bad_id}", json.dumps({**stored, "digest": digest}))
                refused = api.client.get("/orders", headers=api.bearer(bad))
                assert refused.status_code == 401
                assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
        assert api.client.get("/orders", headers=api.bearer(good)).status_code == 200
        reasons = [
            json.loads(r.getMessage())["reason"] for r in caplog.records if r.name == "guard.audit"
        ]
        assert (
            reasons == ["invalid_record", "invalid_record", "ok"]
            or reasons.count("invalid_record") == 2
        )
    finally:
        api.close()


def test_a_revocation_from_one_host_is_never_undone_by_a_rotation_on_another(
    connect: Connect,
) -> None:
    codec = TokenCodec(["s" * 32], ["p" * 32])
    rotating, revoking = Keys(connect(), codec), Keys(connect(), codec)
    token, record = rotating.create("alice")
    _, new, old = rotating.prepare_rotation(record.key_id, grace=3600)
    revoking.revoke(record.key_id)
    with pytest.raises(Conflict):
        rotating.save_rotation(new, old)
    for keys in (rotating, revoking, Keys(connect(), codec)):
        assert keys.verify(token).reason is Reason.REVOKED
    assert revoking.store.get(new.key_id) is None
