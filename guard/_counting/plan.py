"""What one hit counts and what it learns: the rate-limit values every counter shares.

A key's limit string is parsed once into a :data:`Plan` (one :class:`Counted` per limit,
under ``limits``' own storage keys); a counter sends the plan's hit and answers a
:data:`Reply` that reads the key's :class:`Window` in each limit. A key with a quota
adds one more :class:`Counted` to its plan, built for each request (:func:`charge`):
the request's cost, spent only when every window admits the request and the quota has
room for it.
"""

from __future__ import annotations

import datetime
import functools
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import limits
import limits.errors
import limits.storage
from limits import RateLimitItem

from stores import Quota

if TYPE_CHECKING:
    from limits.aio.storage import Storage as AsyncStorage

Items = tuple[RateLimitItem, ...]


class Window(NamedTuple):
    """Where one identifier stands in one window of one policy."""

    policy: str
    #: The rate limit (``None`` for a quota).
    item: RateLimitItem | None
    remaining: int
    reset_in: int
    allowed: bool
    #: The policy's entry in ``RateLimit-Policy``, formatted once per policy and item
    #: (by :func:`quota`), not on every response.
    quota: str
    #: Whether waiting ``reset_in`` helps: a lifetime quota never refills.
    refills: bool = True


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
    """One limit a hit counts, or one quota it spends from."""

    policy: str
    #: The rate limit (``None`` for a quota).
    item: RateLimitItem | None
    identifier: str
    #: ``limits``' own storage key for (item, policy, identifier); a quota's, unprefixed.
    key: str
    #: The window's length in seconds (a quota's period's).
    expiry: int
    #: Its entry in ``RateLimit-Policy``.
    quota: str
    #: The limit, or the quota's allowance.
    amount: int
    #: 0 for a rate window (every hit counts 1); a quota's: the units this hit spends.
    cost: int = 0
    #: A quota's: seconds until it refills (0 for a lifetime quota, which never does).
    reset_in: int = 0


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
        plan.append(
            Counted(name, item, identifier, key, item.get_expiry(), quota(name, item), item.amount)
        )
    return tuple(plan)


#: Seconds a lifetime quota's counter is kept: longer than any key lives, shorter than
#: any storage refuses as an expiry.
LIFETIME = 10 * 365 * 86400
#: The refills of a fixed length, in seconds (``monthly`` follows the calendar).
PERIODS = {"1d": 86400, "30d": 30 * 86400}


def period(quota: Quota, now: float) -> tuple[str, float, float | None]:
    """The name of ``quota``'s period at ``now``, when it began and when it ends
    (``None``: a lifetime quota never ends). ``1d`` and ``30d`` periods follow one
    another from :attr:`~stores.Quota.since`; ``monthly`` ones are calendar months, UTC."""
    if quota.refill is None:
        return "life", quota.since, None
    if quota.refill == "monthly":
        moment = datetime.datetime.fromtimestamp(now, datetime.UTC)
        start = datetime.datetime(moment.year, moment.month, 1, tzinfo=datetime.UTC)
        end = datetime.datetime(
            moment.year + moment.month // 12, moment.month % 12 + 1, 1, tzinfo=datetime.UTC
        )
        return f"{moment.year}-{moment.month:02}", start.timestamp(), end.timestamp()
    length = PERIODS[quota.refill]
    n = max(0, math.floor((now - quota.since) / length))
    return str(n), quota.since + n * length, quota.since + (n + 1) * length


def charge(policy: str, identifier: str, quota: Quota, cost: int, now: float) -> Counted:
    """What one hit spends from ``quota``: ``cost`` units of the count of its current
    period, a counter of its own (named by the quota's counter, the time it was set and
    the period, so a top-up or a new period starts at zero, and every worker on every
    host that agrees on the period spends from the same count).
    """
    name, start, end = period(quota, now)
    key = f"guard-quota/{quota.counter}/{int(quota.since * 1000)}/{name}"
    if end is None:
        entry = f'"{policy}";q={quota.allowance};qu="request"'
        return Counted(policy, None, identifier, key, LIFETIME, entry, quota.allowance, cost)
    length = round(end - start)
    entry = f'"{policy}";q={quota.allowance};w={length};qu="request"'
    left = max(1, math.ceil(end - now))
    # The counter lives a whole period from its first spend: past the period's end, so
    # never gone early, and the same on every request of the period (the script call is
    # packed once). The next period counts under another name.
    return Counted(policy, None, identifier, key, length, entry, quota.allowance, cost, left)


def window(limit: Counted, count: int, reset_in: int, admitted: bool = True) -> Window:
    """Where a hit left ``limit``, its counter at ``count``. A quota's hit was spent if
    the request was ``admitted``; if not, the quota is only refused when its cost did
    not fit (the request may have been refused by a window)."""
    amount = limit.amount
    if not limit.cost:
        remaining = max(0, amount - count)
        return Window(limit.policy, limit.item, remaining, reset_in, count <= amount, limit.quota)
    allowed = admitted or count + limit.cost <= amount
    refills = limit.reset_in > 0
    return Window(
        limit.policy, None, max(0, amount - count), limit.reset_in, allowed, limit.quota, refills
    )


def seconds_until(when: float) -> int:
    return max(0, math.ceil(when - time.time()))


def spend_each(
    storage: limits.storage.Storage, quotas: list[Counted], admitted: bool
) -> list[Window]:
    """Spend a hit's ``quotas`` one call each, for the storages where one call cannot
    spend them together (a Cluster's slots, ``limits``' other strategies): each quota
    spends its cost, and gives it back if that overspent it, as do the quotas already
    spent, so none is ever over; a request that was not ``admitted`` by its windows
    spends nothing. Two requests racing for the last units may both give them back:
    this path can admit less than a quota allows, never more.
    """
    spent: list[Counted] = []
    for quota in quotas if admitted else ():
        spent.append(quota)
        if storage.incr(quota.key, quota.expiry, quota.cost) > quota.amount:
            admitted = False
            for given in spent:
                storage.incr(given.key, given.expiry, -given.cost)
            break
    counts = [storage.get(quota.key) for quota in quotas]
    return [window(quota, count, 0, admitted) for quota, count in zip(quotas, counts, strict=True)]
