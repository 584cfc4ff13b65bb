"""Audit entries in a capped Redis Stream: batched off the request path, and written to
the local log instead when Redis cannot take them."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import redis

from guard.observability import audit
from guard.observability.audit_stream import RedisStreamHandler
from tests.conftest import Api
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis


@pytest.fixture
def streamed_api(redis_url: str) -> Iterator[tuple[Api, RedisStreamHandler, redis.Redis]]:  # type: ignore[type-arg]
    api = Api(GUARD_AUDIT_STREAM_URL=redis_url, GUARD_AUDIT_STREAM_MAXLEN=100)
    [handler] = [h for h in audit.logger.handlers if isinstance(h, RedisStreamHandler)]
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield api, handler, client
    audit.logger.removeHandler(handler)
    handler.close()
    api.close()
    audit.logger.setLevel(logging.NOTSET)
    client.close()


def test_entries_reach_the_stream_in_batches_not_per_request(
    streamed_api: tuple[Api, RedisStreamHandler, redis.Redis],  # type: ignore[type-arg]
) -> None:
    api, handler, client = streamed_api
    token = api.issue("alice")
    api.client.get("/orders", headers=api.bearer(token))
    api.client.get("/orders")
    assert client.xlen("guard:audit") == 0  # nothing was sent while answering
    handler.flush()
    created, *entries = [json.loads(fields["entry"]) for _, fields in client.xrange("guard:audit")]
    assert (created["event"], created["key_name"]) == ("key.created", "alice")  # api.issue's
    assert [(e["status"], e["key_name"]) for e in entries] == [(200, "alice"), (401, None)]


def test_the_stream_is_capped(
    streamed_api: tuple[Api, RedisStreamHandler, redis.Redis],  # type: ignore[type-arg]
) -> None:
    api, handler, client = streamed_api
    for _ in range(600):
        api.client.get("/health")
    handler.flush()
    # Approximate trimming keeps whole stream nodes (100 entries each) past the cap.
    assert 100 <= client.xlen("guard:audit") <= 200


@pytest.mark.parametrize("disabled", [False, True], ids=["enabled", "disabled by dictConfig"])
def test_entries_go_to_the_local_log_when_redis_is_down(
    streamed_api: tuple[Api, RedisStreamHandler, redis.Redis],  # type: ignore[type-arg]
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
    disabled: bool,
) -> None:
    api, handler, _ = streamed_api
    # What dictConfig's default disable_existing_loggers does to a logger that exists.
    logging.getLogger("guard.unsent_audit").disabled = disabled
    api.client.get("/health", headers={"X-Request-ID": "kept-1"})
    api.client.get("/health", headers={"X-Request-ID": "kept-2"})
    redis_server.stop()
    try:
        with caplog.at_level(logging.WARNING, logger="guard.unsent_audit"):
            handler.flush()
    finally:
        redis_server.start()
    lines = [r.getMessage() for r in caplog.records if r.name == "guard.unsent_audit"]
    if disabled:  # enabled again, and said so first
        notice = lines.pop(0)
        assert "'guard.unsent_audit' was disabled" in notice
    assert "unavailable" in lines[0] and "2 entries written here instead" in lines[0]
    assert [json.loads(line)["request_id"] for line in lines[1:]] == ["kept-1", "kept-2"]
    assert not logging.getLogger("guard.unsent_audit").disabled
