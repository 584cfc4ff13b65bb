from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from guard import GuardConfig, Keys, TokenCodec
from stores import MemoryStore
from tests.redis_server import RedisServer

# The store contract lives in the shipped package (for store authors): rewrite its asserts
# as pytest does the suite's own, so a failing contract test says what differed.
pytest.register_assert_rewrite("stores.testing")

SECRET = "s" * 32
PEPPER = "p" * 32

# A user's project, run by its own pytest in a subprocess (tests/frameworks), never here.
collect_ignore = ["plugin_project"]

#: The smallest valid configuration.
BASE_CONFIG = {"GUARD_SECRET_KEY": SECRET, "GUARD_PEPPER": PEPPER}
#: For apps served over plain HTTP by the test client.
LOCAL_CONFIG = {**BASE_CONFIG, "GUARD_FORCE_HTTPS": False, "GUARD_ALLOW_PLAIN_HTTP": True}


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
    server.close()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    if redis_server.process is None:  # a test stopped it to simulate an outage
        redis_server.start()
    client = redis_server.client()
    client.flushall()
    client.close()
    yield redis_server.url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file holding the guard's table, empty."""
    import sqlalchemy as sa

    from stores.sql import init_schema

    url = f"sqlite:///{tmp_path / 'keys.db'}"
    engine = sa.create_engine(url)
    init_schema(engine)
    engine.dispose()
    return url


class Api:
    """A protected app, its guard, and keys issued for it."""

    def __init__(self, **settings: object) -> None:
        from flask import Flask, jsonify

        from guard import Guard

        self.app = Flask("api")
        self.app.config.update({**LOCAL_CONFIG, **settings})
        self.guard = guard = Guard(self.app)

        @self.app.get("/orders")
        @guard.require("orders:read")
        def orders() -> object:
            key = guard.current_key
            return jsonify(orders=[], key=key.name if key else None)

        @self.app.post("/orders")
        @guard.require("orders:write")
        def create_order() -> object:
            return jsonify(created=True), 201

        @self.app.post("/uploads")
        @guard.accepts("text/csv")
        def upload() -> object:
            return jsonify(ok=True)

        @self.app.get("/health")
        @guard.exempt
        def health() -> object:
            return jsonify(ok=True)

        @self.app.get("/boom")
        def boom() -> object:
            raise RuntimeError("view failed")

        self.client = self.app.test_client()

    def issue(self, name: str = "alice", **options: object) -> str:
        options.setdefault("scopes", ["orders:read", "orders:write"])
        with self.app.app_context():
            token, _ = self.guard.keys.create(name, **options)  # type: ignore[arg-type]
        return token

    def close(self) -> None:
        """Stop the store's connections and threads (needed for Redis stores)."""
        self.app.extensions["guard"].keys.close()

    @staticmethod
    def bearer(token: str, **headers: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}", **headers}


@pytest.fixture
def api() -> Api:
    return Api()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """dictConfig changes the process's logging: put back what it replaced."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    loggers = {
        name: (logger.disabled, logger.level, logger.handlers[:], logger.propagate)
        for name, logger in logging.Logger.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger):
            disabled, level, handlers, propagate = loggers.get(name, (False, 0, [], True))
            logger.disabled, logger.handlers[:], logger.propagate = disabled, handlers, propagate
            logger.setLevel(level)
