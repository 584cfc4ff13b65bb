"""Cost per request of the guard beside bare Flask and the hand-stitched stack, in one
process, interleaved round by round.

    python -m bench.run [--rounds 7] [--calls 2000] [--only guard,bare] [--redis-url URL]
                        [--redis-delay-ms 1]

Each app's WSGI callable is called with the same authenticated GET, built before the
timed loop. Prints the median µs per request, the ratio to bare Flask, to ``limit`` (the
least work any guard with these features must do) and to the floor (bare Flask plus one
Redis round trip), Redis round trips per request counted on the
client, and Redis commands per request from the server's ``INFO commandstats``
(commands a Lua script runs inside Redis count there but cost no round trip).
Without ``--redis-url`` it starts a redis-server of its own on a free loopback port.
With ``--redis-delay-ms`` every app reaches Redis through :mod:`bench.delay`, which adds
that round trip: Redis on another host, where a round trip waited for shows.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis
import redis.connection
from werkzeug.test import EnvironBuilder

from bench.apps import APPS
from bench.delay import DelayProxy
from tests.redis_server import RedisServer

WSGI = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class RoundTrips:
    """Counts what redis-py sends: one packed send is one round trip (a pipeline too)."""

    def __init__(self) -> None:
        self.count = 0
        original: Callable[..., None] = redis.connection.AbstractConnection.send_packed_command

        def counted(connection: Any, command: Any, check_health: bool = True) -> None:
            self.count += 1
            original(connection, command, check_health)

        redis.connection.AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]


def server_commands(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


def call(app: WSGI, environ: dict[str, Any]) -> int:
    status: list[str] = []
    body = app(dict(environ), lambda s, h, e=None: status.append(s))
    for _ in body:
        pass
    close = getattr(body, "close", None)
    if close is not None:
        close()
    return int(status[0][:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--only", help="comma-separated app names")
    parser.add_argument("--redis-url")
    parser.add_argument("--redis-delay-ms", type=float, help="round trip added to Redis's")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(APPS)
    server = None
    if args.redis_url is None:
        server = RedisServer()
        server.start()
        args.redis_url = server.url
    try:
        if args.redis_delay_ms:
            with DelayProxy(args.redis_url, args.redis_delay_ms) as proxy:
                print(f"(Redis through a proxy adding {args.redis_delay_ms} ms per round trip)")
                run(names, proxy.url, args.rounds, args.calls)
        else:
            run(names, args.redis_url, args.rounds, args.calls)
    finally:
        if server is not None:
            server.close()


def run(names: list[str], redis_url: str, rounds: int, calls: int) -> None:
    trips = RoundTrips()
    admin = redis.Redis.from_url(redis_url)
    apps: dict[str, tuple[WSGI, dict[str, Any]]] = {}
    for name in names:
        app, headers = APPS[name](redis_url)
        environ = EnvironBuilder(
            path="/data",
            base_url="https://localhost",
            headers=list(headers.items()),
            environ_base={"REMOTE_ADDR": "10.1.2.3"},
        ).get_environ()
        wsgi: WSGI = app.wsgi_app
        for _ in range(50):  # warm caches, scripts and connections
            status = call(wsgi, environ)
        if status != 200:
            raise SystemExit(f"{name} answers {status}, not 200: refusals are not worth timing")
        apps[name] = (wsgi, environ)

    # What building the environ copy costs, subtracted from every app alike.
    empty: dict[str, Any] = dict(next(iter(apps.values()))[1])
    start = time.perf_counter()
    for _ in range(calls):
        dict(empty)
    overhead = (time.perf_counter() - start) / calls * 1e6

    micros: dict[str, list[float]] = {name: [] for name in apps}
    round_trips: dict[str, list[float]] = {name: [] for name in apps}
    commands: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(rounds):
        for name, (wsgi, environ) in apps.items():
            sent, executed = trips.count, server_commands(admin)
            start = time.perf_counter()
            for _ in range(calls):
                call(wsgi, environ)
            elapsed = time.perf_counter() - start
            round_trips[name].append((trips.count - sent - 1) / calls)  # -1: the INFO
            commands[name].append((server_commands(admin) - executed) / calls)
            micros[name].append(elapsed / calls * 1e6 - overhead)

    median = {name: statistics.median(values) for name, values in micros.items()}
    base = median.get("bare")
    limit = median.get("limit")
    floor_ = median.get("floor")
    print("app".ljust(12), "µs/req".rjust(8), "x bare".rjust(7), "x limit".rjust(8), end=" ")
    print("x floor".rjust(8), "round trips".rjust(12), "commands".rjust(9))
    for name in apps:
        ratio = f"{median[name] / base:7.2f}" if base else "      -"
        to_limit = f"{median[name] / limit:8.2f}" if limit else "       -"
        to_floor = f"{median[name] / floor_:8.2f}" if floor_ else "       -"
        print(
            f"{name:<12} {median[name]:8.1f} {ratio} {to_limit} {to_floor} "
            f"{statistics.median(round_trips[name]):12.2f} {statistics.median(commands[name]):9.2f}"
        )
    print(f"({rounds} rounds of {calls} calls, interleaved; medians; environ copy subtracted)")
    targets(micros)
    for measured, goal, what in ROUND_TRIP_TARGETS:
        if measured in round_trips:
            per_request = statistics.median(round_trips[measured])
            verdict = "met" if per_request <= goal else "NOT met"
            print(
                f"{measured} round trips per request: {per_request:.3f} "
                f"(goal <= {goal}, {verdict}): {what}"
            )


#: The goals the issues set, as (app, reference, at most): the cost of ``app`` over that
#: of ``reference``.
TARGETS = (
    ("guard", "bare", 1.6, "memory store, every feature on (the single-pipeline goal)"),
    ("guard", "bare", 2.0, "memory store, every feature on (the security review's bound)"),
    ("guard", "limit", 1.15, "memory store, vs the least work a guard must do (issue 22)"),
    ("guard_redis", "limit", 1.25, "Redis store and limits, vs the same (issue 22)"),
    ("guard_redis", "floor", 1.0, "Redis store and limits, vs bare + one redis-py round trip"),
    ("guard_metrics", "guard", 1.1, "metrics on, vs off"),
    ("guard_sql", "guard", 1.1, "SQL store (SQLite), warm: no query per request (issue 25)"),
    ("guard_redis", "guard", 1.3, "Redis vs memory (issue 22: with --redis-delay-ms 1)"),
)

#: Round trips per authenticated request, counted on the client, as (app, at most).
ROUND_TRIP_TARGETS = (
    ("guard_redis", 0.05, "a key far under its limit spends its lease in process (issue 22)"),
)


def targets(micros: dict[str, list[float]]) -> None:
    """Each goal as the median of per-round ratios: both sides of a ratio ran in the same
    round, so a drift of the machine between rounds moves both."""
    for app, reference, goal, what in TARGETS:
        if app in micros and reference in micros:
            pairs = zip(micros[app], micros[reference], strict=True)
            ratio = statistics.median(a / b for a, b in pairs)
            verdict = "met" if ratio <= goal else "NOT met"
            print(f"{app} / {reference}: {ratio:.2f} (goal <= {goal}, {verdict}): {what}")


if __name__ == "__main__":
    main()
