"""Quota leases in one process on a real redis-server: a lease is counted quota, so it
is spent through an outage and then the guard fails closed; an idle lease goes back."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from stores import KeyRecord
from tests.conftest import Api
from tests.integration.test_leases_workers import remaining
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis


def test_a_granted_lease_is_spent_through_an_outage_then_requests_are_refused_503(
    redis_url: str, redis_server: RedisServer
) -> None:
    # Keys in memory, limits on Redis: only the limiter loses its storage.
    api = Api(GUARD_RATELIMIT_STORAGE_URL=redis_url, GUARD_RATE_LIMIT="400/minute")
    try:
        token = api.issue()
        assert api.client.get("/orders", headers=api.bearer(token)).status_code == 200
        redis_server.stop()
        statuses = [
            api.client.get("/orders", headers=api.bearer(token)).status_code for _ in range(400)
        ]
    finally:
        api.close()
    admitted = statuses.count(200)
    # Admitted first, out of the units granted before Redis went; never more than the
    # limit; then refused, never let through uncounted.
    assert 0 < admitted < 400
    assert statuses == [200] * admitted + [503] * (400 - admitted)


@pytest.fixture
def on_redis(redis_url: str) -> Iterator[Callable[..., Api]]:
    """Makes an app with keys and limits on Redis, under the limit and settings given;
    closes them after."""
    made: list[Api] = []

    def make(limit: str, **settings: object) -> Api:
        made.append(
            Api(
                GUARD_STORE_URL=redis_url,
                GUARD_RATELIMIT_STORAGE_URL=redis_url,
                GUARD_RATE_LIMIT=limit,
                **settings,
            )
        )
        return made[-1]

    yield make
    for api in made:
        api.close()


def key(api: Api, name: str) -> tuple[str, KeyRecord]:
    with api.app.app_context():
        return api.guard.keys.create(name, scopes=["orders:read"])


def gets(api: Api, token: str, count: int) -> Counter[int]:
    return Counter(
        api.client.get("/orders", headers=api.bearer(token)).status_code for _ in range(count)
    )


def test_an_idle_lease_goes_back_to_its_window(
    redis_url: str, on_redis: Callable[..., Api]
) -> None:
    api = on_redis("1000/minute")
    token, record = key(api, "idle")
    assert gets(api, token, 10) == {200: 10}
    assert remaining(redis_url, "1000/minute", record.key_id) < 1000 - 10  # leased
    deadline = time.monotonic() + 30
    while remaining(redis_url, "1000/minute", record.key_id) != 1000 - 10:
        assert time.monotonic() < deadline, "the idle lease was never given back"
        time.sleep(0.2)


def test_a_revoked_key_spends_no_lease(redis_url: str, on_redis: Callable[..., Api]) -> None:
    # 5/minute in one process: every lease is one unit, so a unit spent shows at once.
    api = on_redis("5/minute")
    token, record = key(api, "revoked")
    assert gets(api, token, 1) == {200: 1}
    with api.app.app_context():
        api.guard.keys.revoke(record.key_id)
    assert gets(api, token, 5) == {401: 5}
    assert remaining(redis_url, "5/minute", record.key_id) == 4


def test_the_limiter_metric_times_the_waits_for_a_lease_not_the_units_spent(
    on_redis: Callable[..., Api],
) -> None:
    api = on_redis("1000/minute", GUARD_METRICS=True, GUARD_METRICS_PUBLIC=True)
    token, _ = key(api, "timed")
    assert gets(api, token, 20) == {200: 20}
    # One lease of 250 units: the first request waited for it, the other 19 did not.
    assert "\nguard_limiter_seconds_count 1.0\n" in api.client.get("/metrics").text
