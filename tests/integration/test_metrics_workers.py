"""Metrics under gunicorn: two workers on one Redis, counted in prometheus_client's
multiprocess mode, and summed in every scrape whichever worker answers it."""

from __future__ import annotations

import socket
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from guard import Keys, TokenCodec
from stores import RedisStore
from tests.conftest import PEPPER, SECRET
from tests.gunicorn import Gunicorn, get

pytestmark = pytest.mark.redis


def requests_total(url: str, token: str) -> dict[tuple[str, str], float]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.labels["outcome"], sample.labels["reason"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "guard_requests_total"
    }


def test_counts_are_summed_across_workers(redis_url: str, tmp_path: Path) -> None:
    server = Gunicorn(
        2,
        GUARD_STORE_URL=redis_url,
        GUARD_RATELIMIT_STORAGE_URL=redis_url,
        GUARD_METRICS="true",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path),
    )
    keys = Keys(RedisStore(redis_url), TokenCodec([SECRET], [PEPPER]))
    try:
        token, _ = keys.create("alice", scopes=["orders:read"], rate_limit="3/minute")
        scraper, _ = keys.create("prometheus", scopes=["metrics:read"])
        # Sent at once, so both workers take some: 3 allowed, one over the limit, one
        # forged token.
        tokens = [token] * 4 + [token[:-2] + "xx"]
        with ThreadPoolExecutor(len(tokens)) as pool:
            statuses = sorted(pool.map(lambda t: get(f"{server.url}/orders", t), tokens))
        assert statuses == [200, 200, 200, 401, 429]
        # Each worker keeps its own file; the scrape, served by either, sums them. Until
        # both have counted something, more health checks (exempt, counted apart), each
        # sent while the other worker is held on a request cut short: a sync worker serves
        # one connection at a time, so the kernel cannot hand them all to one worker.
        for _ in range(20):
            workers = {path.name for path in tmp_path.glob("counter_*.db")}
            if len(workers) == 2:
                break
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as held:
                held.sendall(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n")
                time.sleep(0.2)  # taken by one worker, which now waits for the rest
                assert get(f"{server.url}/health") == 200
                held.sendall(b"\r\n")
                assert held.recv(64).startswith(b"HTTP/1.")
        assert len(workers) == 2
        counted = requests_total(f"{server.url}/metrics", scraper)
        assert counted[("allowed", "valid")] == 3
        assert counted[("denied", "rate_limited")] == 1
        assert counted[("denied", "malformed")] == 1
        # The start-up health checks, exempt, are counted apart; the rest are at 0.
        assert {labels for labels, value in counted.items() if value} - {("allowed", "exempt")} == {
            ("allowed", "valid"),
            ("denied", "rate_limited"),
            ("denied", "malformed"),
        }
        assert get(f"{server.url}/metrics") == 401
    finally:
        server.stop()
        keys.close()
