"""Redis commands per request, counted by the real server: one for an authenticated
request in steady state, none for a flood of forged tokens."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.conftest import Api

pytestmark = pytest.mark.redis


def commands(client: redis.Redis) -> dict[str, int]:  # type: ignore[type-arg]
    stats = client.info("commandstats")
    return {name: int(value["calls"]) for name, value in stats.items()}


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    changed = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    changed.pop("cmdstat_info", None)
    return changed


@pytest.fixture
def redis_api(redis_url: str) -> Iterator[tuple[Api, redis.Redis]]:  # type: ignore[type-arg]
    api = Api(
        GUARD_STORE_URL=redis_url,
        GUARD_RATELIMIT_STORAGE_URL=redis_url,
        GUARD_STORE_CACHE_TTL=60,
        GUARD_RATE_LIMIT="1000000/minute",
        GUARD_FAILED_AUTH_LIMIT="1000000/minute",
    )
    client = redis.Redis.from_url(redis_url)
    yield api, client
    client.close()
    api.close()


def test_an_authenticated_request_costs_one_round_trip_in_steady_state(
    redis_api: tuple[Api, redis.Redis],  # type: ignore[type-arg]
) -> None:
    api, client = redis_api
    token = api.issue()
    for _ in range(3):  # warm the record cache and the script cache
        assert api.client.get("/orders", headers=api.bearer(token)).status_code == 200
    before = commands(client)
    for _ in range(50):
        assert api.client.get("/orders", headers=api.bearer(token)).status_code == 200
    counted = delta(before, commands(client))
    # One EVALSHA per request; commandstats also counts what the script runs inside
    # Redis (INCRBY, PTTL), which costs no round trip.
    assert counted.pop("cmdstat_evalsha") == 50
    assert set(counted) <= {"cmdstat_incrby", "cmdstat_pttl", "cmdstat_expire"}, counted


def test_a_flood_of_forged_tokens_costs_no_round_trip(
    redis_api: tuple[Api, redis.Redis],  # type: ignore[type-arg]
) -> None:
    api, client = redis_api
    token = api.issue()
    # Each differs from the token: another last signature character, another secret.
    last = "E" if token.endswith("A") else "A"
    other = "y" if token[20] == "x" else "x"
    mutated = [token[:-1] + last, token[:20] + other + token[21:]]
    forged = [*mutated, "gk_" + "0" * 16 + ".a.b", "x" * 80]
    before = commands(client)
    for candidate in forged * 50:
        assert api.client.get("/orders", headers=api.bearer(candidate)).status_code == 401
    assert delta(before, commands(client)) == {}
