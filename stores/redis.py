"""Redis stores: keys shared by every worker and host.

``redis://``, ``rediss://`` and ``unix://`` name one server; ``redis+sentinel://h:p[,h:p]/
service[/db]`` finds the master through Sentinel, and follows it across a failover;
``redis+cluster://h:p[,h:p]`` uses a Cluster (the same URLs ``limits`` takes).

Layout under ``prefix`` (default ``guard:``)::

    {prefix}key:{key_id}     JSON of the record
    {prefix}ids              set of every key id
    {prefix}imported         hash: digest -> key id, imported keys only
    {prefix}last_used        sorted set: key id scored by when it was last used
    {prefix}owner:{name}     JSON of an owner's record (its shared limits and quota)
    {prefix}owners           set of every owner name
    {prefix}invalidate       pub/sub channel: the ids of the records each write changed
                             (``owner:{name}`` for an owner's)

Every write is one Lua script that compares the records it was given as expected with
the stored ones and writes only if all match (a compare-and-set), so a change made by
another process in between, such as a revocation during a rotation, is never overwritten.
A stored record that does not parse is :class:`~stores.InvalidRecord` for that key only.

Reads go through a process-local :class:`~stores.cache.RecordCache`. A listener thread
per process drops an entry as soon as its id is published, and while the listener is not
subscribed (Redis down, reconnecting) the cache is bypassed, so a revocation reaches
every worker within a message's latency, and never later than the cache TTL.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar, cast
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry

from .base import KeyRecord, KeyStore, Listing, OwnerRecord, parse_stored
from .cache import BoundedCache, RecordCache
from .errors import Conflict, InvalidRecord, InvalidStoreURL, StoreUnavailable
from .redis_acl import DenialLog, store_needs
from .urls import redact, scrub

logger = logging.getLogger(__name__)

T = TypeVar("T")


#: The schemes :func:`client_from_url` builds a client for: one server (``unix://`` and
#: ``limits``' spelling of it, ``redis+unix://``), a Sentinel service, a Cluster.
CLIENT_SCHEMES = ("redis", "rediss", "unix", "redis+unix", "redis+sentinel", "redis+cluster")


def connection_options(timeout: float, max_connections: int = 0) -> dict[str, Any]:
    """The connection options of every Redis client the guard makes (the store's, the
    limiter's, the audit stream's), so a hung Redis holds a request ``timeout`` seconds
    at most, on any of them, and the request then fails closed.

    redis-py's default retries three times with exponential backoff, which would hold a
    request far past ``timeout`` when Redis hangs: retry once, at once, and only when the
    connection was dropped (a pooled connection the server closed), never on a timeout
    (a command that timed out may have run, and a rate-limit hit must not count twice).
    For ``limits``' Cluster storage, which builds its client itself and takes no
    prebuilt one, these options are what is shared.

    :param max_connections: the most connections a pool opens (per node on a Cluster);
        0 leaves redis-py's default.
    """
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
    }
    if max_connections:
        options["max_connections"] = max_connections
    return options


def client_from_url(
    url: str,
    timeout: float,
    *,
    decode_responses: bool = True,
    max_connections: int = 0,
    wait_for_connection: bool = True,
) -> redis.Redis:
    """The one way the guard builds a Redis client: for ``url`` (any of
    :data:`CLIENT_SCHEMES`, with TLS for ``rediss://`` and redis-py's ``ssl_*`` query
    options), with the timeouts and retry of :func:`connection_options`, and on a single
    server a health check of connections idle for 30 s (a connection a proxy dropped is
    found before a command is lost on it).

    :param decode_responses: replies as ``str`` (the store's keys and records) or as
        ``bytes`` (what ``limits`` expects of the connection pool it is given).
    :param max_connections: cap the pool (``GUARD_REDIS_MAX_CONNECTIONS``): on one
        server a call past it waits ``timeout`` at most for a connection to be given
        back (redis-py's ``BlockingConnectionPool``), then fails as Redis being down
        does, so the request is refused with 503; Sentinel and Cluster pools, which have
        no blocking form, refuse at once. 0: redis-py's default pool.
    :param wait_for_connection: false refuses at once past the cap on one server too,
        for a caller that may hold one connection while it asks for another (waiting
        there could leave every holder waiting on the others until ``timeout``).
    :raises ValueError: for a URL redis-py cannot use.
    """
    options = {
        **connection_options(timeout, max_connections),
        "decode_responses": decode_responses,
    }
    scheme, auth, nodes, path = _split_multi_host(url)
    with_auth: dict[str, Any] = {**auth, **options}
    if scheme in ("redis+sentinel", "redis+cluster") and urlsplit(url).query:
        # Never silently dropped: TLS options left unread would connect in clear text.
        raise ValueError(
            f"{scheme}:// URLs take no ?options (TLS and the others are read from "
            "redis:// and rediss:// URLs only)"
        )
    if scheme == "redis+sentinel":
        service, _, db = path.strip("/").partition("/")
        if not service:
            raise ValueError("a redis+sentinel:// URL names the service: .../mymaster[/db]")
        sentinel = redis.Sentinel(
            nodes, sentinel_kwargs={**auth, "socket_timeout": timeout}, **with_auth
        )
        return cast(redis.Redis, sentinel.master_for(service, db=int(db or 0)))
    if scheme == "redis+cluster":
        cluster_nodes = [ClusterNode(host, port) for host, port in nodes]
        # RedisCluster shares the commands the store uses; it is no Redis subclass.
        return cast(redis.Redis, RedisCluster(startup_nodes=cluster_nodes, **with_auth))
    if scheme == "redis+unix":
        url = "unix" + url[len("redis+unix") :]
    if max_connections and wait_for_connection:
        pool = redis.BlockingConnectionPool.from_url(
            url, timeout=timeout, health_check_interval=30, **options
        )
        return redis.Redis(connection_pool=pool)
    return redis.Redis.from_url(url, health_check_interval=30, **options)


def _split_multi_host(url: str) -> tuple[str, dict[str, str], list[tuple[str, int]], str]:
    """``(scheme, auth, [(host, port)], path)`` of a URL whose netloc may list hosts."""
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    auth = {}
    if userinfo:
        username, _, password = userinfo.partition(":")
        auth = {k: unquote(v) for k, v in (("username", username), ("password", password)) if v}
    nodes = []
    for node in filter(None, hosts.split(",")):
        host, _, port = node.rpartition(":")
        nodes.append((host or node, int(port) if host and port.isdigit() else 6379))
    return parts.scheme, auth, nodes, parts.path


# KEYS: the id set, the imported hash, the n keys written, then the m keys compared.
# ARGV: n, m, then (json, id, digest or "") per record written, then per compared key
# its expected json ("" for "no such key"). Returns the positions (1..m) that differ;
# nothing is written unless that list is empty.
#: An owner's record written (ARGV[1] its JSON) or, with ARGV[1] empty, removed, with
#: its name (ARGV[2]) in or out of the set of owners, at once: KEYS[1] the record,
#: KEYS[2] the set. Replies whether a record was there before.
OWNER_SCRIPT = """
local existed = redis.call('EXISTS', KEYS[1])
if ARGV[1] == '' then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('SADD', KEYS[2], ARGV[2])
end
return existed
"""

SAVE_SCRIPT = """
local n, m = tonumber(ARGV[1]), tonumber(ARGV[2])
local changed = {}
for i = 1, m do
  if (redis.call('GET', KEYS[2 + n + i]) or '') ~= ARGV[2 + 3 * n + i] then
    table.insert(changed, i)
  end
end
if #changed > 0 then
  return changed
end
for i = 1, n do
  local at = 3 + 3 * (i - 1)
  redis.call('SET', KEYS[2 + i], ARGV[at])
  redis.call('SADD', KEYS[1], ARGV[at + 1])
  if ARGV[at + 2] ~= '' then
    redis.call('HSET', KEYS[2], ARGV[at + 2], ARGV[at + 1])
  end
end
return changed
"""


def serialize(record: KeyRecord) -> str:
    """The stored form of ``record``; deterministic, so the compare is on the text."""
    return json.dumps(record.to_dict())


def cluster_prefix(prefix: str) -> str:
    """``prefix`` with a hash tag, so a Cluster keeps every key of the store in one slot
    and a rotation stays one atomic MULTI."""
    return prefix if "{" in prefix else "{" + prefix.rstrip(":") + "}:"


class RedisStore(KeyStore):
    """Keys in Redis, read through a process-local cache kept fresh by pub/sub."""

    schemes = ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster")

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisStore:
        """The store at ``url``; ``options`` are those of the constructor."""
        try:
            return cls(url, **options)
        except ValueError as exc:  # redis-py's complaint about the URL itself
            raise InvalidStoreURL(f"{redact(url)!r}: {scrub(str(exc), url)}") from None

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "guard:",
        timeout: float = 0.5,
        cache_ttl: float = 5.0,
        client: redis.Redis | None = None,
        max_connections: int = 0,
    ) -> None:
        if client is not None and not client.connection_pool.connection_kwargs.get(
            "decode_responses"
        ):
            # Byte replies would never match the str ids the store builds keys from.
            raise ValueError("RedisStore needs a client made with decode_responses=True")
        self.client = (
            client
            if client is not None
            else client_from_url(url, timeout, max_connections=max_connections)
        )
        self.prefix = cluster_prefix(prefix) if url.startswith("redis+cluster:") else prefix
        self.channel = f"{prefix}invalidate"
        self.cache = RecordCache(cache_ttl)
        self.owner_cache: BoundedCache[str, OwnerRecord | None] = BoundedCache(10_000, cache_ttl)
        self._save = self.client.register_script(SAVE_SCRIPT)
        self._owner_write = self.client.register_script(OWNER_SCRIPT)
        self.denials = DenialLog(
            f"the key store ({redact(url)})", self.client, store_needs(self.prefix, self.channel)
        )
        self._listening = threading.Event()
        self._closed = threading.Event()
        self._listener_pid: int | None = None
        self._start_lock = threading.Lock()

    @property
    def subscribed(self) -> bool:
        """Whether this process's invalidation listener is subscribed now, so the cache
        is in use (``False`` before first use, while reconnecting, and after close)."""
        return (
            self._listening.is_set()
            and self._listener_pid == os.getpid()
            and not self._closed.is_set()
        )

    # -- reads -------------------------------------------------------------------------

    def get(self, key_id: str) -> KeyRecord | None:
        return self._cached(self.cache, key_id, self._key(key_id), self._parse)

    def _cached(
        self,
        cache: BoundedCache[str, T | None],
        name: str,
        key: str,
        parse: Callable[[str | None, str], T | None],
    ) -> T | None:
        """``key``'s record through ``cache``: trusted only while the listener is
        subscribed, so a change published meanwhile is never missed."""
        if self._listener_pid != os.getpid():
            self._start_listener()
        if self._listening.is_set():
            entry = cache.get(name)
            if entry is not None:
                return entry[0]
        generation = cache.generation
        with self._errors():
            raw = cast("str | None", self.client.get(key))
        record = parse(raw, name)
        if self._listening.is_set():
            cache.put(name, record, generation)
        return record

    def find_digest(self, digest: str) -> KeyRecord | None:
        with self._errors():
            key_id = cast("str | None", self.client.hget(f"{self.prefix}imported", digest))
        return None if key_id is None else self.get(key_id)

    def records(self) -> list[KeyRecord]:
        listing = self.listing()
        if listing.unreadable:
            raise listing.unreadable[0]
        return listing.records

    def listing(self) -> Listing:
        with self._errors():
            # Replies are str: the client decodes them (checked in __init__).
            ids = sorted(cast("set[str]", self.client.smembers(f"{self.prefix}ids")))
            keys = [self._key(key_id) for key_id in ids]
            raws = cast("list[str | None]", self.client.mget(keys)) if ids else []
        found = Listing([], [])
        for key_id, raw in zip(ids, raws, strict=True):
            try:
                record = self._parse(raw, key_id)
            except InvalidRecord as exc:
                found.unreadable.append(exc)
                continue
            if record is not None:
                found.records.append(record)
        return found

    # -- writes ------------------------------------------------------------------------

    def save(
        self, *records: KeyRecord, expected: Mapping[str, KeyRecord | None] | None = None
    ) -> None:
        compared = dict(expected or {})
        keys = [
            f"{self.prefix}ids",
            f"{self.prefix}imported",
            *(self._key(record.key_id) for record in records),
            *(self._key(key_id) for key_id in compared),
        ]
        args: list[str | int] = [len(records), len(compared)]
        for record in records:
            args += [serialize(record), record.key_id, record.digest if record.imported else ""]
        args += ["" if record is None else serialize(record) for record in compared.values()]
        with self._errors():
            changed = cast("list[int]", self._save(keys=keys, args=args))
            if changed:
                ids = list(compared)
                raise Conflict(sorted(ids[position - 1] for position in changed))
            # After the script, not in it: a Cluster routes PUBLISH apart from the keys.
            self.client.publish(self.channel, " ".join(r.key_id for r in records))
        for record in records:
            self.cache.discard(record.key_id)

    # -- owners ------------------------------------------------------------------------

    def get_owner(self, name: str) -> OwnerRecord | None:
        return self._cached(self.owner_cache, name, self._owner_key(name), _parse_owner)

    def owners(self) -> list[OwnerRecord]:
        with self._errors():
            names = sorted(cast("set[str]", self.client.smembers(f"{self.prefix}owners")))
            keys = [self._owner_key(name) for name in names]
            raws = cast("list[str | None]", self.client.mget(keys)) if names else []
        found = [_parse_owner(raw, name) for name, raw in zip(names, raws, strict=True)]
        return [owner for owner in found if owner is not None]

    def save_owner(self, owner: OwnerRecord) -> None:
        self._write_owner(owner.name, json.dumps(owner.to_dict()))

    def delete_owner(self, name: str) -> bool:
        return self._write_owner(name, "")

    def _write_owner(self, name: str, raw: str) -> bool:
        keys = [self._owner_key(name), f"{self.prefix}owners"]
        with self._errors():
            existed = self._owner_write(keys=keys, args=[raw, name])
            # Every worker drops its cached copy, as for a key's record.
            self.client.publish(self.channel, f"owner:{name}")
        self.owner_cache.discard(name)
        return bool(existed)

    def _owner_key(self, name: str) -> str:
        return f"{self.prefix}owner:{name}"

    def touch(self, used: Mapping[str, float]) -> None:
        with self._errors():
            # GT: several workers flush their batches in any order; the latest time wins.
            self.client.zadd(f"{self.prefix}last_used", dict(used), gt=True)

    def last_used(self, key_id: str) -> float | None:
        with self._errors():
            return self.client.zscore(f"{self.prefix}last_used", key_id)

    def check(self) -> None:
        with self._errors():
            self.client.ping()

    def close(self) -> None:
        self._closed.set()
        self.client.close()

    # -- invalidation ------------------------------------------------------------------

    def _start_listener(self) -> None:
        # Started on first use in each process, not in __init__: a thread started before
        # gunicorn forks its workers does not exist in them.
        with self._start_lock:
            if self._listener_pid == os.getpid():
                return
            self._listener_pid = os.getpid()
            self._listening.clear()
            self.cache.clear()
            self.owner_cache.clear()
            thread = threading.Thread(target=self._listen, name="guard-invalidate", daemon=True)
            thread.start()

    def _listen(self) -> None:
        while not self._closed.is_set():
            pubsub = self.client.pubsub()
            try:
                pubsub.subscribe(self.channel)
                while not self._closed.is_set():
                    self._handle(pubsub.get_message(timeout=1.0))
            except redis.exceptions.NoPermissionError as exc:
                self.denials.named(exc)  # logged once; tried again below, as any failure
            except (redis.RedisError, OSError):
                pass  # reconnect below
            except Exception:
                # close() shuts the connection under a blocked read, and redis-py's parser
                # then fails with ValueError, TypeError or AttributeError depending on
                # where the read was: expected once closed, worth a line otherwise.
                if not self._closed.is_set():
                    logger.warning("key invalidation listener failed; reconnecting", exc_info=True)
            finally:
                # Messages may have been missed while disconnected: trust nothing cached.
                self._listening.clear()
                self.cache.clear()
                self.owner_cache.clear()
                pubsub.close()
            self._closed.wait(0.2)

    def _handle(self, message: dict[str, Any] | None) -> None:
        if message is None:
            return
        if message["type"] == "subscribe":
            self.cache.clear()
            self.owner_cache.clear()
            self._listening.set()
        elif message["type"] == "message":
            for key_id in message["data"].split():
                if key_id.startswith("owner:"):
                    self.owner_cache.discard(key_id.removeprefix("owner:"))
                else:
                    self.cache.discard(key_id)

    # -- helpers -----------------------------------------------------------------------

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Re-raise any driver error as :class:`StoreUnavailable` (the driver's as
        cause); a refused permission named in it, and logged once."""
        try:
            yield
        except redis.exceptions.NoPermissionError as exc:
            raise StoreUnavailable(f"redis: {self.denials.named(exc)}") from exc
        except redis.RedisError as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc

    def _key(self, key_id: str) -> str:
        return f"{self.prefix}key:{key_id}"

    def _parse(self, raw: str | None, key_id: str) -> KeyRecord | None:
        # An unreadable record refuses its own key (the caller answers it like an
        # invalid key), never crashes the request or makes the whole store unavailable.
        return None if raw is None else parse_stored(KeyRecord, raw, "redis", f"key {key_id!r}")


def _parse_owner(raw: str | None, name: str) -> OwnerRecord | None:
    # An unreadable record refuses the owner's keys (503), never the whole store.
    return None if raw is None else parse_stored(OwnerRecord, raw, "redis", f"owner {name!r}")
