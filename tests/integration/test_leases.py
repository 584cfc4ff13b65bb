"""Quota leases in one process on a real redis-server: a lease is counted quota, so it
is spent through an outage and then the guard fails closed; an idle lease goes back."""

from __future__ import annotations

import time
from collections import Counter

import pytest

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


def test_an_idle_lease_goes_back_to_its_window(redis_url: str) -> None:
    api = Api(
        GUARD_STORE_URL=redis_url,
        GUARD_RATELIMIT_STORAGE_URL=redis_url,
        GUARD_RATE_LIMIT="1000/minute",
    )
    try:
        with api.app.app_context():
            token, record = api.guard.keys.create("idle", scopes=["orders:read"])
        key_id = record.key_id
        statuses = Counter(
            api.client.get("/orders", headers=api.bearer(token)).status_code for _ in range(10)
        )
        assert statuses == {200: 10}
        assert remaining(redis_url, "1000/minute", key_id) < 1000 - 10  # leased
        deadline = time.monotonic() + 30
        while remaining(redis_url, "1000/minute", key_id) != 1000 - 10:
            assert time.monotonic() < deadline, "the idle lease was never given back"
            time.sleep(0.2)
    finally:
        api.close()


def test_a_revoked_key_spends_no_lease(redis_url: str) -> None:
    # 5/minute in one process: every lease is one unit, so a unit spent shows at once.
    api = Api(
        GUARD_STORE_URL=redis_url,
        GUARD_RATELIMIT_STORAGE_URL=redis_url,
        GUARD_RATE_LIMIT="5/minute",
    )
    try:
        with api.app.app_context():
            token, record = api.guard.keys.create("revoked", scopes=["orders:read"])
        assert api.client.get("/orders", headers=api.bearer(token)).status_code == 200
        with api.app.app_context():
            api.guard.keys.revoke(record.key_id)
        for _ in range(5):
            assert api.client.get("/orders", headers=api.bearer(token)).status_code == 401
        assert remaining(redis_url, "5/minute", record.key_id) == 4
    finally:
        api.close()


def test_the_limiter_metric_times_the_waits_for_a_lease_not_the_units_spent(
    redis_url: str,
) -> None:
    api = Api(
        GUARD_STORE_URL=redis_url,
        GUARD_RATELIMIT_STORAGE_URL=redis_url,
        GUARD_RATE_LIMIT="1000/minute",
        GUARD_METRICS=True,
        GUARD_METRICS_PUBLIC=True,
    )
    try:
        token = api.issue()
        for _ in range(20):
            assert api.client.get("/orders", headers=api.bearer(token)).status_code == 200
        metrics = api.client.get("/metrics").text
    finally:
        api.close()
    # One lease of 250 units: the first request waited for it, the other 19 did not.
    assert "\nguard_limiter_seconds_count 1.0\n" in metrics
