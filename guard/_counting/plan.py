"""What one hit counts and what it learns: the rate-limit values every counter shares.

A key's limit string is parsed once into a :data:`Plan` (one :class:`Counted` per limit,
under ``limits``' own storage keys); a counter sends the plan's hit and answers a
:data:`Reply` that reads the key's :class:`Window` in each limit.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import limits
import limits.errors
import limits.storage
from limits import RateLimitItem

if TYPE_CHECKING:
    from limits.aio.storage import Storage as AsyncStorage

Items = tuple[RateLimitItem, ...]


class Window(NamedTuple):
    """Where one identifier stands in one window of one policy."""

    policy: str
    item: RateLimitItem
    remaining: int
    reset_in: int
    allowed: bool
    #: The policy's entry in ``RateLimit-Policy``, formatted once per policy and item
    #: (by :func:`quota`), not on every response.
    quota: str


def quota(policy: str, item: RateLimitItem) -> str:
    """A policy's entry in the ``RateLimit-Policy`` header."""
    return f'"{policy}";q={item.amount};w={item.get_expiry()}'


@functools.lru_cache(maxsize=256)
def parse_limits(text: str) -> Items:
    """``'100/minute;1000/day'`` as ``limits`` items (parsed once per distinct text).

    :raises ValueError: if any part is not a rate limit.
    """
    items = tuple(limits.parse_many(text))
    if not items:
        raise ValueError(f"{text!r} is not a rate limit")
    return items


#: Reads the windows of a hit already sent, in order (raises ``limits``' StorageError).
Reply = Callable[[], tuple[Window, ...]]


class Counted(NamedTuple):
    """One limit a hit counts."""

    policy: str
    item: RateLimitItem
    identifier: str
    #: ``limits``' own storage key for (item, policy, identifier).
    key: str
    #: The window's length in seconds.
    expiry: int
    #: Its entry in ``RateLimit-Policy``.
    quota: str


#: What one hit counts, limit by limit. The first policy names the counter (``key`` or
#: ``failed-auth``).
Plan = tuple[Counted, ...]
#: Sends one hit under each limit of a plan (in one storage call where it can); gives
#: how to read its reply.
Hit = Callable[[Plan], Reply]


def plan_for(
    storage: limits.storage.Storage | AsyncStorage, text: str, counter: str, identifier: str
) -> Plan:
    """What a hit of ``identifier`` counts under ``text``'s limits on ``storage``.

    Each limit is a policy of its own (``key``, ``key-2``, ...), counted under limits'
    own storage key for (item, policy, identifier), prefixed as its storage does. The
    limiter remembers the plans it builds, by strings only (see
    :meth:`guard._request.rate_limits.RateLimits.plan`).
    """
    plan = []
    for n, item in enumerate(parse_limits(text), start=1):
        name = counter if n == 1 else f"{counter}-{n}"
        key = item.key_for(name, identifier)
        if isinstance(storage, limits.storage.RedisStorage):
            key = storage.prefixed_key(key)
        plan.append(Counted(name, item, identifier, key, item.get_expiry(), quota(name, item)))
    return tuple(plan)


def window(limit: Counted, count: int, reset_in: int) -> Window:
    amount = limit.item.amount
    return Window(
        limit.policy, limit.item, max(0, amount - count), reset_in, count <= amount, limit.quota
    )


def seconds_until(when: float) -> int:
    return max(0, math.ceil(when - time.time()))
