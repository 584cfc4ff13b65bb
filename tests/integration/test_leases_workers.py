"""Quota leases with real gunicorn workers on one real redis-server: two app processes
("hosts") of four workers each, clients sending four times a key's limit.

Never over: the requests admitted in a window are at most its limit, for small, middling
and large limits and for two windows leased together. Close to it: at least the limit
less one unit per process. Round trips for the limits are counted as the script calls
Redis served (``EVALSHA``), per authenticated request sent; timings are not asserted.
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import limits
import limits.storage
import limits.strategies
import pytest
import redis

from guard import Keys, TokenCodec
from stores import RedisStore
from tests.conftest import PEPPER, SECRET
from tests.gunicorn import Gunicorn

pytestmark = pytest.mark.redis
WORKERS = 4
HOSTS = 2
#: The processes that may each hold a unit unspent at the end of a window.
PROCESSES = WORKERS * HOSTS


def hosts(redis_url: str, count: int) -> list[Gunicorn]:
    started: list[Gunicorn] = []
    try:
        for _ in range(count):
            started.append(
                Gunicorn(
                    WORKERS,
                    GUARD_STORE_URL=redis_url,
                    GUARD_RATELIMIT_STORAGE_URL=redis_url,
                    GUARD_STORE_CACHE_TTL="3600",
                    GUARD_FAILED_AUTH_LIMIT="100000/minute",
                )
            )
    except BaseException:
        for server in started:
            server.stop()
        raise
    return started


@pytest.fixture
def two_hosts(redis_url: str) -> Iterator[tuple[list[Gunicorn], Keys, redis.Redis]]:
    servers = hosts(redis_url, HOSTS)
    keys = Keys(RedisStore(redis_url), TokenCodec([SECRET], [PEPPER]))
    admin = redis.Redis.from_url(redis_url)
    yield servers, keys, admin
    for server in servers:
        server.stop()
    keys.close()
    admin.close()


def answer(url: str, token: str) -> tuple[int, str]:
    """The status and the ``RateLimit`` header of an authenticated GET."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), response.headers.get("RateLimit", "")
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("RateLimit", "")


def load(servers: list[Gunicorn], token: str, count: int) -> list[tuple[float, int, str]]:
    """``count`` GETs spread over every host by 16 clients: (received at, status, header)."""
    urls = [f"{server.url}/orders" for server in servers]

    def one(n: int) -> tuple[float, int, str]:
        status, header = answer(urls[n % len(urls)], token)
        return time.time(), status, header

    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(one, range(count)))


def admitted_per_window(answers: list[tuple[float, int, str]], policy: str) -> list[int]:
    """Admitted requests grouped by the window of ``policy`` they were counted in: each
    answer says when that window resets, and windows of one key end a window apart."""
    ends = []
    for received, status, header in answers:
        if status == 200:
            match = re.search(rf'"{policy}";r=\d+;t=(\d+)', header)
            assert match, header
            ends.append(received + int(match.group(1)))
    groups: list[list[float]] = []
    for end in sorted(ends):
        if groups and end - groups[-1][-1] < 10:
            groups[-1].append(end)
        else:
            groups.append([end])
    return [len(group) for group in groups]


def evalsha_calls(admin: redis.Redis) -> int:
    stats = admin.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


@pytest.mark.parametrize("limit", [10, 400, 5000])
def test_a_key_sent_four_times_its_limit_is_never_admitted_over_it(
    two_hosts: tuple[list[Gunicorn], Keys, redis.Redis], limit: int
) -> None:
    servers, keys, _ = two_hosts
    token, _ = keys.create("flood", scopes=["orders:read"], rate_limit=f"{limit}/minute")
    answers = load(servers, token, 4 * limit)
    assert {status for _, status, _ in answers} <= {200, 429}
    windows = admitted_per_window(answers, "key")
    print(f"{limit}/minute, {4 * limit} sent over {PROCESSES} processes: admitted {windows}")
    for admitted in windows:
        assert limit - PROCESSES <= admitted <= limit


def test_two_windows_are_leased_together_and_neither_is_exceeded(
    two_hosts: tuple[list[Gunicorn], Keys, redis.Redis],
) -> None:
    servers, keys, _ = two_hosts
    # The hour binds before the minute does: the second window is leased as the first.
    token, _ = keys.create("two", scopes=["orders:read"], rate_limit="1000/minute;400/hour")
    answers = load(servers, token, 1600)
    admitted = sum(1 for _, status, _ in answers if status == 200)
    assert 400 - PROCESSES <= admitted <= 400
    assert admitted_per_window(answers, "key") == [admitted]


def test_at_a_tenth_of_its_limit_a_key_waits_for_redis_once_in_twenty_requests_or_less(
    two_hosts: tuple[list[Gunicorn], Keys, redis.Redis],
) -> None:
    servers, keys, admin = two_hosts
    token, _ = keys.create("light", scopes=["orders:read"], rate_limit="5000/minute")
    before = evalsha_calls(admin)
    answers = load(servers, token, 500)
    assert {status for _, status, _ in answers} == {200}
    trips = (evalsha_calls(admin) - before) / len(answers)
    print(f"a tenth of 5000/minute over {PROCESSES} processes: {trips:.3f} round trips/request")
    assert trips <= 0.05


def test_at_its_limit_through_four_workers_a_key_waits_once_in_five_requests_or_less(
    redis_url: str,
) -> None:
    [server] = hosts(redis_url, 1)
    keys = Keys(RedisStore(redis_url), TokenCodec([SECRET], [PEPPER]))
    admin = redis.Redis.from_url(redis_url)
    try:
        token, _ = keys.create("busy", scopes=["orders:read"], rate_limit="400/minute")
        before = evalsha_calls(admin)
        answers = load([server], token, 400)
        admitted = sum(1 for _, status, _ in answers if status == 200)
        trips = (evalsha_calls(admin) - before) / len(answers)
        print(f"400/minute at its limit, {WORKERS} workers: admitted {admitted}, {trips:.3f} trips")
        # Exactly the limit sent: the last requests may reach workers whose leases are
        # drained while others still hold units, so only the ceiling is certain here.
        assert admitted <= 400
        assert trips <= 0.2
    finally:
        server.stop()
        keys.close()
        admin.close()


def remaining(redis_url: str, limit: str, key_id: str) -> int:
    """What ``limits`` itself reads as left in the key's window: the counters leases
    take from are the limits' own."""
    storage = limits.storage.RedisStorage(redis_url)
    item = limits.parse(limit)
    return int(
        limits.strategies.FixedWindowRateLimiter(storage)
        .get_window_stats(item, "key", key_id)
        .remaining
    )


def test_workers_that_stop_give_their_unspent_units_back(redis_url: str) -> None:
    [server] = hosts(redis_url, 1)
    keys = Keys(RedisStore(redis_url), TokenCodec([SECRET], [PEPPER]))
    try:
        token, record = keys.create("leaving", scopes=["orders:read"], rate_limit="5000/minute")
        answers = load([server], token, 200)
        assert {status for _, status, _ in answers} == {200}
        assert remaining(redis_url, "5000/minute", record.key_id) < 5000 - 200  # leased
    finally:
        server.stop()  # SIGTERM: a graceful stop
        keys.close()
    assert remaining(redis_url, "5000/minute", record.key_id) == 5000 - 200
