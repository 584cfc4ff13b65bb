"""The demo API served by gunicorn in a separate process, several workers, real Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from guard import Keys, TokenCodec
from stores import MemoryStore
from stores.env import render_records
from tests.conftest import PEPPER, SECRET
from tests.gunicorn import Gunicorn, get

pytestmark = pytest.mark.redis


@pytest.fixture
def served(redis_url: str) -> Iterator[tuple[str, str]]:
    """The demo app under gunicorn (3 workers), its keys in env://, limits in Redis."""
    keys = Keys(MemoryStore(), TokenCodec([SECRET], [PEPPER]))
    token, _ = keys.create("ci", scopes=["orders:read"], rate_limit="5/minute")
    server = Gunicorn(
        3,
        GUARD_STORE_URL="env://GUARD_KEYS",
        GUARD_KEYS=render_records(keys.store.records()),
        GUARD_RATELIMIT_STORAGE_URL=redis_url,
    )
    yield server.url, token
    server.stop()


def test_real_server_answers_200_401_and_a_shared_429(served: tuple[str, str]) -> None:
    url, token = served
    assert get(f"{url}/health") == 200
    assert get(f"{url}/orders") == 401
    assert get(f"{url}/orders", "gk_" + "0" * 16 + ".x.y") == 401
    statuses = [get(f"{url}/orders", token) for _ in range(8)]
    # Five per minute across all three workers, because the counter lives in Redis.
    assert statuses == [200] * 5 + [429] * 3
