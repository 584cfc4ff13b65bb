"""Requests per second under gunicorn on loopback, measured with wrk.

    python -m bench.http [--duration 5] [--connections 16] [--workers 2] [--only a,b]

Each app of ``bench.apps`` is served by gunicorn (sync workers) on a free loopback port
in turn and loaded by wrk with its authenticated GET; keys are made before the run and
shared by every worker (an ``env://`` store stands in for memory, where workers would
each have their own). Requests carry ``X-Forwarded-Proto: https`` as from a TLS proxy,
which the guard trusts through ``GUARD_TRUSTED_PROXIES=1``. Needs wrk (Debian: wrk).
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench.apps import APPS, PEPPER, SECRET_KEY
from guard import Keys, TokenCodec
from stores import MemoryStore, RedisStore
from stores.env import render_records
from tests.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[1]
PROXY = {"X-Forwarded-Proto": "https"}


def prepare(name: str, redis_url: str) -> tuple[dict[str, str], dict[str, str]]:
    """Environment for the workers, and the headers wrk sends."""
    env = {"BENCH_APP": name, "BENCH_REDIS_URL": redis_url}
    if name in ("bare", "floor"):
        return env, PROXY
    if name.startswith("peer"):
        token = secrets.token_urlsafe(32)
        return {**env, "BENCH_TOKEN": token}, {**PROXY, "Authorization": f"Bearer {token}"}
    codec = TokenCodec([SECRET_KEY], [PEPPER])
    env["GUARD_TRUSTED_PROXIES"] = "1"
    if name == "guard_redis":
        keys = Keys(RedisStore(redis_url), codec)
        token, _ = keys.create("bench", scopes=["data:read"])
        keys.close()
    else:
        keys = Keys(MemoryStore(), codec)
        token, _ = keys.create("bench", scopes=["data:read"])
        env |= {
            "GUARD_STORE_URL": "env://GUARD_KEYS",
            "GUARD_KEYS": render_records(keys.store.records()),
        }
    return {**env, "BENCH_TOKEN": token}, {**PROXY, "Authorization": f"Bearer {token}"}


def serve(env: dict[str, str], workers: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(  # noqa: S603 - our own arguments
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers",
            str(workers),
            "--bind",
            f"127.0.0.1:{port}",
            "bench.wsgi:app",
        ],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return process, f"http://127.0.0.1:{port}/data"


def wait_for_200(url: str, headers: dict[str, str], process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        request = urllib.request.Request(url, headers=headers)  # noqa: S310 - loopback http
        try:
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            raise SystemExit(f"{url} never answered 200")
        time.sleep(0.1)


def load(url: str, headers: dict[str, str], duration: int, connections: int) -> tuple[float, int]:
    """Requests per second, and how many answers were not 2xx."""
    command = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    output = subprocess.run(  # noqa: S603 - our own arguments
        [*command, url], capture_output=True, text=True, check=True, timeout=duration + 30
    ).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    assert rate is not None, output
    return float(rate.group(1)), int(errors.group(1)) if errors else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", help="comma-separated app names")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    server = RedisServer()
    server.start()
    rates: dict[str, tuple[float, int]] = {}
    try:
        for name in args.only.split(",") if args.only else list(APPS):
            env, headers = prepare(name, server.url)
            process, url = serve(env, args.workers)
            try:
                wait_for_200(url, headers, process)
                rates[name] = load(url, headers, args.duration, args.connections)
            finally:
                process.terminate()
                process.wait(15)
    finally:
        server.close()
    base = rates.get("bare", (0.0, 0))[0]
    print(f"{'app':<12} {'req/s':>9} {'x bare':>7} {'non-2xx':>8}")
    for name, (rate, errors) in rates.items():
        ratio = f"{rate / base:7.2f}" if base else "      -"
        print(f"{name:<12} {rate:9.0f} {ratio} {errors:8d}")
    print(
        f"(gunicorn, {args.workers} sync workers; wrk, {args.connections} connections, "
        f"{args.duration}s each, loopback)"
    )


if __name__ == "__main__":
    main()
