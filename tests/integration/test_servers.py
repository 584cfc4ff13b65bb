"""The guard on Redis (keys and limits on a real redis-server) under every server and
worker class docs/deployment.md supports: a thread or greenlet per request must never cost
a Redis connection that outlives the request."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from guard import Keys, TokenCodec
from stores import RedisStore
from tests.conftest import PEPPER, SECRET
from tests.gunicorn import FlaskRun, Gunicorn, Served, get

pytestmark = pytest.mark.redis

REQUESTS = 600
CLIENTS = 4
#: Redis clients the served app may hold at its peak: a few per worker (store, listener)
#: plus one per live thread (its limiter lease) and per request in flight, whatever the
#: number of requests served: 600 requests must not cost 600 connections.
MAX_REDIS_CLIENTS = 20
#: gthread keeps 2 x 4 threads alive, each holding its limiter lease for its life.
MAX_REDIS_CLIENTS_GTHREAD = 26

SERVERS: dict[str, Callable[..., Served]] = {
    "flask-run": lambda **settings: FlaskRun(**settings),
    "gunicorn-sync": lambda **settings: Gunicorn(2, **settings),
    "gunicorn-gthread": lambda **settings: Gunicorn(2, "gthread", threads=4, **settings),
    "gunicorn-gevent": lambda **settings: Gunicorn(2, "gevent", **settings),
}


#: Per server, where it differs from MAX_REDIS_CLIENTS.
BOUNDS = {"gunicorn-gthread": MAX_REDIS_CLIENTS_GTHREAD}


@pytest.fixture(params=list(SERVERS))
def served(request: pytest.FixtureRequest, own_redis_url: str) -> Iterator[tuple[Served, str, int]]:
    redis_url = own_redis_url
    keys = Keys(RedisStore(redis_url), TokenCodec([SECRET], [PEPPER]))
    token, _ = keys.create("load", scopes=["orders:read"], rate_limit="100000/minute")
    keys.close()
    server = SERVERS[request.param](
        GUARD_STORE_URL=redis_url,
        GUARD_RATELIMIT_STORAGE_URL=redis_url,
        GUARD_RATE_LIMIT="100000/minute",
    )
    yield server, token, BOUNDS.get(request.param, MAX_REDIS_CLIENTS)
    server.stop()


class PeakClients:
    """Samples Redis' ``connected_clients`` until stopped; keeps the highest seen."""

    def __init__(self, redis_url: str) -> None:
        self.peak = 0
        self._client = redis.Redis.from_url(redis_url)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, int(self._client.info("clients")["connected_clients"]))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        self._client.close()
        return self.peak


def test_every_authenticated_request_is_served_and_redis_clients_stay_bounded(
    served: tuple[Served, str, int], own_redis_url: str
) -> None:
    server, token, bound = served
    peak = PeakClients(own_redis_url)
    try:
        with ThreadPoolExecutor(CLIENTS) as clients:
            statuses = Counter(
                clients.map(lambda _: get(f"{server.url}/orders", token), range(REQUESTS))
            )
    finally:
        highest = peak.stop()
    assert statuses == {200: REQUESTS}
    assert highest <= bound, f"{highest} Redis clients connected"
