"""Four gunicorn workers sharing one real Redis: exact limits, revocation that reaches
every worker, and an outage that is refused, never let through, and recovered from."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from guard import Keys, TokenCodec
from stores import RedisStore
from tests.conftest import PEPPER, SECRET
from tests.gunicorn import Gunicorn, get
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis
WORKERS = 4


@pytest.fixture
def cluster_of_workers(redis_url: str) -> Iterator[tuple[Gunicorn, Keys]]:
    server = Gunicorn(
        WORKERS,
        GUARD_STORE_URL=redis_url,
        GUARD_RATELIMIT_STORAGE_URL=redis_url,
        # An hour: anything refused sooner was refused by an invalidation message.
        GUARD_STORE_CACHE_TTL="3600",
        # Refusals must stay 401s here, not turn into the failed-attempt 429.
        GUARD_FAILED_AUTH_LIMIT="100000/minute",
        GUARD_RATE_LIMIT="100000/minute",
    )
    keys = Keys(RedisStore(redis_url), TokenCodec([SECRET], [PEPPER]))
    yield server, keys
    server.stop()
    keys.close()


def burst(url: str, token: str, count: int, parallel: int = 16) -> list[int]:
    with ThreadPoolExecutor(parallel) as pool:
        return list(pool.map(lambda _: get(url, token), range(count)))


def test_a_shared_limit_is_exact_across_workers(cluster_of_workers: tuple[Gunicorn, Keys]) -> None:
    server, keys = cluster_of_workers
    token, _ = keys.create("burst", scopes=["orders:read"], rate_limit="40/minute")
    statuses = Counter(burst(f"{server.url}/orders", token, 160))
    assert statuses == {200: 40, 429: 120}


def test_revocation_reaches_every_worker_through_invalidation(
    cluster_of_workers: tuple[Gunicorn, Keys],
) -> None:
    server, keys = cluster_of_workers
    token, record = keys.create("revoked-soon", scopes=["orders:read"])
    assert set(burst(f"{server.url}/orders", token, 64)) == {200}  # every worker caches it
    revoked_at = time.monotonic()
    keys.revoke(record.key_id)
    last_accepted = revoked_at
    while True:
        statuses = burst(f"{server.url}/orders", token, 32)
        if 200 in statuses:
            last_accepted = time.monotonic()
        elif set(statuses) == {401}:
            break
        assert time.monotonic() - revoked_at < 30, "revocation did not reach every worker"
    # The cache TTL is an hour: only invalidation messages explain a refusal this soon.
    print(f"revocation reached all {WORKERS} workers within {last_accepted - revoked_at:.3f}s")


def test_outage_mid_load_is_refused_with_503_and_recovers_by_itself(
    cluster_of_workers: tuple[Gunicorn, Keys], redis_server: RedisServer
) -> None:
    server, keys = cluster_of_workers
    token, _ = keys.create("steady", scopes=["orders:read"])
    pids = server.worker_pids()
    seen: Counter[int] = Counter()
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            seen[get(f"{server.url}/orders", token)] += 1

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        with redis_server.client() as client:
            client.save()  # production Redis persists keys; the restart reloads this
        redis_server.stop()
        before = seen[503]
        time.sleep(2)
        assert seen[503] > before, "requests went on without Redis"
        redis_server.start()
        deadline = time.monotonic() + 30
        while get(f"{server.url}/orders", token) != 200:
            assert time.monotonic() < deadline, f"no recovery: {seen}"
            time.sleep(0.1)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    # Every answer was a success or a refusal with 503: none let through without a
    # check, no 500, no hang (a hung request would have raised in get()).
    assert set(seen) <= {200, 503}, seen
    assert server.worker_pids() == pids, "a worker crashed"
