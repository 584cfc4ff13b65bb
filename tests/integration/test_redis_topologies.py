"""The key store and the limiter on a real Sentinel and a real Cluster, failovers included."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence

import pytest

from stores import KeyRecord, RedisStore, from_url
from stores.testing import MakeStore, OwnerStoreContract, WritableStoreContract
from tests.conftest import Api
from tests.redis_topologies import ClusterSetup, SentinelSetup

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def sentinel() -> Iterator[SentinelSetup]:
    setup = SentinelSetup()
    yield setup
    setup.close()


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterSetup]:
    setup = ClusterSetup()
    yield setup
    setup.close()


def stores_on(url: str) -> Iterator[MakeStore]:
    """Opens stores on ``url``, each holding the records given; closes them after."""
    opened: list[RedisStore] = []

    def make(records: Sequence[KeyRecord]) -> RedisStore:
        store = from_url(url)
        assert isinstance(store, RedisStore)
        opened.append(store)
        store.save(*records)
        return store

    yield make
    for store in opened:
        store.close()


class TestSentinelStore(WritableStoreContract, OwnerStoreContract):
    @pytest.fixture
    def make_store(self, sentinel: SentinelSetup) -> Iterator[MakeStore]:
        with sentinel.master.client() as master:
            master.flushall()
        yield from stores_on(sentinel.url)


class TestClusterStore(WritableStoreContract, OwnerStoreContract):
    @pytest.fixture
    def make_store(self, cluster: ClusterSetup) -> Iterator[MakeStore]:
        cluster.flush()
        yield from stores_on(cluster.url)


def test_cluster_store_keeps_every_key_in_one_slot(cluster: ClusterSetup) -> None:
    store = from_url(cluster.url, prefix="svc:")
    assert isinstance(store, RedisStore)
    assert store.prefix == "{svc}:"
    store.close()


@pytest.mark.parametrize("topology", ["sentinel", "cluster"])
def test_guard_limits_exactly_on_sentinel_and_cluster(
    topology: str, request: pytest.FixtureRequest
) -> None:
    setup = request.getfixturevalue(topology)
    url = setup.url
    api = Api(GUARD_STORE_URL=url, GUARD_RATELIMIT_STORAGE_URL=url, GUARD_RATE_LIMIT="3/minute")
    try:
        token = api.issue(f"limits-{time.monotonic_ns()}")
        statuses = [
            api.client.get("/orders", headers=api.bearer(token)).status_code for _ in range(5)
        ]
    finally:
        api.close()
    assert statuses == [200, 200, 200, 429, 429]


@pytest.mark.parametrize("topology", ["sentinel", "cluster"])
def test_quotas_and_owners_count_on_sentinel_and_cluster(
    topology: str, request: pytest.FixtureRequest
) -> None:
    setup = request.getfixturevalue(topology)
    url = setup.url
    api = Api(GUARD_STORE_URL=url, GUARD_RATELIMIT_STORAGE_URL=url, GUARD_RATE_LIMIT="100/minute")
    owner = f"owner-{time.monotonic_ns()}"
    try:
        with api.app.app_context():
            api.guard.keys.set_owner(owner, rate_limit="4/minute", quota=3)
        first = api.issue(f"a-{owner}", owner=owner, quota=2)
        second = api.issue(f"b-{owner}", owner=owner)
        answers = [
            api.client.get("/orders", headers=api.bearer(token))
            for token in (first, first, first, second, second)
        ]
    finally:
        api.close()
    # The key's quota of 2, then the owner's of 3, shared; refused ones spend nothing.
    assert [a.status_code for a in answers] == [200, 200, 429, 200, 429]
    assert [a.json["error"] for a in answers if a.status_code == 429] == [
        "quota_exceeded",
        "quota_exceeded",
    ]


@pytest.mark.parametrize("topology", ["sentinel", "cluster"])
def test_route_limits_count_on_sentinel_and_cluster(
    topology: str, request: pytest.FixtureRequest
) -> None:
    """Flask-Limiter (``guard.limiter``) connects with the guard's options there too."""
    url = request.getfixturevalue(topology).url
    api = Api(GUARD_STORE_URL=url, GUARD_RATELIMIT_STORAGE_URL=url)
    # A fresh counter (Flask-Limiter's key names the endpoint) on servers kept per module.
    endpoint = f"limited_{time.monotonic_ns()}"
    route = f"/{endpoint}"

    @api.app.get(route, endpoint=endpoint)
    @api.guard.exempt
    @api.guard.limiter.limit("2/minute")
    def limited() -> str:
        return "ok"

    try:
        statuses = [api.client.get(route).status_code for _ in range(3)]
    finally:
        api.close()
    assert statuses == [200, 200, 429]


def hammer(api: Api, token: str, stop: threading.Event, seen: Counter[int]) -> None:
    while not stop.is_set():
        seen[api.client.get("/orders", headers=api.bearer(token)).status_code] += 1
        time.sleep(0.005)


@pytest.mark.parametrize("topology", ["sentinel", "cluster"])
def test_failover_during_traffic_refuses_or_serves_and_then_recovers(
    topology: str, request: pytest.FixtureRequest
) -> None:
    setup = request.getfixturevalue(topology)
    url = setup.url
    api = Api(
        GUARD_STORE_URL=url,
        GUARD_RATELIMIT_STORAGE_URL=url,
        GUARD_STORE_CACHE_TTL=0,
        GUARD_RATE_LIMIT="1000000/minute",
    )
    token = api.issue(f"failover-{time.monotonic_ns()}")
    store = api.app.extensions["guard"].keys.store
    # The failover must not lose the key: wait until a replica holds it.
    assert store.client.wait(1, 5000) >= 1
    seen: Counter[int] = Counter()
    stop = threading.Event()
    worker = threading.Thread(target=hammer, args=(api, token, stop, seen))
    worker.start()
    try:
        time.sleep(0.3)
        if topology == "sentinel":
            setup.fail_over()
        else:
            setup.fail_over(f"guard:key:{token[3:19]}")
        # Service comes back by itself: a run of successes after the failover.
        deadline = time.monotonic() + 30
        while api.client.get("/orders", headers=api.bearer(token)).status_code != 200:
            assert time.monotonic() < deadline, f"no recovery after the failover: {seen}"
            time.sleep(0.1)
    finally:
        stop.set()
        worker.join()
        api.close()
    # During the failover a request is served or refused with 503: never let through
    # wrongly, never a crash.
    assert set(seen) <= {200, 503}, seen
    assert seen[200] > 0
