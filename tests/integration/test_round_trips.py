"""Redis round trips per request: an authenticated request spends its key's lease in
process and waits for Redis only to take a new one (counted on the client), and a flood
of forged tokens costs no command at all (counted by the real server)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import redis.connection

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


class RoundTrips:
    """Round trips this process sends to Redis, counted on the client: every packed
    command redis-py sends (a script call, a pipeline) is one."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        send = redis.connection.AbstractConnection.send_packed_command

        def counted(connection: Any, command: Any, check_health: bool = True) -> None:
            self.count += 1
            send(connection, command, check_health)

        monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counted)


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> RoundTrips:
    return RoundTrips(monkeypatch)


@pytest.fixture
def limited(redis_url: str) -> Iterator[Callable[[str], Api]]:
    """Makes an app on Redis whose keys have the limit given; closes them after."""
    made: list[Api] = []

    def make(limit: str) -> Api:
        made.append(
            Api(
                GUARD_STORE_URL=redis_url,
                GUARD_RATELIMIT_STORAGE_URL=redis_url,
                GUARD_STORE_CACHE_TTL=60,
                GUARD_RATE_LIMIT=limit,
                GUARD_FAILED_AUTH_LIMIT="1000000/minute",
            )
        )
        return made[-1]

    yield make
    for api in made:
        api.close()


def statuses(api: Api, token: str, count: int) -> Counter[int]:
    return Counter(
        api.client.get("/orders", headers=api.bearer(token)).status_code for _ in range(count)
    )


def test_a_key_at_a_tenth_of_its_limit_waits_for_redis_at_most_once_in_20_requests(
    limited: Callable[[str], Api], round_trips: RoundTrips
) -> None:
    api = limited("1000/minute")
    token = api.issue()
    # The record cache and the script cache warm up; the first lease is taken.
    assert statuses(api, token, 1) == {200: 1}
    before = round_trips.count
    assert statuses(api, token, 99) == {200: 99}
    assert (round_trips.count - before) / 99 <= 0.05


def test_a_key_driven_past_its_limit_is_admitted_exactly_its_limit_in_few_round_trips(
    limited: Callable[[str], Api], round_trips: RoundTrips
) -> None:
    api = limited("200/minute")
    token = api.issue()
    before = round_trips.count
    assert statuses(api, token, 400) == {200: 200, 429: 200}
    # Leases shrink as the window fills; refusals once it is full cost none.
    assert (round_trips.count - before) / 400 <= 0.2


def test_every_window_of_a_key_is_leased_together(limited: Callable[[str], Api]) -> None:
    api = limited("1000/minute;30/day")
    token = api.issue()
    assert statuses(api, token, 60) == {200: 30, 429: 30}
    refused = api.client.get("/orders", headers=api.bearer(token))
    assert refused.headers["RateLimit"].endswith(f"r=0;t={refused.headers['Retry-After']}")


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
