"""One way to build a Redis client: the store, the limiter and the audit stream all give
up on a hung Redis after the guard's timeout, and the request fails closed (issue 21)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from guard.observability import audit
from guard.observability.audit_stream import RedisStreamHandler
from tests.conftest import Api

TIMEOUT = 0.2


def serve(drop: bool) -> Iterator[str]:
    """The URL of a server that accepts connections and then never answers or (``drop``)
    closes them at once."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.05)
        while not stop.is_set():
            try:
                connection = server.accept()[0]
            except TimeoutError:
                continue
            if drop:
                connection.close()
            else:
                accepted.append(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    server.close()


@pytest.fixture
def hung_redis() -> Iterator[str]:
    """Redis stuck (a long script, a host gone behind a proxy): no answer."""
    yield from serve(drop=False)


@pytest.fixture(params=["hung", "dropping"])
def broken_redis(request: pytest.FixtureRequest) -> Iterator[str]:
    """Redis that never answers, or (restarting, refused by a proxy) closes every
    connection at once."""
    yield from serve(drop=request.param == "dropping")


def timed_get(api: Api, path: str, token: str | None = None) -> tuple[int, str | None, float]:
    """(status, Retry-After, seconds taken) of one GET."""
    started = time.monotonic()
    response = api.client.get(path, headers=api.bearer(token) if token else {})
    return response.status_code, response.headers.get("Retry-After"), time.monotonic() - started


@pytest.mark.parametrize("strategy", ["fixed-window", "moving-window", "sliding-window-counter"])
def test_a_broken_limiter_fails_closed_within_the_timeout(broken_redis: str, strategy: str) -> None:
    api = Api(
        GUARD_RATELIMIT_STORAGE_URL=broken_redis,
        GUARD_RATELIMIT_STRATEGY=strategy,
        GUARD_STORE_TIMEOUT=TIMEOUT,
    )
    status, retry_after, elapsed = timed_get(api, "/orders", api.issue())
    assert (status, bool(retry_after)) == (503, True)
    # A timed-out command is never sent again (it may have counted), and a dropped
    # connection is tried once more at once: no backoff holding the request for seconds.
    assert elapsed < 3 * TIMEOUT, elapsed


def test_a_hung_store_fails_closed_within_the_timeout(hung_redis: str) -> None:
    token = Api().issue()  # signed with the same secrets, so the store is asked
    api = Api(GUARD_STORE_URL=hung_redis, GUARD_STORE_TIMEOUT=TIMEOUT)
    status, retry_after, elapsed = timed_get(api, "/orders", token)
    api.close()
    assert (status, bool(retry_after)) == (503, True)
    assert elapsed < 3 * TIMEOUT, elapsed


def test_a_hung_audit_stream_keeps_the_entries_locally_within_the_timeout(
    hung_redis: str, caplog: pytest.LogCaptureFixture
) -> None:
    handler = RedisStreamHandler.from_url(hung_redis, TIMEOUT, "guard:audit", 100)
    record = audit.logger.makeRecord(
        audit.logger.name, logging.INFO, __file__, 0, '{"entry":1}', (), None
    )
    handler.emit(record)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, "guard.unsent_audit"):
        handler.flush()
    elapsed = time.monotonic() - started
    handler.close()
    assert elapsed < 3 * TIMEOUT, elapsed
    assert '{"entry":1}' in [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:1/0",
        "rediss://127.0.0.1:1/0",
        "unix:///nonexistent/redis.sock",
        "redis+unix:///nonexistent/redis.sock",
        "redis+sentinel://127.0.0.1:1/mymaster",
    ],
)
def test_the_limiter_connects_as_the_store_does(url: str) -> None:
    """Timeouts, retry, health check and TLS are decided once, for both (the store reads
    text, the limiter bytes: the one difference)."""
    api = Api(
        GUARD_STORE_URL=url.replace("redis+unix:", "unix:"),
        GUARD_RATELIMIT_STORAGE_URL=url,
        GUARD_STORE_TIMEOUT=TIMEOUT,
    )
    state = api.app.extensions["guard"]
    store_pool = state.keys.store.client.connection_pool
    limiter_pool = state.limits.storage.get_connection().connection_pool
    api.close()
    assert type(limiter_pool) is type(store_pool)
    assert limiter_pool.connection_class is store_pool.connection_class
    decided = ("socket_timeout", "socket_connect_timeout", "retry", "health_check_interval")
    assert {name: limiter_pool.connection_kwargs.get(name) for name in decided} == {
        name: store_pool.connection_kwargs.get(name) for name in decided
    }
    assert limiter_pool.connection_kwargs["socket_timeout"] == TIMEOUT
    assert store_pool.connection_kwargs["decode_responses"] is True
    assert limiter_pool.connection_kwargs["decode_responses"] is False


def limited_route(api: Api) -> None:
    """A route limited by Flask-Limiter (``guard.limiter``) alone: the view is exempt
    from the guard, so only the route's own limit touches Redis."""

    @api.app.get("/limited")
    @api.guard.exempt
    @api.guard.limiter.limit("5/minute")
    def limited() -> str:
        return "ok"


def test_a_hung_route_limiter_fails_closed_within_the_timeout(hung_redis: str) -> None:
    api = Api(GUARD_RATELIMIT_STORAGE_URL=hung_redis, GUARD_STORE_TIMEOUT=TIMEOUT)
    limited_route(api)
    status, retry_after, elapsed = timed_get(api, "/limited")
    assert (status, bool(retry_after)) == (503, True)
    assert elapsed < 3 * TIMEOUT, elapsed


def test_the_route_limiter_shares_the_guards_connection_pool() -> None:
    api = Api(GUARD_RATELIMIT_STORAGE_URL="redis://127.0.0.1:1/0", GUARD_STORE_TIMEOUT=TIMEOUT)
    limited_route(api)
    guards = api.app.extensions["guard"].limits.storage.get_connection()
    with api.app.app_context():
        routes = api.guard.limiter.storage.get_connection()
    assert routes.connection_pool is guards.connection_pool
