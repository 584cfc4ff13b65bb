from __future__ import annotations

from collections.abc import Iterator

import pytest

from guard import GuardConfig, Keys, TokenCodec
from stores import MemoryStore
from tests.redis_server import RedisServer

SECRET = "s" * 32
PEPPER = "p" * 32

#: The smallest valid configuration.
BASE_CONFIG = {"GUARD_SECRET_KEY": SECRET, "GUARD_PEPPER": PEPPER}


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def config() -> GuardConfig:
    return GuardConfig.from_mapping(BASE_CONFIG)


@pytest.fixture
def codec() -> TokenCodec:
    return TokenCodec([SECRET], [PEPPER])


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def keys(codec: TokenCodec, clock: Clock) -> Keys:
    return Keys(MemoryStore(), codec, clock=clock)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the whole run (each test flushes it)."""
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    if redis_server.process is None:  # a test stopped it to simulate an outage
        redis_server.start()
    client = redis_server.client()
    client.flushall()
    client.close()
    yield redis_server.url
