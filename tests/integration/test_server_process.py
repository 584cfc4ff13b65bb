"""The demo API served by gunicorn in a separate process, several workers, real Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from guard import Keys, TokenCodec
from stores import MemoryStore
from stores.env import render_records
from tests.conftest import PEPPER, SECRET
from tests.redis_server import free_port

pytestmark = pytest.mark.redis
ROOT = Path(__file__).resolve().parents[2]


def get(url: str, token: str | None = None) -> int:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


@pytest.fixture
def served(redis_url: str) -> Iterator[tuple[str, str]]:
    """The demo app under gunicorn (3 workers), its keys in env://, limits in Redis."""
    keys = Keys(MemoryStore(), TokenCodec([SECRET], [PEPPER]))
    token, _ = keys.create("ci", scopes=["orders:read"], rate_limit="5/minute")
    port = free_port()
    env = {
        **os.environ,
        "GUARD_SECRET_KEY": SECRET,
        "GUARD_PEPPER": PEPPER,
        "GUARD_STORE_URL": "env://GUARD_KEYS",
        "GUARD_KEYS": render_records(keys.store.records()),
        "GUARD_RATELIMIT_STORAGE_URL": redis_url,
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers",
            "3",
            "--bind",
            f"127.0.0.1:{port}",
            "--chdir",
            str(ROOT / "scripts"),
            "demo_app:create_app()",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                get(f"{url}/health")
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    pytest.fail("gunicorn did not start")
                time.sleep(0.1)
        yield url, token
    finally:
        process.terminate()
        process.wait(10)


def test_real_server_answers_200_401_403_and_a_shared_429(served: tuple[str, str]) -> None:
    url, token = served
    assert get(f"{url}/health") == 200
    assert get(f"{url}/orders") == 401
    assert get(f"{url}/orders", "gk_" + "0" * 16 + ".x.y") == 401
    statuses = [get(f"{url}/orders", token) for _ in range(8)]
    # Five per minute across all three workers, because the counter lives in Redis.
    assert statuses == [200] * 5 + [429] * 3
