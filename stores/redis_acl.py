"""What the guard needs of Redis, and what the connected ACL user lacks of it.

Each part the guard runs on Redis (the key store, the limiter, the audit stream) lists
its :class:`Need` s: the commands it sends, on the keys and channels it sends them to.
:func:`missing` asks Redis, as the connected user, which of them it would refuse,
without running any: the commands are queued in a ``MULTI`` and the transaction is
discarded. Redis checks a queued command's ACL (command, keys, channels) when queuing
it, so a refused one answers ``NOPERM`` and an allowed one ``QUEUED``; nothing is
written, published or subscribed. This needs no admin right (``ACL DRYRUN`` would:
it is ``@admin``), only ``MULTI`` and ``DISCARD``, which the minimal ACL grants.

Each refusal is named as the ACL rule that would allow it (``+zadd``, ``~guard:ids``,
``&guard:invalidate``) with what it is for, so an operator can fix the user without
reading the guard's code; Redis' own ``NOPERM`` message names no key.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Sequence
from typing import Any, Protocol, cast

import redis
from redis.cluster import RedisCluster
from redis.connection import Connection

from .cache import BoundedCache
from .errors import StoreUnavailable

logger = logging.getLogger(__name__)

#: A SHA1 no script has: EVALSHA checks the ACL before looking the script up.
_NO_SCRIPT = "0" * 40
_COMMAND = re.compile(r"run the '([^']+)' command")


@dataclasses.dataclass(frozen=True)
class Need:
    """One command the guard sends, and on which key or channel (at most one, so a
    refusal of the key names the key)."""

    #: What it is for, as the operator reads it: "last-use times".
    purpose: str
    #: The command as the guard sends it, with harmless arguments (it is never run).
    command: tuple[str, ...]
    key: str | None = None
    channel: str | None = None


@dataclasses.dataclass(frozen=True)
class Missing:
    """A :class:`Need` the user is refused, and the ACL rule that would allow it."""

    need: Need
    #: ``+command``, ``~key`` or ``&channel``.
    rule: str

    def __str__(self) -> str:
        return f"{self.rule} ({self.need.purpose}: {self.need.command[0]})"


def store_needs(prefix: str, channel: str) -> list[Need]:
    """What :class:`~stores.RedisStore` sends, under key ``prefix`` and ``channel``."""
    names = ("key:-", "ids", "imported", "last_used", "owner:-", "owners")
    key, ids, imported, used, owner, owners = (f"{prefix}{name}" for name in names)
    return [
        Need("the health check", ("PING",)),
        Need("reading key records", ("GET", key), key),
        Need("listing key records", ("SMEMBERS", ids), ids),
        Need("listing key records", ("MGET", key), key),
        Need("imported keys", ("HGET", imported, "-"), imported),
        *(
            Need("writing key records", ("EVALSHA", _NO_SCRIPT, "1", name), name)
            for name in (ids, imported, key)
        ),
        Need("writing key records", ("SCRIPT", "LOAD", "return 0")),
        # The write script's own calls, checked against the same user as it runs.
        Need("writing key records", ("SET", key, "-"), key),
        Need("writing key records", ("SADD", ids, "-"), ids),
        Need("writing key records", ("HSET", imported, "-", "-"), imported),
        # The owner script's (stores/redis.py OWNER_SCRIPT): owners set, changed, unset.
        Need("reading owner records", ("GET", owner), owner),
        Need("writing owner records", ("EXISTS", owner), owner),
        Need("writing owner records", ("SET", owner, "-"), owner),
        Need("writing owner records", ("SADD", owners, "-"), owners),
        Need("removing owner records", ("DEL", owner), owner),
        Need("removing owner records", ("SREM", owners, "-"), owners),
        Need("listing owner records", ("SMEMBERS", owners), owners),
        Need("revocations reaching every worker", ("PUBLISH", channel, "-"), channel=channel),
        Need("revocations reaching every worker", ("SUBSCRIBE", channel), channel=channel),
        Need("last-use times", ("ZADD", used, "GT", "0", "-"), used),
        Need("last-use times", ("ZSCORE", used, "-"), used),
    ]


def limiter_needs(prefix: str = "LIMITS") -> list[Need]:
    """What the guard's rate limits send (the fixed-window script, and the ``limits``
    storage's health check), under ``limits``' key prefix."""
    key = f"{prefix}:-"
    return [
        Need("the limiter's health check", ("PING",)),
        Need("counting rate limits", ("EVALSHA", _NO_SCRIPT, "1", key), key),
        Need("counting rate limits", ("SCRIPT", "LOAD", "return 0")),
        *(
            Need("counting rate limits", (command, key, *args), key)
            for command, args in (("INCRBY", ("1",)), ("EXPIRE", ("1",)), ("PTTL", ()))
        ),
        # The quota lease script (guard/_counting/lua/lease.lua): the clock, and the
        # set of processes that took a lease for the key lately.
        Need("quota leases", ("GET", key), key),
        Need("quota leases", ("TIME",)),
        *(
            Need("quota leases", (command, key, *args), key)
            for command, args in (
                ("ZADD", ("0", "-")),
                ("ZREMRANGEBYSCORE", ("-inf", "0")),
                ("ZCARD", ()),
            )
        ),
    ]


def stream_needs(stream: str) -> list[Need]:
    """What :class:`~guard.observability.audit_stream.RedisStreamHandler` sends."""
    return [Need("the audit stream", ("XADD", stream, "MAXLEN", "~", "1", "*", "e", "-"), stream)]


class _Connection(Protocol):
    """What this module uses of a redis-py connection (whose methods are untyped)."""

    def pack_commands(self, commands: list[tuple[str, ...]]) -> list[bytes]: ...
    def send_packed_command(self, command: list[bytes]) -> None: ...
    def read_response(self) -> Any: ...
    def disconnect(self) -> None: ...


def missing(client: redis.Redis | RedisCluster, needs: Sequence[Need]) -> list[Missing]:
    """The ``needs`` the user ``client`` connects as is refused (none are run).

    :raises StoreUnavailable: Redis did not answer, or refused ``MULTI`` itself
        (named in the message: the check needs ``+multi`` and ``+discard``).
    """
    node = _one_node(client)
    pool = node.connection_pool
    try:
        connection = cast(_Connection, pool.get_connection())
    except redis.RedisError as exc:
        raise StoreUnavailable(f"redis: {exc}") from exc
    try:
        commands = [("MULTI",), *(need.command for need in needs), ("DISCARD",)]
        connection.send_packed_command(connection.pack_commands(commands))
        replies = [_reply(connection) for _ in commands]
        if isinstance(replies[-1], redis.ResponseError):
            # DISCARD refused: the connection is still in the transaction, and must
            # never queue the next caller's commands.
            connection.disconnect()
    except redis.RedisError as exc:
        connection.disconnect()
        raise StoreUnavailable(f"redis: {exc}") from exc
    finally:
        pool.release(cast(Connection, connection))
    if isinstance(replies[-1], redis.ResponseError) and not isinstance(
        replies[0], redis.ResponseError
    ):
        raise StoreUnavailable(
            f"redis: the user may not run DISCARD ({replies[-1]}): the guard checks its "
            "permissions in a discarded transaction, grant +multi +discard"
        )
    if isinstance(replies[0], redis.ResponseError):
        raise StoreUnavailable(
            f"redis: the user may not run MULTI ({replies[0]}): the guard checks its "
            "permissions in a discarded transaction, grant +multi +discard"
        )
    found = []
    for need, reply in zip(needs, replies[1:-1], strict=True):
        if isinstance(reply, redis.exceptions.NoPermissionError):
            found.append(Missing(need, _rule(need, str(reply))))
    return found


def describe(found: Sequence[Missing]) -> str:
    """``found`` in one line: each rule once, with what it is for."""
    rules: dict[str, list[str]] = {}
    for item in found:
        purposes = rules.setdefault(item.rule, [])
        if item.need.purpose not in purposes:
            purposes.append(item.need.purpose)
    return ", ".join(f"{rule} ({'; '.join(purposes)})" for rule, purposes in rules.items())


class DenialLog:
    """Logs each permission Redis refuses once, at ERROR, with what it is for: a
    request refused with 503, a revocation listener that cannot subscribe or a last-use
    write that fails on ``NOPERM`` would otherwise say nothing of why.

    The first ``NOPERM`` of a kind asks Redis which of ``needs`` the user lacks (one
    :func:`missing` round trip; its answer is remembered, so a request failing on it
    again costs none) and returns the rules, for the error's message too.
    """

    def __init__(
        self, what: str, client: redis.Redis | RedisCluster, needs: Sequence[Need]
    ) -> None:
        self.what = what
        self.client = client
        self.needs = list(needs)
        self._named: BoundedCache[str, str] = BoundedCache(64)

    def named(self, error: redis.exceptions.NoPermissionError) -> str:
        """``error`` with the rules the user lacks, logged the first time it is seen."""
        # A pipeline's error quotes the command it failed (an audit entry, say): only
        # Redis' own words identify the refusal.
        message = str(error).rpartition("caused error: ")[2]
        found = self._named.get(message)
        if found is not None:
            return found[0]
        try:
            lacking = describe(missing(self.client, self.needs)) or "(could not tell which)"
        except StoreUnavailable as exc:
            lacking = f"(could not tell which: {exc})"
        named = f"{message}: the Redis ACL user lacks {lacking}"
        self._named.put(message, named)
        logger.error("%s: Redis refused a command: %s", self.what, named)
        return named


def _one_node(client: redis.Redis | RedisCluster) -> redis.Redis:
    # A Cluster: one node is asked; an ACL is set on every node alike.
    if isinstance(client, RedisCluster):
        node = client.get_default_node()  # type: ignore[no-untyped-call]
        return client.get_redis_connection(node)
    return client


def _reply(connection: _Connection) -> Any:
    try:
        return connection.read_response()
    except redis.ResponseError as exc:  # NOPERM, or any other refusal of one command
        return exc


def _rule(need: Need, message: str) -> str:
    command = _COMMAND.search(message)
    if command:
        return f"+{command.group(1)}"
    if "channel" in message:
        return f"&{need.channel}"
    key = need.key or ""
    # A placeholder key stands for the pattern the guard's keys of that kind follow.
    return f"~{key[:-1]}*" if key.endswith(":-") else f"~{key}"
