"""A Lua script run in one round trip on a connection borrowed from the client's pool.

On loopback, redis-py's client path costs more than the round trip itself: the retry
wrapper, response callbacks and ``Script``'s argument handling (measured: 176 µs per call
through ``Script``, 89 µs sent and read on the connection). Even the pool's checkout and
return alone, with redis-py 8's metrics, cost as much as the round trip (measured: 42 µs
per call checked out and returned each time, 21 µs on a connection already held). The
limiter's script runs on every authenticated request, so :meth:`DirectScript.run` sends
and reads it directly on a connection the calling thread (or greenlet) borrows from the
client's own pool for as long as it lives.

Security property: every connection goes back to the pool. A thread's lease is returned
when the thread (or greenlet) ends: CPython drops a finished thread's
``threading.local`` data, and gevent a finished greenlet's, and the lease gives its
connection back as it goes. So the connections out never exceed the threads alive,
whatever the server does with threads or greenlets (one thread per request under
werkzeug, one greenlet per request under gevent: a connection kept per thread and never
returned leaked one each, until Redis refused new clients and every request was a 503).
Any failure mid-call disconnects the connection and ends the lease, so a late reply can
never be read as the answer to a later call. As with the store's client, a dropped
connection is retried once, a timeout never (the script may have run: a second run would
count the hit twice).

The connection API used is redis-py's public ``ConnectionPool.get_connection()`` (no
arguments), ``ConnectionPool.release()``, ``Connection.pack_command()``,
``send_packed_command()``, ``read_response()`` and ``disconnect()``; checked against
redis-py 5.3.0 (the first whose ``get_connection()`` needs no command name), 6.3.0 (the
declared floor, for the store's cluster transactions) and 8.1.0, the newest at the time.
``tests/integration/test_redis_script.py`` pins the signatures and behaviour relied on.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Callable
from typing import Any, Protocol, cast

import redis
from redis.connection import Connection
from redis.exceptions import NoScriptError

from stores.cache import BoundedCache


class _Connection(Protocol):
    """What this module uses of a redis-py connection (whose methods are untyped)."""

    def pack_command(self, *args: Any) -> list[bytes]: ...
    def send_packed_command(self, command: list[bytes]) -> None: ...
    def read_response(self) -> Any: ...
    def disconnect(self) -> None: ...


#: Distinct calls whose packed command is kept (least recently used ones leave first).
PACKED_CACHE_SIZE = 4096


class _Lease:
    """A pool connection lent to one thread (or greenlet), given back when the lease
    is dropped: at the end of the thread, or after a failed call."""

    __slots__ = ("connection", "pid", "pool", "unread")

    def __init__(self, pool: redis.ConnectionPool) -> None:
        self.pool = pool
        self.connection = cast(_Connection, pool.get_connection())
        #: A lease inherited across a fork is the parent's: never used in the child.
        self.pid = os.getpid()
        #: A call was sent whose reply is not read yet.
        self.unread = False

    def __del__(self) -> None:
        # A finalizer must not raise; the pool disconnects what it does not own.
        with contextlib.suppress(Exception):
            self.pool.release(cast(Connection, self.connection))


class DirectScript:
    """Runs ``source`` with EVALSHA on ``client``'s pool; loads it when Redis lacks it."""

    def __init__(self, client: redis.Redis, source: bytes) -> None:
        self._client = client
        self._pool = client.connection_pool
        self._source = source
        self._sha = hashlib.sha1(source, usedforsecurity=False).hexdigest()
        # The same key and arguments come back on every request of a key: pack them once.
        self._packed: BoundedCache[tuple[Any, ...], list[bytes]] = BoundedCache(PACKED_CACHE_SIZE)
        self._leases = threading.local()

    def run(self, keys: list[str], args: list[Any]) -> Any:
        """The script's reply for ``keys`` and ``args``, read before this returns."""
        return self.send(keys, args)()

    def send(self, keys: list[str], args: list[Any]) -> Callable[[], Any]:
        """Send the call now; the function returned reads its reply, on this thread,
        before this thread sends anything else, so the round trip can overlap whatever
        the caller does in between."""
        call = (len(keys), *keys, *args)
        try:
            connection, command = self._send(call)
        except redis.ConnectionError:
            # Most likely a pooled connection the server or a proxy closed while idle:
            # once more on a fresh one. A TimeoutError is not a ConnectionError in
            # redis-py, so a call that may have run is never sent twice.
            connection, command = self._send(call)

        def read() -> Any:
            try:
                return self._read(connection, command)
            except redis.ConnectionError:
                return self._read(*self._send(call))

        return read

    def _send(self, call: tuple[Any, ...]) -> tuple[_Connection, list[bytes]]:
        lease: _Lease | None = getattr(self._leases, "lease", None)
        if lease is None or lease.pid != os.getpid() or lease.unread:
            if lease is not None and lease.unread:
                # A reply nobody read must never be taken for the next call's.
                self._end(lease)
            lease = self._leases.lease = _Lease(self._pool)
        connection = lease.connection
        try:
            command = self._pack(connection, call)
            connection.send_packed_command(command)
        except BaseException:
            self._end(lease)
            raise
        lease.unread = True
        return connection, command

    def _read(self, connection: _Connection, command: list[bytes]) -> Any:
        lease: _Lease | None = getattr(self._leases, "lease", None)
        try:
            try:
                reply = connection.read_response()
            except NoScriptError:  # Redis restarted or flushed its scripts
                self._client.script_load(self._source)
                connection.send_packed_command(command)
                reply = connection.read_response()
        except BaseException:
            if lease is not None and lease.connection is connection:
                self._end(lease)
            else:
                connection.disconnect()
            raise
        if lease is not None and lease.connection is connection:
            lease.unread = False
        return reply

    def _end(self, lease: _Lease) -> None:
        # Whatever was sent may still be answered: that reply must die with the socket.
        lease.connection.disconnect()
        if getattr(self._leases, "lease", None) is lease:
            self._leases.lease = None  # back to the pool, disconnected

    def _pack(self, connection: _Connection, call: tuple[Any, ...]) -> list[bytes]:
        cached = self._packed.get(call)
        if cached is not None:
            return cached[0]
        packed = connection.pack_command("EVALSHA", self._sha, *call)
        self._packed.put(call, packed)
        return packed
