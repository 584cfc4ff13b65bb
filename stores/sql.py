"""SQL stores: keys in the app's own database, through SQLAlchemy 2 Core.

``postgresql+psycopg://user:password@host/db`` and ``sqlite:///path/keys.db`` (the ``sql``
extra: ``pip install 'flask-api-guard[sql]'``). ``sqlalchemy://NAME`` is the engine an
app handed over with :func:`share_engine` (Flask-SQLAlchemy's ``db.engine``, say), so
the guard shares its pool and credentials; :class:`SQLStore` also takes an engine
directly.

One table, named from the store prefix (``guard:`` gives ``guard_keys``)::

    key_id     VARCHAR(256) PRIMARY KEY  the public key id; the row '' holds the schema
                                         version, and ``owner:{name}`` an owner's record
    record     TEXT NOT NULL             JSON of the record: the secret's keyed digest, never
                                         a token or a secret
    digest     VARCHAR(64) NULL UNIQUE   imported keys only, so they are found by digest
                                         through an index (signed keys never are)
    version    INTEGER NOT NULL          bumped by every write: what compare-and-set compares
    last_used  DOUBLE PRECISION NULL     seconds since the epoch, written in batches

``guard store init`` creates the table or upgrades it (:func:`init_schema`: idempotent,
versioned); a store refuses to start on a table that is missing, older or newer than it
knows (:class:`SchemaMismatch`, naming the command).

Every write is one transaction that compares the records it was given as expected with
the stored ones, then writes each row only if its version is still the one read (a
compare-and-set), so a change committed in between, such as a revocation during a
rotation, is never overwritten.

Reads go through a process-local :class:`~stores.cache.RecordCache`. On PostgreSQL each
process holds a connection of its own that LISTENs on the table's channel; every write
NOTIFYs the ids it changed in its transaction, so a revocation reaches every worker
within a message's latency. While that connection is down (reconnecting with backoff)
and always on SQLite, which has no notifications, cached records are trusted for
:data:`FALLBACK_TTL` seconds at most. Driver errors and timeouts are
:class:`~stores.StoreUnavailable`: the guard answers 503, and the pool's pre-ping
reconnects by itself when the database returns.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

try:
    import psycopg
    import sqlalchemy as sa
    from psycopg import sql
except ModuleNotFoundError as exc:  # named in the error an app without the extra meets
    raise ModuleNotFoundError(
        f"the SQL store needs the sql extra: pip install 'flask-api-guard[sql]' ({exc})"
    ) from exc

from .base import KeyRecord, KeyStore, OwnerRecord, parse_stored
from .cache import BoundedCache, RecordCache
from .errors import Conflict, InvalidStoreURL, StoreError, StoreUnavailable

logger = logging.getLogger(__name__)

#: The table layout this guard reads and writes; ``guard store init`` brings a table to it.
SCHEMA_VERSION = 1
#: Seconds a cached record is trusted while no invalidation can arrive.
FALLBACK_TTL = 1.0
#: Longest wait between two attempts of the PostgreSQL listener to reconnect.
MAX_BACKOFF = 2.0
#: The key id of the row holding the schema version (no key id is empty).
_SCHEMA_ROW = ""
#: The start of an owner's row id (no key id has a colon): owners need no table of
#: their own, so no schema upgrade.
_OWNER_ROW = "owner:"
#: At most 56 characters, so the index name (the table's and "_digest") fits PostgreSQL's 63.
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,55}")
#: Dialects the store runs on: its SQL is portable, its invalidation needs psycopg.
_DIALECTS = {("postgresql", "psycopg"), ("sqlite", "pysqlite")}

_shared: dict[str, sa.Engine] = {}


class SchemaMismatch(StoreError):
    """The key table is missing, or at another schema version than this guard's."""


