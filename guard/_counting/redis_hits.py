"""Counting on Redis: every limit of a key hit, and its windows read, in one script call
(one per limit on a Cluster, where a key's limits live in different slots)."""

from __future__ import annotations

import math
from collections.abc import Callable
from importlib import resources
from typing import Any

import limits.errors
import limits.storage
import redis

from guard._counting.direct_script import DirectScript
from guard._counting.plan import Hit, Plan, Reply, Window, window

FIXED_WINDOW_LUA = (resources.files(__package__) / "lua" / "fixed_window.lua").read_bytes()


def counter(storage: limits.storage.RedisStorage) -> Hit:
    client = storage.get_connection()
    send: Callable[[list[str], list[Any]], Callable[[], Any]]
    if isinstance(client, redis.Redis):
        send = DirectScript(client, FIXED_WINDOW_LUA).send
    else:
        # A Cluster routes by key and has no single pool: redis-py's Script, read at once.
        script = client.register_script(FIXED_WINDOW_LUA)

        def send(keys: list[str], args: list[Any]) -> Callable[[], Any]:
            reply = script(keys, args)
            return lambda: reply

    def count(plan: Plan) -> Reply:
        # On a Cluster the limits of a key live in different slots: one call each.
        calls = [plan] if isinstance(client, redis.Redis) else [(limit,) for limit in plan]
        try:
            sent = [
                send(
                    [limit.key for limit in call],
                    [value for limit in call for value in (limit.expiry, 1)],
                )
                for call in calls
            ]
        except storage.base_exceptions as exc:
            raise limits.errors.StorageError(exc) from exc

        def reply() -> tuple[Window, ...]:
            replies: list[Any] = []
            try:
                for read in sent:
                    replies.extend(read())
            except storage.base_exceptions as exc:
                raise limits.errors.StorageError(exc) from exc
            # (count, milliseconds left) for each limit, in the plan's order.
            return tuple(
                window(
                    limit, int(replies[2 * n]), max(0, math.ceil(int(replies[2 * n + 1]) / 1000))
                )
                for n, limit in enumerate(plan)
            )

        return reply

    return count
