"""GUARD_READY_PATH: a readiness check a load balancer can poll, answering 503 while a
protected request would be refused for want of the store or the limiter."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from http.client import HTTPConnection

import pytest
import redis

from guard import ConfigurationError
from tests.conftest import Api
from tests.redis_server import RedisServer
from tests.servers import fetch, served


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    server = RedisServer()  # stopped by the test: the session's server stays up
    server.start()
    yield server
    server.close()


def test_ready_on_memory_and_off_by_default() -> None:
    api = Api(GUARD_READY_PATH="/ready")
    answer = api.client.get("/ready")
    assert answer.status_code == 200
    assert answer.json == {"ready": True, "store": "ok", "limiter": "ok"}
    assert answer.headers["Cache-Control"] == "no-store"
    # Without the setting there is no such view: the path is protected as any other.
    assert Api().client.get("/ready").status_code == 401


def get(connection: HTTPConnection, path: str, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response, body = fetch(connection, "GET", path, headers)
    return response.status, body.decode()


def poll_until(connection: HTTPConnection, status: int) -> tuple[int, str]:
    """Poll as a load balancer does, every 100 ms, for up to 3 s (an answer is reused
    for a second)."""
    deadline = time.monotonic() + 3
    while True:
        found = get(connection, "/ready")
        if found[0] == status or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


@pytest.mark.redis
@pytest.mark.parametrize("part", ["store", "limiter"])
def test_not_ready_while_redis_is_down_and_ready_again_after(
    own_redis: RedisServer, part: str
) -> None:
    setting = "GUARD_STORE_URL" if part == "store" else "GUARD_RATELIMIT_STORAGE_URL"
    api = Api(GUARD_READY_PATH="/ready", **{setting: own_redis.url})
    token = api.issue()
    try:
        with served(api.app) as connection:
            assert get(connection, "/ready")[0] == 200
            own_redis.stop()
            status, body = poll_until(connection, 503)
            assert status == 503
            assert json.loads(body)[part] == "unavailable"
            # What the check said: a protected request is refused now too.
            assert get(connection, "/orders", token)[0] == 503
            own_redis.start()
            assert poll_until(connection, 200)[0] == 200
            token = api.issue()  # the restarted server kept nothing
            assert get(connection, "/orders", token)[0] == 200
    finally:
        api.close()


def test_a_limiter_that_fails_open_does_not_make_the_worker_unready() -> None:
    api = Api(
        GUARD_READY_PATH="/ready",
        GUARD_RATELIMIT_STORAGE_URL="redis://127.0.0.1:1/0",
        GUARD_RATELIMIT_FAIL_OPEN=True,
    )
    answer = api.client.get("/ready")
    assert answer.status_code == 200
    assert answer.json == {"ready": True, "store": "ok", "limiter": "unavailable"}


@pytest.mark.redis
def test_a_poll_every_few_milliseconds_costs_one_probe_a_second(redis_url: str) -> None:
    api = Api(GUARD_READY_PATH="/ready", GUARD_STORE_URL=redis_url)
    admin = redis.Redis.from_url(redis_url)
    try:
        before = int(admin.info("commandstats").get("cmdstat_ping", {}).get("calls", 0))
        statuses = {api.client.get("/ready").status_code for _ in range(200)}
        after = int(admin.info("commandstats").get("cmdstat_ping", {}).get("calls", 0))
        assert statuses == {200}
        assert after - before <= 3  # 200 polls well within a second or two
    finally:
        admin.close()
        api.close()


def test_a_bad_ready_path_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="GUARD_READY_PATH"):
        Api(GUARD_READY_PATH="ready")
