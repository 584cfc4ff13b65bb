"""Microseconds per token verification: memory, Redis and SQL stores, cache warm and cold.

    python -m bench.verify [--redis-url URL] [--postgres-url URL] [--calls N]

Without ``--redis-url`` it starts a redis-server of its own on a free loopback port, and
without ``--postgres-url`` a PostgreSQL server where Debian's binaries are installed (the
PostgreSQL rows are left out otherwise). SQLite runs on a file in a temporary directory.
A warm SQL store costs what a warm Redis one does: no query per verification.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import sqlalchemy as sa

from guard import Keys, TokenCodec
from stores import MemoryStore, RedisStore, from_url
from stores.sql import init_schema
from tests.postgres_server import PostgresServer, postgres_binaries
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


@contextlib.contextmanager
def sql_urls(postgres_url: str | None) -> Iterator[list[tuple[str, str]]]:
    """(name, URL) of each SQL database to measure, each with the store's table."""
    server = None
    if postgres_url is None:
        with contextlib.suppress(FileNotFoundError):
            postgres_binaries()
            server = PostgresServer()
            server.start()
            postgres_url = server.url
    with tempfile.TemporaryDirectory() as directory:
        urls = [("sqlite", f"sqlite:///{Path(directory) / 'keys.db'}")]
        if postgres_url is not None:
            urls.append(("postgresql", postgres_url))
        for _, url in urls:
            engine = sa.create_engine(url)
            init_schema(engine)
            engine.dispose()
        try:
            yield urls
        finally:
            if server is not None:
                server.close()


def sql_rows(codec: TokenCodec, urls: list[tuple[str, str]], calls: int) -> list[tuple[str, float]]:
    rows = []
    for name, url in urls:
        warm = Keys(from_url(url, cache_ttl=60), codec)
        cold = Keys(from_url(url, cache_ttl=0), codec)
        token, _ = warm.create("bench")
        warm.verify(token)
        time.sleep(0.2)  # PostgreSQL: let the listener start, so the cache is used
        rows.append((f"{name} store, cache warm", per_call(partial(warm.verify, token), calls)))
        cold_call = partial(cold.verify, token)
        rows.append((f"{name} store, cache cold (1 SELECT)", per_call(cold_call, calls)))
        warm.close()
        cold.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis-url")
    parser.add_argument("--postgres-url")
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args()
    server = None
    if args.redis_url is None:
        server = RedisServer()
        server.start()
        args.redis_url = server.url
    codec = TokenCodec(["s" * 32], ["p" * 32])
    try:
        with sql_urls(args.postgres_url) as urls:
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
                (
                    "forged token (no store call)",
                    per_call(lambda: memory.verify(forged), args.calls),
                ),
                ("redis store, cache warm", per_call(lambda: warm.verify(redis_token), args.calls)),
                (
                    "redis store, cache cold (1 GET)",
                    per_call(lambda: cold.verify(redis_token), args.calls),
                ),
                *sql_rows(codec, urls, args.calls),
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
