"""Microseconds per token verification: memory and Redis stores, cache warm and cold.

    python -m bench.verify [--redis-url URL] [--calls N]

Without ``--redis-url`` it starts a redis-server of its own on a free loopback port.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from guard import Keys, TokenCodec
from stores import MemoryStore, RedisStore
from tests.redis_server import RedisServer


def per_call(fn: Callable[[], object], calls: int, rounds: int = 5) -> float:
    """Median over ``rounds`` of the mean µs per call."""
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis-url")
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args()
    server = None
    if args.redis_url is None:
        server = RedisServer()
        server.start()
        args.redis_url = server.url
    codec = TokenCodec(["s" * 32], ["p" * 32])
    try:
        memory = Keys(MemoryStore(), codec)
        token, _ = memory.create("bench")
        forged = TokenCodec(["f" * 32], ["p" * 32]).issue("0123456789abcdef").token
        warm = Keys(RedisStore(args.redis_url, cache_ttl=60), codec)
        cold = Keys(RedisStore(args.redis_url, cache_ttl=0), codec)
        redis_token, _ = warm.create("bench")
        warm.verify(redis_token)
        time.sleep(0.2)  # let the invalidation listener subscribe, so the cache is used
        rows = [
            ("memory store", per_call(lambda: memory.verify(token), args.calls)),
            ("forged token (no store call)", per_call(lambda: memory.verify(forged), args.calls)),
            ("redis store, cache warm", per_call(lambda: warm.verify(redis_token), args.calls)),
            (
                "redis store, cache cold (1 GET)",
                per_call(lambda: cold.verify(redis_token), args.calls),
            ),
        ]
        width = max(len(name) for name, _ in rows)
        print(f"{'verification':<{width}}  µs/call")
        for name, micros in rows:
            print(f"{name:<{width}}  {micros:7.1f}")
    finally:
        if server is not None:
            server.close()


if __name__ == "__main__":
    main()
