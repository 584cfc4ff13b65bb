"""Four gunicorn workers sharing one real Redis: exact limits, revocation that reaches
every worker, and an outage that is refused, never let through, and recovered from."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from guard import Keys, TokenCodec
from stores import RedisStore
from tests.conftest import PEPPER, SECRET
from tests.gunicorn import Gunicorn
from tests.integration.shared_workers import (
    CACHED_FOR_AN_HOUR,
    burst,
    outage_under_load,
    seconds_until_every_worker_refuses,
)
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis
WORKERS = 4


@pytest.fixture
def cluster_of_workers(redis_url: str) -> Iterator[tuple[Gunicorn, Keys]]:
    server = Gunicorn(
        WORKERS,
        GUARD_STORE_URL=redis_url,
        GUARD_RATELIMIT_STORAGE_URL=redis_url,
        **CACHED_FOR_AN_HOUR,
    )
    keys = Keys(RedisStore(redis_url), TokenCodec([SECRET], [PEPPER]))
    yield server, keys
    server.stop()
    keys.close()


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
    delay = seconds_until_every_worker_refuses(
        f"{server.url}/orders", token, lambda: keys.revoke(record.key_id)
    )
    # The cache TTL is an hour: only invalidation messages explain a refusal this soon.
    print(f"revocation reached all {WORKERS} workers within {delay:.3f}s")


def test_outage_mid_load_is_refused_with_503_and_recovers_by_itself(
    cluster_of_workers: tuple[Gunicorn, Keys], redis_server: RedisServer
) -> None:
    server, keys = cluster_of_workers
    token, _ = keys.create("steady", scopes=["orders:read"])

    def stop() -> None:
        with redis_server.client() as client:
            client.save()  # production Redis persists keys; the restart reloads this
        redis_server.stop()

    outage = outage_under_load(server, token, stop, redis_server.start, down_for=2)
    assert 503 in outage.statuses(outage.stopped, outage.restarting), "went on without Redis"
