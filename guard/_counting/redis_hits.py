"""Counting on Redis: every limit and quota of a key hit, and its windows read, in one
script call (on a Cluster, where a key's limits live in different slots, one call per
limit, then its quotas in turn: :func:`guard._counting.plan.spend_each`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from importlib import resources
from typing import Any

import limits.errors
import limits.storage
import redis

from guard._counting.direct_script import DirectScript
from guard._counting.plan import Counted, Hit, Plan, Reply, Window, spend_each, window

FIXED_WINDOW_LUA = (resources.files(__package__) / "lua" / "fixed_window.lua").read_bytes()


def counter(storage: limits.storage.RedisStorage) -> Hit:
    client = storage.get_connection()
    if isinstance(client, redis.Redis):
        return _one_call(storage, DirectScript(client, FIXED_WINDOW_LUA).send)
    # A Cluster routes by key and has no single pool: redis-py's Script, a call per
    # limit (each in a slot of its own), read at once.
    script = client.register_script(FIXED_WINDOW_LUA)

    def count(plan: Plan) -> Reply:
        rates = [limit for limit in plan if not limit.cost]
        try:
            windows = [_read(rate, script([rate.key], _args(rate))) for rate in rates]
            admitted = all(w.allowed for w in windows)
            windows += spend_each(storage, [limit for limit in plan if limit.cost], admitted)
        except storage.base_exceptions as exc:
            raise limits.errors.StorageError(exc) from exc
        done = tuple(windows)
        return lambda: done

    return count


def _one_call(
    storage: limits.storage.RedisStorage, send: Callable[[list[str], list[Any]], Callable[[], Any]]
) -> Hit:
    def count(plan: Plan) -> Reply:
        keys = [storage.prefixed_key(limit.key) if limit.cost else limit.key for limit in plan]
        try:
            read = send(keys, [value for limit in plan for value in _args(limit)])
        except storage.base_exceptions as exc:
            raise limits.errors.StorageError(exc) from exc

        def reply() -> tuple[Window, ...]:
            try:
                answer = read()
            except storage.base_exceptions as exc:
                raise limits.errors.StorageError(exc) from exc
            admitted = bool(int(answer[0]))
            # (count, milliseconds left) for each limit, in the plan's order.
            return tuple(
                window(limit, int(answer[2 * n + 1]), _seconds(answer[2 * n + 2]), admitted)
                for n, limit in enumerate(plan)
            )

        return reply

    return count


def _args(limit: Counted) -> tuple[int, int, int]:
    return (limit.expiry, limit.amount, limit.cost)


def _read(limit: Counted, answer: Any) -> Window:
    return window(limit, int(answer[1]), _seconds(answer[2]))


def _seconds(milliseconds: Any) -> int:
    return max(0, math.ceil(int(milliseconds) / 1000))