def share_engine(name: str, engine: sa.Engine) -> None:
    """Let the store URL ``sqlalchemy://NAME`` use ``engine``, e.g. Flask-SQLAlchemy's
    (``with app.app_context(): share_engine("app", db.engine)`` before ``Guard(app)``).

    The engine keeps its own pool settings and timeouts; the store never disposes it.

    :raises ValueError: for an engine on another database or driver.
    """
    _check_dialect(engine)
    _shared[name] = engine


def engine_from_url(url: str, timeout: float) -> tuple[sa.Engine, bool]:
    """The engine ``url`` names, and whether it was made here (so is the store's to
    dispose). Calls give up after about ``timeout`` seconds (libpq waits 2 s at least to
    connect).

    :raises InvalidStoreURL: for a URL the store cannot use.
    """
    try:
        parsed = sa.make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        # Not echoed: the URL may hold a password.
        raise InvalidStoreURL(
            "cannot read the SQL store URL: expected postgresql+psycopg://user:password@"
            "host:port/database, sqlite:///path/to/keys.db or sqlalchemy://NAME"
        ) from None
    if parsed.drivername == "sqlalchemy":
        engine = _shared.get(parsed.host or "")
        if engine is None:
            raise InvalidStoreURL(
                f"no engine is shared as {parsed.host or ''!r}: sqlalchemy://NAME names an "
                "engine shared with stores.sql.share_engine(NAME, engine) before the store "
                "is built"
            )
        return engine, False
    if parsed.drivername == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            # Each pooled connection would open a database of its own.
            raise InvalidStoreURL("a sqlite store needs a file: sqlite:///path/to/keys.db")
        connect_args: dict[str, Any] = {"timeout": timeout}  # waiting for another writer
    else:
        connect_args = {
            "connect_timeout": max(2, math.ceil(timeout)),
            # Server-side: a query or a lock wait is cancelled past the timeout.
            "options": f"-c statement_timeout={math.ceil(timeout * 1000)}",
        }
    engine = sa.create_engine(
        parsed,
        connect_args=connect_args,
        # A connection the server dropped (a restart) is replaced, not handed to a request.
        pool_pre_ping=True,
        pool_timeout=timeout,
        # Error messages would otherwise carry the statement's parameters.
        hide_parameters=True,
    )
    _check_dialect(engine)
    return engine, True


def table_for(prefix: str) -> sa.Table:
    """The key table of the store prefix ``prefix`` (``guard:`` -> ``guard_keys``).

    :raises InvalidStoreURL: if the name is not a plain lowercase SQL identifier.
    """
    name = prefix.rstrip(":").replace("-", "_") + "_keys"
    if not _IDENTIFIER.fullmatch(name):
        raise InvalidStoreURL(
            f"the store prefix {prefix!r} gives the table name {name!r}: a SQL store "
            "needs lowercase letters, digits and '_' (e.g. GUARD_STORE_PREFIX=guard:)"
        )
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("key_id", sa.String(256), primary_key=True),
        sa.Column("record", sa.Text, nullable=False),
        sa.Column("digest", sa.String(64), nullable=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("last_used", sa.Double, nullable=True),
        sa.Index(f"{name}_digest", "digest", unique=True),
    )


def init_schema(engine: sa.Engine, prefix: str = "guard:") -> tuple[int, int]:
    """Create or upgrade the key table of ``prefix``, in one transaction; a table at
    :data:`SCHEMA_VERSION` is left untouched. Returns the versions before and after
    (0: there was no table).

    :raises SchemaMismatch: for a table newer than this guard, or not the guard's.
    """
    table = table_for(prefix)
    with translate_errors(), engine.begin() as conn:
        before = schema_version(conn, table)
        if before > SCHEMA_VERSION:
            raise SchemaMismatch(_newer(table.name, before))
        for version in range(before, SCHEMA_VERSION):
            _MIGRATIONS[version](conn, table)
            schema_row = table.c.key_id == _SCHEMA_ROW
            conn.execute(sa.update(table).where(schema_row).values(version=version + 1))
    return before, max(before, SCHEMA_VERSION)


