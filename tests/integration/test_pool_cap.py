"""GUARD_REDIS_MAX_CONNECTIONS caps every Redis pool a worker opens: under gevent, where a
greenlet per request would otherwise grow the pools with peak concurrency, Redis' client
count stays under the cap; a request that finds the store's pool exhausted waits at most
GUARD_STORE_TIMEOUT, then is refused with 503 (never 500, never let through), and one
past the limiter's cap is refused at once."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from guard import Keys, TokenCodec
from stores import RedisStore
from tests.conftest import PEPPER, SECRET, Api
from tests.gunicorn import Gunicorn, get
from tests.integration.test_servers import PeakClients

pytestmark = pytest.mark.redis

CAP = 8


def test_gevent_pools_stay_under_the_cap_at_any_concurrency(own_redis_url: str) -> None:
    redis_url = own_redis_url
    keys = Keys(RedisStore(redis_url), TokenCodec([SECRET], [PEPPER]))
    token, _ = keys.create("load", scopes=["orders:read"], rate_limit="100000/minute")
    keys.close()
    server = Gunicorn(
        1,
        "gevent",
        GUARD_STORE_URL=redis_url,
        GUARD_RATELIMIT_STORAGE_URL=redis_url,
        GUARD_RATE_LIMIT="100000/minute",
        GUARD_REDIS_MAX_CONNECTIONS=str(CAP),
    )
    peak = PeakClients(redis_url)
    try:
        served = {}
        for clients in (2, 64):  # within the cap, then eight times past it
            with ThreadPoolExecutor(clients) as pool:
                served[clients] = Counter(
                    pool.map(lambda _: get(f"{server.url}/orders", token), range(clients * 10))
                )
    finally:
        highest = peak.stop()
        server.stop()
    assert served[2] == {200: 20}
    assert set(served[64]) <= {200, 503} and served[64][200], served[64]
    # The store's pool, the limiter's, the invalidation listener, the sampler itself.
    assert highest <= 2 * CAP + 2, f"{highest} Redis clients connected"


def test_an_exhausted_pool_waits_the_store_timeout_then_answers_503(redis_url: str) -> None:
    api = Api(GUARD_STORE_URL=redis_url, GUARD_REDIS_MAX_CONNECTIONS=1, GUARD_STORE_TIMEOUT=0.3)
    token = api.issue()
    store = api.app.extensions["guard"].keys.store
    pool = store.client.connection_pool
    try:
        assert pool.max_connections == 1
        held = pool.get_connection()  # the only connection, taken by someone else
        started = time.monotonic()
        refused = api.client.get("/orders", headers=api.bearer(token))
        waited = time.monotonic() - started
        assert refused.status_code == 503 and refused.headers["Retry-After"]
        assert waited >= 0.25  # it waited for a connection before giving up
        pool.release(held)
        assert api.client.get("/orders", headers=api.bearer(token)).status_code == 200
    finally:
        api.close()
