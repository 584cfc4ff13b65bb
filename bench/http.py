"""Requests per second under gunicorn on loopback, measured with wrk, interleaved.

    python -m bench.http [--rounds 7] [--duration 2] [--connections 16] [--workers 2]
                         [--only a,b] [--redis-delay-ms 1]

Every app of ``bench.apps`` is served by its own gunicorn (sync workers) on a free
loopback port, all at once; then round by round wrk loads each app in turn with its
authenticated GET, every other round in reverse order. The table shows each app's
median rate and the medians of its per-round ratios to bare Flask and to the
hand-stitched stack on the same storage: a shared machine drifts by +-20% within a
minute, and a ratio taken within one round sees much the same drift on both sides.

Keys are made before the run and shared by every worker (an ``env://`` store stands in
for memory, where workers would each have their own). Requests carry
``X-Forwarded-Proto: https`` as from a TLS proxy, which the guard trusts through
``GUARD_TRUSTED_PROXIES=1``. Needs wrk (Debian: wrk).

The ``scripts`` column is the Lua script calls Redis served per request (``EVALSHA``,
from its ``INFO commandstats``): the round trips the rate limits cost, which quota leases
keep near zero. With ``--redis-delay-ms`` the apps reach Redis through
:mod:`bench.delay`, as from another host.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import redis

from bench.apps import APPS, PEPPER, SECRET_KEY
from bench.delay import DelayProxy
from guard import Keys, TokenCodec
from stores import MemoryStore, RedisStore
from stores.env import render_records
from tests.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[1]
PROXY = {"X-Forwarded-Proto": "https"}
#: Each guard app beside the hand-stitched stack on the same storage.
PEERS = {"guard": "peer", "guard_redis": "peer_redis"}
#: The goals the issues set, as (app, reference, at least): the rate of ``app`` over that
#: of ``reference``, a median of per-round ratios.
TARGETS = (("guard_redis", "guard", 0.9, "Redis vs memory under gunicorn (issue 22)"),)


def prepare(name: str, redis_url: str) -> tuple[dict[str, str], dict[str, str]]:
    """Environment for the workers, and the headers wrk sends."""
    env = {"BENCH_APP": name, "BENCH_REDIS_URL": redis_url}
    if name in ("bare", "floor"):
        return env, PROXY
    if name.startswith("peer") or name == "limit":
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


def load(
    url: str, headers: dict[str, str], duration: int, connections: int
) -> tuple[float, int, int]:
    """Requests per second, how many answers were not 2xx, and how many were sent."""
    command = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    output = subprocess.run(  # noqa: S603 - our own arguments
        [*command, url], capture_output=True, text=True, check=True, timeout=duration + 30
    ).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    sent = re.search(r"(\d+) requests in", output)
    assert rate is not None and sent is not None, output
    return float(rate.group(1)), int(errors.group(1)) if errors else 0, int(sent.group(1))


def script_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


def _ratio(values: list[float], base: list[float] | None) -> str:
    """The median of per-round ratios to ``base``: both sides of a ratio saw one round."""
    if not base:
        return "      -"
    return f"{statistics.median(v / b for v, b in zip(values, base, strict=True)):7.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--duration", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", help="comma-separated app names")
    parser.add_argument("--redis-delay-ms", type=float, help="round trip added to Redis's")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    names = args.only.split(",") if args.only else list(APPS)
    server = RedisServer()
    server.start()
    admin = redis.Redis.from_url(server.url)
    proxy = DelayProxy(server.url, args.redis_delay_ms) if args.redis_delay_ms else None
    redis_url = proxy.url if proxy else server.url
    processes: list[subprocess.Popen[bytes]] = []
    rates: dict[str, list[float]] = {name: [] for name in names}
    errors = dict.fromkeys(names, 0)
    scripts = dict.fromkeys(names, 0)
    sent = dict.fromkeys(names, 0)
    try:
        targets: dict[str, tuple[str, dict[str, str]]] = {}
        for name in names:
            env, headers = prepare(name, redis_url)
            process, url = serve(env, args.workers)
            processes.append(process)
            wait_for_200(url, headers, process)
            targets[name] = (url, headers)
        for round_ in range(args.rounds):
            # Every other round in reverse: a drift during a round then favours no app.
            order = list(targets) if round_ % 2 == 0 else list(reversed(targets))
            for name in order:
                url, headers = targets[name]
                before = script_calls(admin)
                rate, failed, requests = load(url, headers, args.duration, args.connections)
                scripts[name] += script_calls(admin) - before
                sent[name] += requests
                rates[name].append(rate)
                errors[name] += failed
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(15)
        if proxy is not None:
            proxy.close()
        admin.close()
        server.close()
    print(f"{'app':<12} {'req/s':>9} {'x bare':>7} {'x peer':>7} {'min':>7} {'max':>7}", end="")
    print(f" {'non-2xx':>8} {'scripts':>8}")
    for name, values in rates.items():
        peer = PEERS.get(name, "")
        print(
            f"{name:<12} {statistics.median(values):9.0f} {_ratio(values, rates.get('bare'))} "
            f"{_ratio(values, rates.get(peer))} {min(values):7.0f} {max(values):7.0f} "
            f"{errors[name]:8d} {scripts[name] / max(1, sent[name]):8.3f}"
        )
    print(
        f"(gunicorn, {args.workers} sync workers; wrk, {args.connections} connections; "
        f"{args.rounds} rounds of {args.duration}s per app, interleaved; medians; x bare and "
        "x peer (the hand-stitched stack on the same storage) are medians of per-round ratios; "
        "loopback)"
    )
    for app, reference, goal, what in TARGETS:
        if app in rates and reference in rates:
            pairs = zip(rates[app], rates[reference], strict=True)
            ratio = statistics.median(a / b for a, b in pairs)
            verdict = "met" if ratio >= goal else "NOT met"
            print(f"{app} / {reference}: {ratio:.2f} (goal >= {goal}, {verdict}): {what}")


if __name__ == "__main__":
    main()