def schema_version(conn: sa.Connection, table: sa.Table) -> int:
    """The schema version of ``table`` (0 if it does not exist).

    :raises SchemaMismatch: for a table of that name that the guard did not create.
    """
    inspector = sa.inspect(conn)
    if not inspector.has_table(table.name):
        return 0
    version = None
    if {"key_id", "version"} <= {column["name"] for column in inspector.get_columns(table.name)}:
        query = sa.select(table.c.version).where(table.c.key_id == _SCHEMA_ROW)
        version = conn.execute(query).scalar_one_or_none()
    if version is None:
        raise SchemaMismatch(f"the table {table.name!r} exists but is not a guard key table")
    return int(version)


def _create(conn: sa.Connection, table: sa.Table) -> None:
    table.create(conn)
    conn.execute(sa.insert(table).values(key_id=_SCHEMA_ROW, record="", version=0))


#: ``_MIGRATIONS[n]`` brings a table from version ``n`` to ``n + 1``.
_MIGRATIONS = (_create,)


@contextmanager
def translate_errors() -> Iterator[None]:
    """Re-raise driver errors and pool timeouts as :class:`StoreUnavailable`, with the
    driver's message only (never the statement's parameters) and the error as cause."""
    try:
        yield
    except sa.exc.DBAPIError as exc:
        first_line = str(exc.orig).strip().splitlines()[:1]
        raise StoreUnavailable(f"sql: {type(exc.orig).__name__}: {''.join(first_line)}") from exc
    except sa.exc.TimeoutError as exc:
        raise StoreUnavailable(f"sql: {exc}") from exc


