"""`guard keys disable ID`, run as an operator runs it, reaches both of two gunicorn
workers on a real Redis within a second, and `enable` brings the key back as fast
(issue 24: "the change reaches every worker as fast as a revocation")."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from guard import Keys, TokenCodec
from stores import RedisStore
from tests.conftest import PEPPER, SECRET
from tests.gunicorn import Gunicorn
from tests.integration.shared_workers import CACHED_FOR_AN_HOUR, burst

pytestmark = pytest.mark.redis
GUARD = Path(sys.executable).with_name("guard")  # the console script pip installed


def seconds_until_every_answer_is(url: str, token: str, status: int) -> float:
    """Bursts until every request answers ``status``: the seconds from now to the last
    request that answered otherwise (0 when none did)."""
    since = last_other = time.monotonic()
    while True:
        statuses = set(burst(url, token, 32))
        if statuses == {status}:
            return last_other - since
        last_other = time.monotonic()
        assert last_other - since < 30, f"not every worker answers {status}: {statuses}"


def test_disable_and_enable_reach_both_workers_within_a_second(redis_url: str) -> None:
    server = Gunicorn(2, GUARD_STORE_URL=redis_url, **CACHED_FOR_AN_HOUR)
    keys = Keys(RedisStore(redis_url), TokenCodec([SECRET], [PEPPER]))
    try:
        token, record = keys.create("incident", scopes=["orders:read"])
        url = f"{server.url}/orders"
        assert set(burst(url, token, 64)) == {200}  # both workers hold it, cached an hour
        assert len(server.worker_pids()) == 2

        for command, status in (("disable", 401), ("enable", 200)):
            env = {"PATH": "/usr/bin:/bin", "GUARD_SECRET_KEY": SECRET, "GUARD_PEPPER": PEPPER}
            done = subprocess.run(
                [str(GUARD), "--store", redis_url, "keys", command, record.key_id],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
            # Measured from the command's exit (its write is its last step): the cache
            # TTL is an hour, so only the invalidation explains a change this soon.
            delay = seconds_until_every_answer_is(url, token, status)
            assert delay < 1.0, f"{command} reached both workers after {delay:.3f}s"
    finally:
        server.stop()
        keys.close()
