"""A Lua script run in one round trip on a connection borrowed from the client's pool.

On loopback, redis-py's client path costs more than the round trip itself: the retry
wrapper, response callbacks and ``Script``'s argument handling (measured: 176 µs per call
through ``Script``, 89 µs sent and read on the connection). The limiter's script runs on
every authenticated request, so :meth:`DirectScript.run` sends and reads it directly on a
connection from the client's own pool.

Security property: a connection is checked out of the pool for one call and always
returned to it, so the connections in use never exceed the calls in flight, whatever the
server does with threads or greenlets (one thread per request under werkzeug, one
greenlet per request under gevent: a connection kept per thread leaked one each, until
Redis refused new clients and every request was a 503). Any failure mid-call disconnects
the connection before it goes back, so a late reply can never be read as the answer to
a later call. As with the store's client, a dropped connection is retried once, a
timeout never (the script may have run: a second run would count the hit twice).

The connection API used is redis-py's public ``ConnectionPool.get_connection()`` (no
arguments), ``ConnectionPool.release()``, ``Connection.pack_command()``,
``send_packed_command()``, ``read_response()`` and ``disconnect()``; checked against
redis-py 5.3.0 (the first whose ``get_connection()`` needs no command name), 6.3.0 (the
declared floor, for the store's cluster transactions) and 8.1.0, the newest at the time.
``tests/integration/test_redis_script.py`` pins the signatures and behaviour relied on.
"""

from __future__ import annotations

import hashlib
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


class DirectScript:
    """Runs ``source`` with EVALSHA on ``client``'s pool; loads it when Redis lacks it."""

    def __init__(self, client: redis.Redis, source: bytes) -> None:
        self._client = client
        self._pool = client.connection_pool
        self._source = source
        self._sha = hashlib.sha1(source, usedforsecurity=False).hexdigest()
        # The same key and arguments come back on every request of a key: pack them once.
        self._packed: BoundedCache[tuple[Any, ...], list[bytes]] = BoundedCache(PACKED_CACHE_SIZE)

    def run(self, keys: list[str], args: list[Any]) -> Any:
        """The script's reply for ``keys`` and ``args``, read before this returns."""
        call = (len(keys), *keys, *args)
        try:
            return self._call(call)
        except redis.ConnectionError:
            # Most likely a pooled connection the server or a proxy closed while idle:
            # once more on a fresh one. A TimeoutError is not a ConnectionError in
            # redis-py, so a call that may have run is never sent twice.
            return self._call(call)

    def _call(self, call: tuple[Any, ...]) -> Any:
        connection = cast(_Connection, self._pool.get_connection())
        try:
            command = self._pack(connection, call)
            try:
                connection.send_packed_command(command)
                return connection.read_response()
            except NoScriptError:  # Redis restarted or flushed its scripts
                self._client.script_load(self._source)
                connection.send_packed_command(command)
                return connection.read_response()
        except BaseException:
            # Whatever was sent may still be answered: that reply must die with the socket.
            connection.disconnect()
            raise
        finally:
            self._pool.release(cast(Connection, connection))

    def _pack(self, connection: _Connection, call: tuple[Any, ...]) -> list[bytes]:
        cached = self._packed.get(call)
        if cached is not None:
            return cached[0]
        packed = connection.pack_command("EVALSHA", self._sha, *call)
        self._packed.put(call, packed)
        return packed