class SQLStore(KeyStore):
    """Keys in one SQL table, read through a process-local cache.

    :param engine: a ``postgresql+psycopg`` or ``sqlite`` engine.
    :param prefix: names the table (``guard:`` -> ``guard_keys``) and its channel.
    :param timeout: seconds the invalidation listener waits to connect.
    :param cache_ttl: seconds a cached record is trusted while invalidations arrive.
    :param owns_engine: dispose of the engine on :meth:`close`.
    :raises SchemaMismatch: if the table is missing or at another version, so an app
        stops at start-up. A database that cannot be reached then is checked on first
        use instead: a worker started during an outage must not stop its whole server
        (gunicorn halts when one worker fails to boot); until the check passes every
        call is :class:`~stores.StoreUnavailable`, so requests are refused with 503.
    """

    schemes = ("postgresql+psycopg", "sqlite", "sqlalchemy")

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLStore:
        """The store at ``url``, or on ``engine=`` if given; other ``options`` are the
        constructor's."""
        engine = options.pop("engine", None)
        owned = engine is None
        if engine is None:
            engine, owned = engine_from_url(url, options.get("timeout", 0.5))
        return cls(engine, owns_engine=owned, **options)

    def __init__(
        self,
        engine: sa.Engine,
        *,
        prefix: str = "guard:",
        timeout: float = 0.5,
        cache_ttl: float = 5.0,
        owns_engine: bool = False,
    ) -> None:
        _check_dialect(engine)
        self.engine = engine
        self.table = table_for(prefix)
        self.timeout = timeout
        self.cache = RecordCache(cache_ttl)
        self._fallback = RecordCache(min(cache_ttl, FALLBACK_TTL))
        # Owners change seldom: trusted for FALLBACK_TTL at most, listener or not.
        self._owner_cache: BoundedCache[str, OwnerRecord | None] = BoundedCache(
            10_000, min(cache_ttl, FALLBACK_TTL)
        )
        self._notifies = engine.dialect.name == "postgresql"
        self._owns_engine = owns_engine
        self._listening = threading.Event()
        self._closed = threading.Event()
        #: The process whose connections the pool holds, and the one using the store.
        self._pool_pid, self._pid = os.getpid(), 0
        self._adopt_lock = threading.Lock()
        self._schema_checked = False
        try:
            with translate_errors(), engine.connect() as conn:
                self._check_schema(conn)
        except StoreUnavailable as exc:
            logger.warning("cannot check the key table yet (%s); checking on first use", exc)

    def _check_schema(self, conn: sa.Connection) -> None:
        version = schema_version(conn, self.table)
        if version < SCHEMA_VERSION:
            state = "does not exist" if version == 0 else f"is at schema version {version}"
            raise SchemaMismatch(
                f"the key table {self.table.name!r} {state}; this guard needs version "
                f"{SCHEMA_VERSION}: run `guard store init` with this store's URL and prefix"
            )
        if version > SCHEMA_VERSION:
            raise SchemaMismatch(_newer(self.table.name, version))
        self._schema_checked = True

    @contextmanager
    def _connect(self, *, begin: bool = False) -> Iterator[sa.Connection]:
        """A connection (in a transaction with ``begin``) on a table known to be this
        guard's; every failure is :class:`~stores.StoreUnavailable`."""
        if self._pid != os.getpid():
            self._adopt_process()  # before taking a connection from a forked pool
        with translate_errors(), self.engine.begin() if begin else self.engine.connect() as conn:
            if not self._schema_checked:
                try:
                    self._check_schema(conn)
                except SchemaMismatch as exc:
                    # Found at run time: refused like an outage (503), never a 500.
                    logger.error("%s", exc)
                    raise StoreUnavailable(str(exc)) from exc
            yield conn

    @property
    def subscribed(self) -> bool | None:
        """Whether this process listens for invalidations now, so the cache is trusted
        for ``cache_ttl`` (``None`` on SQLite, which has no notifications)."""
        if not self._notifies:
            return None
        return self._listening.is_set() and self._pid == os.getpid() and not self._closed.is_set()

    # -- reads -------------------------------------------------------------------------

    def get(self, key_id: str) -> KeyRecord | None:
        if not key_id:
            return None  # the schema row is no key
        cache = self._current_cache()
        entry = cache.get(key_id)
        if entry is not None:
            return entry[0]
        generation = cache.generation
        query = sa.select(self.table.c.record).where(self.table.c.key_id == key_id)
        with self._connect() as conn:
            raw = conn.execute(query).scalar_one_or_none()
        record = None if raw is None else _parse(raw, key_id)
        cache.put(key_id, record, generation)
        return record

    def find_digest(self, digest: str) -> KeyRecord | None:
        table = self.table
        query = sa.select(table.c.key_id, table.c.record).where(table.c.digest == digest)
        with self._connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else _parse(row.record, row.key_id)

    def records(self) -> list[KeyRecord]:
        table = self.table
        query = sa.select(table.c.key_id, table.c.record).where(
            table.c.key_id != _SCHEMA_ROW, ~table.c.key_id.startswith(_OWNER_ROW)
        )
        with self._connect() as conn:
            rows = conn.execute(query.order_by(table.c.key_id)).all()
        return [_parse(row.record, row.key_id) for row in rows]

    # -- owners ------------------------------------------------------------------------

    def get_owner(self, name: str) -> OwnerRecord | None:
        entry = self._owner_cache.get(name)
        if entry is not None:
            return entry[0]
        generation = self._owner_cache.generation
        table = self.table
        query = sa.select(table.c.record).where(table.c.key_id == _OWNER_ROW + name)
        with self._connect() as conn:
            raw = conn.execute(query).scalar_one_or_none()
        owner = None if raw is None else _parse_owner(raw, name)
        self._owner_cache.put(name, owner, generation)
        return owner

    def owners(self) -> list[OwnerRecord]:
        table = self.table
        query = sa.select(table.c.key_id, table.c.record).where(
            table.c.key_id.startswith(_OWNER_ROW)
        )
        with self._connect() as conn:
            rows = conn.execute(query.order_by(table.c.key_id)).all()
        return [_parse_owner(row.record, row.key_id.removeprefix(_OWNER_ROW)) for row in rows]

    def save_owner(self, owner: OwnerRecord) -> None:
        table, row = self.table, _OWNER_ROW + owner.name
        record = json.dumps(owner.to_dict())
        with self._connect(begin=True) as conn:
            done = conn.execute(
                sa.update(table)
                .where(table.c.key_id == row)
                .values(record=record, version=table.c.version + 1)
            )
            if done.rowcount == 0:
                conn.execute(sa.insert(table).values(key_id=row, record=record, version=1))
            self._notify(conn, [row])
        self._discard([row])

    def delete_owner(self, name: str) -> bool:
        row = _OWNER_ROW + name
        with self._connect(begin=True) as conn:
            done = conn.execute(sa.delete(self.table).where(self.table.c.key_id == row))
            self._notify(conn, [row])
        self._discard([row])
        return bool(done.rowcount)

    # -- writes ------------------------------------------------------------------------

    def save(
        self, *records: KeyRecord, expected: Mapping[str, KeyRecord | None] | None = None
    ) -> None:
        compared = dict(expected or {})
        written = {record.key_id: record for record in records}
        try:
            with self._connect(begin=True) as conn:
                self._compare_and_set(conn, compared, written)
        except Conflict:
            self._discard(compared)  # what was read is stale: the next read goes to the table
            raise
        self._discard(written)

    def _compare_and_set(
        self,
        conn: sa.Connection,
        compared: Mapping[str, KeyRecord | None],
        written: Mapping[str, KeyRecord],
    ) -> None:
        table = self.table
        query = sa.select(table.c.key_id, table.c.record, table.c.version)
        ids = sorted({*compared, *written})
        stored = {
            row.key_id: (row.record, row.version)
            for row in conn.execute(query.where(table.c.key_id.in_(ids)))
        }
        changed = [
            key_id
            for key_id, record in compared.items()
            if stored.get(key_id, (None,))[0] != (None if record is None else serialize(record))
        ]
        if changed:
            raise Conflict(sorted(changed))
        for key_id in (compared.keys() - written.keys()) & stored.keys():
            # Compared, not written: rewriting its version holds the row (its lock, or
            # SQLite's) until commit, so it cannot change before then either.
            self._write(conn, key_id, stored[key_id][1], {})
        try:
            for key_id, record in written.items():
                values = {
                    "record": serialize(record),
                    "digest": record.digest if record.imported else None,
                }
                if key_id in stored:
                    self._write(conn, key_id, stored[key_id][1], values)
                else:
                    conn.execute(sa.insert(table).values(key_id=key_id, version=1, **values))
        except sa.exc.IntegrityError:
            # A key inserted meanwhile under one of these ids, or an imported digest that
            # another key holds: the transaction is rolled back, nothing is written.
            raise Conflict(sorted(written)) from None
        if written:
            self._notify(conn, sorted(written))

    def _notify(self, conn: sa.Connection, ids: list[str]) -> None:
        if self._notifies:
            # Sent by PostgreSQL on commit, and only if the transaction commits.
            conn.execute(sa.select(sa.func.pg_notify(self.table.name, " ".join(ids))))

    def _write(
        self, conn: sa.Connection, key_id: str, version: int, values: dict[str, Any]
    ) -> None:
        table = self.table
        done = conn.execute(
            sa.update(table)
            .where(table.c.key_id == key_id, table.c.version == version)
            .values(version=table.c.version + 1, **values)
        )
        if done.rowcount != 1:  # committed by another writer since it was read
            raise Conflict([key_id])

    def touch(self, used: Mapping[str, float]) -> None:
        if not used:
            return
        table = self.table
        later = sa.or_(table.c.last_used.is_(None), table.c.last_used < sa.bindparam("at"))
        statement = (
            sa.update(table)
            .where(table.c.key_id == sa.bindparam("id"), later)
            .values(last_used=sa.bindparam("at"))
        )
        with self._connect(begin=True) as conn:
            # Guarded by "later": workers flush their batches in any order, the latest wins.
            conn.execute(statement, [{"id": key_id, "at": at} for key_id, at in used.items()])

    def last_used(self, key_id: str) -> float | None:
        query = sa.select(self.table.c.last_used).where(self.table.c.key_id == key_id)
        with self._connect() as conn:
            value = conn.execute(query).scalar_one_or_none()
        return None if value is None else float(value)

    def check(self) -> None:
        with self._connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def close(self) -> None:
        # The listener sees this within its wait and closes its own connection.
        self._closed.set()
        if self._owns_engine:
            self.engine.dispose()

    # -- invalidation ------------------------------------------------------------------

    def _current_cache(self) -> RecordCache:
        if self._pid != os.getpid():
            self._adopt_process()
        return self.cache if self._listening.is_set() else self._fallback

    def _adopt_process(self) -> None:
        # On first use in each process, not in __init__: gunicorn may build the store in
        # its master (--preload) and fork the workers from it. A forked worker must not
        # share the master's pooled connections, and the master's listener thread does
        # not exist in it.
        with self._adopt_lock:
            pid = os.getpid()
            if self._pid == pid:
                return
            if self._owns_engine and self._pool_pid != pid:
                self.engine.dispose(close=False)  # the parent's to close, not this process's
                self._pool_pid = pid
            self._pid = pid
            self._listening.clear()
            self.cache.clear()
            self._fallback.clear()
            if self._notifies:
                threading.Thread(target=self._listen, name="guard-invalidate", daemon=True).start()

    def _listen(self) -> None:
        args, params = self.engine.dialect.create_connect_args(self.engine.url)
        params = {
            **params,
            "autocommit": True,
            "connect_timeout": max(2, math.ceil(self.timeout)),
            # A server gone silent (a network cut) is noticed in about 10 s, not hours.
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 2,
        }
        delay = 0.1
        while not self._closed.is_set():
            try:
                with psycopg.connect(*args, **params) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.table.name)))
                    # Whatever was cached before may have missed a message.
                    self.cache.clear()
                    self._listening.set()
                    delay = 0.1
                    while not self._closed.is_set():
                        for notify in conn.notifies(timeout=0.5):
                            self._discard(notify.payload.split())
            except psycopg.Error:
                pass  # reconnect below
            except Exception:
                logger.warning("key invalidation listener failed; reconnecting", exc_info=True)
            finally:
                self._listening.clear()
                self.cache.clear()
                self._fallback.clear()
            self._closed.wait(delay)
            delay = min(delay * 2, MAX_BACKOFF)

    def _discard(self, key_ids: Iterable[str]) -> None:
        for key_id in key_ids:
            if key_id.startswith(_OWNER_ROW):
                self._owner_cache.discard(key_id.removeprefix(_OWNER_ROW))
                continue
            self.cache.discard(key_id)
            self._fallback.discard(key_id)


def serialize(record: KeyRecord) -> str:
    """The stored form of ``record``; deterministic, so the compare is on the text."""
    return json.dumps(record.to_dict())


def _parse(raw: str, key_id: str) -> KeyRecord:
    return parse_stored(KeyRecord, raw, "sql", f"key {key_id!r}")


def _parse_owner(raw: str, name: str) -> OwnerRecord:
    return parse_stored(OwnerRecord, raw, "sql", f"owner {name!r}")


def _check_dialect(engine: sa.Engine) -> None:
    if (engine.dialect.name, engine.dialect.driver) not in _DIALECTS:
        raise InvalidStoreURL(
            f"a SQL store runs on postgresql+psycopg or sqlite, not "
            f"{engine.dialect.name}+{engine.dialect.driver}"
        )


def _newer(table: str, version: int) -> str:
    return (
        f"the key table {table!r} is at schema version {version}, newer than this guard's "
        f"{SCHEMA_VERSION}: upgrade flask-api-guard"
    )
