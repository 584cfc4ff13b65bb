"""Gunicorn workers sharing a real store, as the Redis and the PostgreSQL tests drive
them: a revocation raced against bursts of requests, and a steady load across an
outage."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from tests.gunicorn import Gunicorn, get

#: The workers' settings under which only an invalidation explains a refusal within a
#: test: records cached for an hour, and limits that never turn a refusal into a 429.
CACHED_FOR_AN_HOUR = {
    "GUARD_STORE_CACHE_TTL": "3600",
    "GUARD_FAILED_AUTH_LIMIT": "100000/minute",
    "GUARD_RATE_LIMIT": "100000/minute",
}


def burst(url: str, token: str, count: int, parallel: int = 16) -> list[int]:
    with ThreadPoolExecutor(parallel) as pool:
        return list(pool.map(lambda _: get(url, token), range(count)))


def seconds_until_every_worker_refuses(url: str, token: str, revoke: Callable[[], object]) -> float:
    """Has every worker cache the key, calls ``revoke()``, then sends bursts until all
    are refused: the seconds from the revocation to the last request still accepted."""
    assert set(burst(url, token, 64)) == {200}  # every worker caches it
    revoked_at = time.monotonic()
    revoke()
    last_accepted = revoked_at
    while True:
        statuses = burst(url, token, 32)
        if 200 in statuses:
            last_accepted = time.monotonic()
        elif set(statuses) == {401}:
            return last_accepted - revoked_at
        assert time.monotonic() - revoked_at < 30, "the revocation did not reach every worker"


@contextmanager
def under_load(url: str, token: str) -> Iterator[list[tuple[float, int]]]:
    """Four clients sending requests until the block ends; yields the ``(time, status)``
    of every answer, filled in as they come. A request that hangs or fails fails the
    test (get() raises in its thread)."""
    seen: list[tuple[float, int]] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            status = get(url, token)
            seen.append((time.monotonic(), status))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        yield seen
    finally:
        stop.set()
        for thread in threads:
            thread.join()


@dataclasses.dataclass(frozen=True)
class Outage:
    """What the clients saw across an outage, and when it began, ended and was over."""

    answers: list[tuple[float, int]]
    stopped: float
    restarting: float
    recovered: float

    def statuses(self, after: float = 0.0, before: float = float("inf")) -> set[int]:
        return {status for at, status in self.answers if after < at < before}


def outage_under_load(
    server: Gunicorn,
    token: str,
    stop: Callable[[], object],
    start: Callable[[], object],
    down_for: float,
) -> Outage:
    """The store stopped for ``down_for`` seconds and started again under load, until a
    request succeeds again. Every answer was a success or a 503 (none let through
    without a check, no 500, no hang) and no worker crashed."""
    url = f"{server.url}/orders"
    pids = server.worker_pids()
    with under_load(url, token) as answers:
        time.sleep(0.5)
        stop()
        stopped = time.monotonic()
        time.sleep(down_for)
        restarting = time.monotonic()
        start()
        deadline = time.monotonic() + 30
        while get(url, token) != 200:
            assert time.monotonic() < deadline, f"no recovery: {Counter(s for _, s in answers)}"
            time.sleep(0.1)
        recovered = time.monotonic()
        time.sleep(0.5)
    outage = Outage(answers, stopped, restarting, recovered)
    assert outage.statuses() <= {200, 503}, Counter(status for _, status in answers)
    assert server.worker_pids() == pids, "a worker crashed"
    return outage
