"""Quotas and owners on real gunicorn workers sharing one real redis-server: a quota
spent concurrently, through two workers or two hosts, admits exactly its allowance, never
one more, each request costing one script call counting the limits and the quota
together; two keys of one owner share its limit, and an owner's change reaches every
worker."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from guard import Keys, TokenCodec
from stores import RedisStore
from tests.conftest import PEPPER, SECRET
from tests.gunicorn import Gunicorn, get
from tests.integration.shared_workers import burst

pytestmark = pytest.mark.redis


@pytest.fixture
def workers(redis_url: str) -> Iterator[tuple[Gunicorn, Keys, redis.Redis]]:
    server = Gunicorn(
        2,
        GUARD_STORE_URL=redis_url,
        GUARD_RATELIMIT_STORAGE_URL=redis_url,
        GUARD_STORE_CACHE_TTL="3600",
        GUARD_FAILED_AUTH_LIMIT="100000/minute",
        GUARD_RATE_LIMIT="100000/minute",
    )
    keys = Keys(RedisStore(redis_url), TokenCodec([SECRET], [PEPPER]))
    admin = redis.Redis.from_url(redis_url)
    yield server, keys, admin
    server.stop()
    keys.close()
    admin.close()


def test_a_quota_spent_by_200_concurrent_requests_admits_exactly_its_allowance(
    workers: tuple[Gunicorn, Keys, redis.Redis],
) -> None:
    server, keys, admin = workers
    token, _ = keys.create("metered", scopes=["orders:read"], quota=50, quota_refill="monthly")
    admin.config_resetstat()
    statuses = Counter(burst(f"{server.url}/orders", token, 200, parallel=32))
    assert statuses == {200: 50, 429: 150}
    stats = admin.info("commandstats")["cmdstat_evalsha"]
    # One script call per request, limits and quota in it (a worker's first call may
    # find the script not loaded yet: a failed call, then the one that counts).
    assert stats["calls"] - stats.get("failed_calls", 0) == 200
    # Topped up, it admits the new allowance, as exactly.
    keys.update(_only_key(keys), quota=20)
    assert Counter(burst(f"{server.url}/orders", token, 60, parallel=32)) == {200: 20, 429: 40}


def test_across_two_hosts_a_quota_is_never_overspent(
    workers: tuple[Gunicorn, Keys, redis.Redis], redis_url: str
) -> None:
    server, keys, _ = workers
    other = Gunicorn(2, GUARD_STORE_URL=redis_url, GUARD_RATELIMIT_STORAGE_URL=redis_url)
    try:
        token, _ = keys.create("metered", scopes=["orders:read"], quota=50)
        urls = [f"{host.url}/orders" for host in (server, other)]
        with ThreadPoolExecutor(32) as pool:
            answers = list(pool.map(lambda n: get(urls[n % 2], token), range(200)))
    finally:
        other.stop()
    assert Counter(answers) == {200: 50, 429: 150}


def _only_key(keys: Keys) -> str:
    (record,) = keys.store.records()
    return record.key_id


def test_two_keys_of_one_owner_share_its_limit_across_the_workers(
    workers: tuple[Gunicorn, Keys, redis.Redis],
) -> None:
    server, keys, _ = workers
    keys.set_owner("acme", rate_limit="30/minute")
    first, _ = keys.create("a", scopes=["orders:read"], owner="acme")
    second, _ = keys.create("b", scopes=["orders:read"], owner="acme")
    url = f"{server.url}/orders"
    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(lambda n: get(url, (first, second)[n % 2]), range(100)))
    assert Counter(answers) == {200: 30, 429: 70}
    # The owner's new limit reaches both workers as fast as a key change.
    changed = time.monotonic()
    keys.set_owner("acme", rate_limit="1000/minute")
    while set(burst(url, first, 8)) != {200}:
        assert time.monotonic() - changed < 1, "the owner's change did not reach the workers"
    assert set(burst(url, second, 16)) == {200}


def test_a_key_with_an_owner_and_a_quota_costs_one_script_call_a_request(
    workers: tuple[Gunicorn, Keys, redis.Redis],
) -> None:
    server, keys, admin = workers
    keys.set_owner("acme", rate_limit="1000/minute;50000/day", quota=1000, quota_refill="1d")
    token, _ = keys.create("a", scopes=["orders:read"], owner="acme", quota=30)
    admin.config_resetstat()
    assert Counter(burst(f"{server.url}/orders", token, 40)) == {200: 30, 429: 10}
    stats = admin.info("commandstats")["cmdstat_evalsha"]
    # The key's window, the owner's two, both quotas: one call (no extra round trip).
    assert stats["calls"] - stats.get("failed_calls", 0) == 40
