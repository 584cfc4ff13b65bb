from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.postgres_server import PostgresServer
from tests.redis_server import RedisServer


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the whole run (each test gets an empty database)."""
    server = PostgresServer()
    server.start()
    yield server
    server.close()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    if not postgres_server.running:  # a test stopped it to simulate an outage
        postgres_server.start()
    postgres_server.reset()
    return postgres_server.url


@pytest.fixture
def own_redis_url() -> Iterator[str]:
    """A redis-server of the test's own, for tests that count its clients: the session's
    also holds other tests' lingering connections, which would be counted as the app's."""
    server = RedisServer()
    server.start()
    yield server.url
    server.close()
