"""Key lifecycle: create, verify, rotate, revoke, disable and import, over any store.

Shared by the request hook, the ``guard`` command and the scripts, so every path applies
the same rules. Functions that depend on time take ``now`` (seconds since the epoch), so
tests never patch the clock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import hashlib
import hmac
import ipaddress
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import NamedTuple, TypeVar

import stores
from guard._batch import Batcher
from guard.config import GuardConfig
from guard.keys.tokens import MAX_TOKEN_LENGTH, BadToken, TokenCodec
from guard.observability import key_audit, signals
from stores import (
    Conflict,
    InvalidRecord,
    KeyRecord,
    KeyStore,
    OwnerRecord,
    Quota,
    StoreUnavailable,
)
from stores.cache import BoundedCache

#: Seconds between writes of last-use times to the store, per process.
USE_FLUSH_INTERVAL = 10.0
#: Tokens remembered as verified, per process (see :meth:`Keys.verify`).
VERIFIED_CACHE_SIZE = 4096
#: Attempts of a lifecycle write that keeps meeting concurrent changes before giving up.
WRITE_ATTEMPTS = 5
#: What a Bearer token may hold (RFC 6750's b64token): an imported secret outside it
#: could never be sent in an Authorization header.
B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")

T = TypeVar("T")
#: A read of one record by verification: ``store.get(key_id)`` or ``find_digest(digest)``.
Lookup = Callable[[str], KeyRecord | None]
#: A write of last-use times: ``store.touch(used)``.
Touch = Callable[[Mapping[str, float]], None]


def _as_is(call: T) -> T:
    return call


class Reason(enum.Enum):
    """Why a token was accepted or refused: for the audit trail, never for the client."""

    VALID = "valid"
    MALFORMED = "malformed"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_KEY = "unknown_key"
    WRONG_SECRET = "wrong_secret"  # noqa: S105 - a reason code, not a secret
    EXPIRED = "expired"
    REVOKED = "revoked"
    ROTATED = "rotated"
    DISABLED = "disabled"
    UNAVAILABLE = "store_unavailable"
    #: The store holds a record for the key that cannot be read: refused like an
    #: invalid key, and audited, without making the whole store unavailable.
    INVALID_RECORD = "invalid_record"


class Verdict(NamedTuple):
    """The outcome of :meth:`Keys.verify`. ``record`` is set whenever the key was found."""

    reason: Reason
    record: KeyRecord | None = None
    key_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is Reason.VALID


class KeyStateError(ValueError):
    """A lifecycle operation does not apply to the key in its current state."""


class InvalidKeySettings(ValueError):
    """A key's name, scopes, limit or metadata break the rules every store reads records
    by (:class:`~stores.KeyRecord`): nothing was saved, since the record could never be
    read back (its token would never work, and a list of keys would stop at it)."""


class WriteUnconfirmed(StoreUnavailable):
    """The store did not answer a write, nor the check of whether it applied: the change
    may or may not be saved. Running the command again is safe (every write is a
    compare-and-set, and a repeated revocation publishes again).

    :ivar token: for a key issued by the write (create, rotate), its token, so that it is
        not lost if the write did apply; never in the message, so a traceback or a log
        line never shows it.
    :ivar record: the record the token belongs to.
    """

    def __init__(
        self, message: str, *, token: str | None = None, record: KeyRecord | None = None
    ) -> None:
        super().__init__(message)
        self.token = token
        self.record = record


@contextlib.contextmanager
def _settings_checked() -> Iterator[None]:
    """Around building a record from an operator's settings: the record's own checks
    (the readers' rules) refusing it are bad settings, not a bad store."""
    try:
        yield
    except InvalidRecord as exc:
        raise InvalidKeySettings(f"not saved: {exc}") from None


def networks(allow_from: Iterable[str]) -> tuple[str, ...]:
    """An operator's allowlist in the form records hold: each network as ``ipaddress``
    writes it (a single address is its ``/32`` or ``/128``), duplicates dropped, in order.

    :raises InvalidKeySettings: naming the first entry that is not a network, or that has
        host bits set (``10.0.0.1/8``: which was meant, the address or the network?).
    """
    found: dict[str, None] = {}
    for text in allow_from:
        try:
            found[str(ipaddress.ip_network(text.strip(), strict=True))] = None
        except ValueError as exc:
            raise InvalidKeySettings(f"not saved: {exc}") from None
    return tuple(found)


class _Remembered(NamedTuple):
    key_id: str
    digest: str


def _topped_up(
    allowance: int, refill: str | None, old: Quota | None, counter: str, at: float
) -> Quota | None:
    """A quota set (or topped up) at ``at``: ``allowance`` counted afresh from then, with
    ``refill`` or else the one ``old`` had; no quota for an allowance of 0. The count
    keeps ``old``'s name, so a rotation's tokens, or an owner's keys, share it."""
    if not allowance:
        return None
    if old is None:
        return Quota(allowance, refill, at, counter)
    return Quota(allowance, refill or old.refill, at, old.counter)


def _fingerprint(token: str) -> bytes:
    # BLAKE2b, not SHA-256: hashlib's SHA-256 goes through OpenSSL 3, whose per-call
    # set-up measured 16 µs in a gunicorn worker, where its caches are cold.
    return hashlib.blake2b(token.encode("utf-8", "surrogatepass"), digest_size=32).digest()


# Compared against when the key id is unknown, so that an unknown id, a wrong secret and
# a refused key all cost the same digest computation.
_NO_RECORD = KeyRecord(key_id="-", name="-", digest="0" * 64, pepper_id="-", created_at=0)


class Keys:
    """The operations on keys in one store.

    :param accept_imported: look up tokens that are not in this server's format by their
        digest, for secrets imported from a legacy system. Off by default, so that a
        flood of random tokens never reaches the store.
    :param actor: who the operations' audit entries name
        (:mod:`guard.observability.key_audit`); by default the OS user running this
        process, read at each operation.
    """

    def __init__(
        self,
        store: KeyStore,
        codec: TokenCodec,
        *,
        accept_imported: bool = False,
        clock: Callable[[], float] = time.time,
        actor: str | None = None,
    ) -> None:
        self.actor = actor
        self._observe_lookup: Callable[[Lookup], Lookup] = _as_is
        self._observe_touch: Callable[[Touch], Touch] = _as_is
        self.store = store
        self.codec = codec
        self.accept_imported = accept_imported
        self.clock = clock
        # Last use is a hint for operators, not a record: a batch lost to an outage is
        # dropped, and the next request notes the key again.
        self._uses: Batcher[tuple[str, float]] = Batcher(
            self._record_uses, lambda uses, error: None, interval=USE_FLUSH_INTERVAL
        )
        # Tokens that passed verification lately, by BLAKE2b fingerprint (the token is not
        # kept, and a fingerprint of a 256-bit random token reveals nothing about it).
        # Only valid tokens are added, so forged ones neither fill nor evict it; an entry
        # is used only while the record still holds the digest it was verified against.
        self._verified: BoundedCache[bytes, _Remembered] = BoundedCache(VERIFIED_CACHE_SIZE)
        # The second each key was last noted in: a key is noted once a second at most.
        self._noted: BoundedCache[str, int] = BoundedCache(VERIFIED_CACHE_SIZE)

    @property
    def store(self) -> KeyStore:
        """The store itself (never a wrapper around it), so whoever reads it, the
        ``guard`` command for one, sees what kind of store it is."""
        return self._store

    @store.setter
    def store(self, store: KeyStore) -> None:
        self._store = store
        # Bound once, here: verification calls them on every request.
        self._get = self._observe_lookup(store.get)
        self._find_digest = self._observe_lookup(store.find_digest)
        self._touch = self._observe_touch(store.touch)

    def observe_store(
        self, lookup: Callable[[Lookup], Lookup], touch: Callable[[Touch], Touch]
    ) -> None:
        """Put ``lookup`` around every record read verification makes (``get`` and
        ``find_digest``) and ``touch`` around every write of last-use times, on this
        store and any set later (the metrics time and count them). The store is not
        wrapped: :attr:`store` stays the store itself."""
        self._observe_lookup, self._observe_touch = lookup, touch
        self.store = self._store

    @classmethod
    def from_config(cls, config: GuardConfig, clock: Callable[[], float] = time.time) -> Keys:
        """The store, codec and policy that ``config`` describes."""
        store = stores.from_url(
            config.store_url,
            prefix=config.store_prefix,
            timeout=config.store_timeout,
            cache_ttl=config.store_cache_ttl,
        )
        codec = TokenCodec(config.secret_keys, config.peppers, config.token_prefix)
        return cls(store, codec, accept_imported=config.accept_imported_keys, clock=clock)

    def verify(self, token: str, now: float | None = None) -> Verdict:
        """Check ``token`` against the store. Never raises: an unreachable store gives
        ``Reason.UNAVAILABLE``, which callers must treat as a refusal.

        A token verified recently is checked against the store's current record without
        the signature and digest computations again; the record is still read and judged
        on every call, so revocation, expiry and rotation apply at once. A stored record
        that cannot be read gives ``Reason.INVALID_RECORD`` for that key alone.
        """
        fingerprint = _fingerprint(token)
        cached = self._verified.get(fingerprint)
        if cached is not None:
            remembered = cached[0]
            try:
                record = self._get(remembered.key_id)
            except StoreUnavailable:
                return Verdict(Reason.UNAVAILABLE, key_id=remembered.key_id)
            except InvalidRecord:
                return Verdict(Reason.INVALID_RECORD, key_id=remembered.key_id)
            if record is not None and hmac.compare_digest(record.digest, remembered.digest):
                return self._judge(record, now)
            # Deleted or re-digested: forget it, so later calls pay one lookup, not two.
            self._verified.discard(fingerprint)
        verdict = self._verify(token, now)
        if verdict.ok and verdict.record is not None:
            self._verified.put(
                fingerprint, _Remembered(verdict.record.key_id, verdict.record.digest)
            )
        return verdict

    def _verify(self, token: str, now: float | None) -> Verdict:
        try:
            key_id, secret = self.codec.open(token)
        except BadToken as exc:
            if self.accept_imported:
                return self._verify_imported(token, now)
            return Verdict(Reason(exc.reason))
        try:
            record = self._get(key_id)
        except StoreUnavailable:
            return Verdict(Reason.UNAVAILABLE, key_id=key_id)
        except InvalidRecord:
            return Verdict(Reason.INVALID_RECORD, key_id=key_id)
        matches = self.codec.matches(record or _NO_RECORD, secret)
        if record is None or record.imported:
            return Verdict(Reason.UNKNOWN_KEY, key_id=key_id)
        if not matches:
            return Verdict(Reason.WRONG_SECRET, record, key_id)
        return self._judge(record, now)

    def close(self) -> None:
        """Write pending last-use times, then release the store."""
        self._uses.close()
        self.store.close()

    def flush_uses(self) -> None:
        """Write the pending last-use times now (one store call), instead of at the next
        batch: for a command or a test that reads them back at once."""
        self._uses.flush()

    def note_use(self, record: KeyRecord, now: float | None = None) -> None:
        """Remember that ``record`` was used; stored in batches, off the request path.

        Last use is kept to the second: a key's further uses in a second it was already
        noted in change nothing (queueing one takes a lock; this is on every request)."""
        now = self.clock() if now is None else now
        second = int(now)
        if self._noted.get(record.key_id) == (second,):
            return
        self._noted.put(record.key_id, second)
        # By key: one pending entry per key, however many requests it serves.
        self._uses.add((record.key_id, now), record.key_id)

    def _record_uses(self, uses: list[tuple[str, float]]) -> None:
        self._touch(dict(uses))

    def _verify_imported(self, secret: str, now: float | None) -> Verdict:
        # Only what could ever have been imported is looked up (import refuses the rest):
        # no store call for it, and nothing to encode that is not plain ASCII.
        if len(secret) > MAX_TOKEN_LENGTH or B64TOKEN.fullmatch(secret) is None:
            return Verdict(Reason.MALFORMED)
        try:
            for digest in self.codec.digests(secret):
                record = self._find_digest(digest)
                if record is not None and self.codec.matches(record, secret):
                    return self._judge(record, now)
        except StoreUnavailable:
            return Verdict(Reason.UNAVAILABLE)
        except InvalidRecord:
            return Verdict(Reason.INVALID_RECORD)
        return Verdict(Reason.UNKNOWN_KEY)

    def _judge(self, record: KeyRecord, now: float | None) -> Verdict:
        refusal = record.refusal(self.clock() if now is None else now)
        reason = Reason.VALID if refusal is None else Reason(refusal)
        return Verdict(reason, record, record.key_id)

    def audit(
        self, event: str, record: KeyRecord, changed: dict[str, object], *, confirmed: bool = True
    ) -> None:
        """Write the audit entry of an operation on ``record`` by :attr:`actor`; for one
        made outside the store (``guard keys reset-limits`` clears the limiter's counters),
        the store's own writes are audited by the methods here."""
        key_audit.emit(event, record, self._actor(), changed, confirmed=confirmed)

    def _actor(self) -> str:
        return self.actor or key_audit.os_user()

    @contextlib.contextmanager
    def _audited(self, event: str, *changes: tuple[KeyRecord | None, KeyRecord]) -> Iterator[None]:
        """Around a write: an entry per record changed once the store confirms it, or
        marked unconfirmed when it could not tell (the change may have applied, and a
        key that may work is never missing from the trail); none when it was refused."""
        try:
            yield
        except WriteUnconfirmed:
            self._audit(event, changes, confirmed=False)
            raise
        self._audit(event, changes, confirmed=True)

    def _audit(
        self,
        event: str,
        changes: tuple[tuple[KeyRecord | None, KeyRecord], ...],
        *,
        confirmed: bool,
    ) -> None:
        for before, after in changes:
            self.audit(event, after, key_audit.changes(before, after), confirmed=confirmed)

    def _retrying(self, change: Callable[[], T]) -> T:
        """Run ``change`` (read, decide, compare-and-set) again while another writer gets
        in between; each attempt reads afresh, so no concurrent change is lost."""
        for _ in range(WRITE_ATTEMPTS - 1):
            try:
                return change()
            except Conflict:
                continue
        return change()

    def _write(
        self,
        *records: KeyRecord,
        expected: Mapping[str, KeyRecord | None],
        token: str | None = None,
    ) -> None:
        """Save ``records`` by compare-and-set against ``expected``, and know the outcome.

        A store that did not answer may still have applied the write (the reply was lost
        after it ran). The write is then sent again expecting the records as written: a
        no-op that confirms it applied and, on Redis, publishes the invalidation the lost
        reply skipped; if they are not there, expecting what was read, as the first time.
        Every attempt is a compare-and-set, so a first write arriving late can never apply
        twice nor over another change.

        :raises WriteUnconfirmed: if the store does not answer the check either.
        :raises stores.Conflict: if the records are neither as read nor as written.
        """
        try:
            self.store.save(*records, expected=expected)
            return
        except StoreUnavailable:
            pass  # the outcome is read back below
        written = {record.key_id: record for record in records}
        # Written, read, written: the last in case the first write applied in between.
        for guess in (written, expected, written):
            try:
                self.store.save(*records, expected=guess)
                return
            except Conflict:
                continue
            except StoreUnavailable as exc:
                raise WriteUnconfirmed(
                    f"the key store did not confirm the change ({exc}): it may or may not be saved",
                    token=token,
                    record=records[0],
                ) from exc
        raise Conflict(sorted(written))

    def create(
        self,
        name: str,
        *,
        scopes: Iterable[str] = (),
        expires_in: float | None = None,
        rate_limit: str | None = None,
        metadata: Mapping[str, str] | None = None,
        allow_from: Iterable[str] = (),
        quota: int | None = None,
        quota_refill: str | None = None,
        owner: str | None = None,
        now: float | None = None,
    ) -> tuple[str, KeyRecord]:
        """Issue and store a new key; the token is returned here and never again.

        :param allow_from: the networks the key may be used from (:func:`networks`);
            none, from anywhere.
        :param quota: units the key may spend (each request its view's cost) per
            ``quota_refill`` period (``1d``, ``30d``, ``monthly``), or over its life if
            that is ``None``; ``None`` for no quota.
        :param owner: who the key belongs to: the owner's limits and quota (see
            :meth:`set_owner`) are shared by all of its keys, on top of each key's own.
        :raises InvalidKeySettings: for settings no store could read back; nothing saved.
        :raises WriteUnconfirmed: carrying the token, if the store did not confirm.
        """
        now = self.clock() if now is None else now
        key_id = self.codec.new_key_id()
        token, digest, pepper_id = self.codec.issue(key_id)
        with _settings_checked():
            record = KeyRecord(
                key_id=key_id,
                name=name,
                digest=digest,
                pepper_id=pepper_id,
                created_at=now,
                scopes=tuple(scopes),
                expires_at=None if expires_in is None else now + expires_in,
                rate_limit=rate_limit,
                metadata=dict(metadata or {}),
                allow_from=networks(allow_from),
                quota=None if quota is None else Quota(quota, quota_refill, now, key_id),
                owner=owner,
            )
        # Expecting no record under the new id: 64 random bits never collide in practice,
        # and if they did, the existing key is left alone.
        with self._audited("key.created", (None, record)):
            self._write(record, expected={key_id: None}, token=token)
        return token, record

    def import_secret(
        self,
        secret: str,
        name: str,
        *,
        scopes: Iterable[str] = (),
        rate_limit: str | None = None,
        metadata: Mapping[str, str] | None = None,
        allow_from: Iterable[str] = (),
        now: float | None = None,
    ) -> KeyRecord:
        """Store an existing plain secret by its digest, so clients keep sending it.

        :raises ValueError: for a secret no client could send as a Bearer token (outside
            RFC 6750's b64token, or longer than :data:`MAX_TOKEN_LENGTH`).
        :raises InvalidKeySettings: for settings no store could read back; nothing saved.
        """
        if len(secret) > MAX_TOKEN_LENGTH or B64TOKEN.fullmatch(secret) is None:
            raise ValueError(
                f"a secret must be 1 to {MAX_TOKEN_LENGTH} characters of RFC 6750's b64token "
                "(letters, digits, - . _ ~ + /, then = padding): no other can be sent as a "
                "Bearer token"
            )
        digest, pepper_id = self.codec.digest(secret)
        with _settings_checked():
            record = KeyRecord(
                key_id=self.codec.new_key_id(),
                name=name,
                digest=digest,
                pepper_id=pepper_id,
                created_at=self.clock() if now is None else now,
                scopes=tuple(scopes),
                rate_limit=rate_limit,
                metadata=dict(metadata or {}),
                allow_from=networks(allow_from),
                imported=True,
            )
        with self._audited("key.imported", (None, record)):
            self._write(record, expected={record.key_id: None})
        return record

    def rotate(
        self, key_id: str, *, grace: float, now: float | None = None
    ) -> tuple[str, KeyRecord]:
        """Issue a successor with the same name, scopes and limit; the old key stays valid
        for ``grace`` seconds, then is refused as ``rotated``.

        :raises KeyStateError: if the key is revoked, expired or already rotated (also
            when that happened while this rotation was being prepared).
        :raises WriteUnconfirmed: carrying the successor's token, if the store did not
            confirm the rotation.
        """

        def attempt() -> tuple[str, KeyRecord]:
            token, new, old = self.prepare_rotation(key_id, grace=grace, now=now)
            self.save_rotation(new, old, token=token)
            return token, new

        return self._retrying(attempt)

    def prepare_rotation(
        self, key_id: str, *, grace: float, now: float | None = None
    ) -> tuple[str, KeyRecord, KeyRecord]:
        """``(token, successor, old record as rotated)``, not yet saved: a batch job can
        keep the token safe before :meth:`save_rotation` writes both records at once.

        :raises KeyStateError: if the key is revoked, expired or already rotated.
        """
        now = self.clock() if now is None else now
        old = self.store.require(key_id)
        if old.replaced_by is not None:
            raise KeyStateError(f"key {key_id} was already rotated to {old.replaced_by}")
        refusal = old.refusal(now)
        if refusal is not None:
            raise KeyStateError(f"key {key_id} is {refusal} and cannot be rotated")
        new_id = self.codec.new_key_id()
        token, digest, pepper_id = self.codec.issue(new_id)
        lifetime = None if old.expires_at is None else old.expires_at - old.created_at
        new = dataclasses.replace(
            old,
            key_id=new_id,
            digest=digest,
            pepper_id=pepper_id,
            created_at=now,
            expires_at=None if lifetime is None else now + lifetime,
            replaces=key_id,
            imported=False,
        )
        return token, new, dataclasses.replace(old, replaced_by=new_id, grace_until=now + grace)

    def save_rotation(self, new: KeyRecord, old: KeyRecord, *, token: str | None = None) -> None:
        """Write a rotation from :meth:`prepare_rotation`, only if the old key is still
        the record it was prepared from (not revoked, changed or rotated since).

        :param token: the successor's, carried by :class:`WriteUnconfirmed` if raised.
        :raises stores.Conflict: if it changed; nothing is written.
        :raises WriteUnconfirmed: if the store did not confirm the write.
        """
        before = dataclasses.replace(old, replaced_by=None, grace_until=None)
        with self._audited("key.rotated", (before, old)):
            self._write(new, old, expected={old.key_id: before, new.key_id: None}, token=token)
        signals.key_rotated.send(self, key=new, replaced=old)

    def revoke(self, key_id: str, now: float | None = None) -> KeyRecord:
        """Refuse ``key_id`` from now on, in every process sharing the store.

        ``revoked_at`` records when, by this host's clock; the key is refused whatever it
        says (see :meth:`~stores.KeyRecord.refusal`). Revoking again keeps the earlier of
        the stored time and ``now``, so a time written by a host whose clock ran ahead is
        corrected, never kept. Every call saves, even when nothing changes, so that each
        successful revocation publishes its invalidation: a retry after a revocation
        whose publication was lost (a timeout) tells the workers.

        A compare-and-set on the record as read, retried on a concurrent change, so the
        revocation keeps every other change and no other write can undo it.

        :raises WriteUnconfirmed: if the store did not confirm the revocation.
        """

        def attempt() -> KeyRecord:
            record = self.store.require(key_id)
            at = self.clock() if now is None else now
            revoked_at = at if record.revoked_at is None else min(record.revoked_at, at)
            revoked = dataclasses.replace(record, revoked_at=revoked_at)
            with self._audited("key.revoked", (record, revoked)):
                self._write(revoked, expected={key_id: record})
            if revoked != record:
                signals.key_revoked.send(self, key=revoked)
            return revoked

        return self._retrying(attempt)

    def disable(self, key_id: str) -> KeyRecord:
        """Refuse ``key_id`` until :meth:`enable`, in every process sharing the store,
        keeping everything else about it (scopes, limits, expiry, rotation links).

        A compare-and-set on the record as read, retried on a concurrent change. Every
        call saves, even when the key is already disabled, so a retry after a lost reply
        publishes the invalidation again (as :meth:`revoke` does).

        :raises WriteUnconfirmed: if the store did not confirm the change.
        """
        return self._retrying(lambda: self._set_disabled(key_id, True))

    def enable(self, key_id: str) -> KeyRecord:
        """Accept ``key_id`` again after :meth:`disable`; whatever else refuses it (expiry,
        the end of a grace period) still does.

        :raises KeyStateError: if the key is revoked: a revocation is never undone.
        :raises WriteUnconfirmed: if the store did not confirm the change.
        """
        return self._retrying(lambda: self._set_disabled(key_id, False))

    def _set_disabled(self, key_id: str, disabled: bool) -> KeyRecord:
        record = self.store.require(key_id)
        if not disabled and record.revoked_at is not None:
            raise KeyStateError(f"key {key_id} is revoked and cannot be enabled")
        changed = dataclasses.replace(record, disabled=disabled)
        with self._audited("key.disabled" if disabled else "key.enabled", (record, changed)):
            self._write(changed, expected={key_id: record})
        return changed

    def update(
        self,
        key_id: str,
        *,
        scopes: Iterable[str] | None = None,
        rate_limit: str | None = None,
        metadata: Mapping[str, str | None] | None = None,
        allow_from: Iterable[str] | None = None,
        quota: int | None = None,
        quota_refill: str | None = None,
        owner: str | None = None,
        now: float | None = None,
    ) -> KeyRecord:
        """Change a key's scopes, rate limit, metadata, allowlist, quota or owner without
        rotating it.

        A key in a rotation is one credential with two tokens: the change applies to the
        record named, to its successor, and to a predecessor still in its grace period,
        all in one compare-and-set. So a scope taken away is taken from every token that
        still works, and the successor does not bring back what the old key lost.

        :param scopes: the new scopes (all of them), or ``None`` to keep them.
        :param rate_limit: the new limit, ``""`` for the service's default, ``None`` to keep.
        :param metadata: entries to set; an entry whose value is ``None`` is removed.
        :param allow_from: the networks the key may be used from (all of them; empty:
            anywhere), or ``None`` to keep them.
        :param quota: a top-up: the allowance from now on, its count started afresh at
            ``now`` (whatever was spent of the old one is forgotten); ``0`` removes the
            quota; ``None`` keeps it as it is.
        :param quota_refill: with ``quota``, its refill (``None``: the one it had, or
            none, a lifetime quota, for a key that had no quota).
        :param owner: the key's owner from now on, ``""`` for none, ``None`` to keep it.
        :returns: the record named, as changed.
        :raises InvalidKeySettings: for settings no store could read back; nothing saved.
        """

        allowed = None if allow_from is None else networks(allow_from)
        at = self.clock() if now is None else now

        def change(record: KeyRecord, top_up: Quota | None) -> KeyRecord:
            merged = dict(record.metadata)
            for field, value in (metadata or {}).items():
                if value is None:
                    merged.pop(field, None)
                else:
                    merged[field] = value
            with _settings_checked():
                return dataclasses.replace(
                    record,
                    scopes=record.scopes if scopes is None else tuple(scopes),
                    rate_limit=record.rate_limit if rate_limit is None else (rate_limit or None),
                    metadata=merged,
                    allow_from=record.allow_from if allowed is None else allowed,
                    quota=record.quota if quota is None else top_up,
                    owner=record.owner if owner is None else (owner or None),
                )

        def attempt() -> KeyRecord:
            related = self.rotation_of(self.store.require(key_id))
            # One Quota for the whole rotation: its tokens spend from one count.
            named = related[0]
            top_up = _topped_up(quota or 0, quota_refill, named.quota, named.key_id, at)
            changes = [(record, change(record, top_up)) for record in related]
            writes = [new for old, new in changes if new != old]
            if writes:
                with self._audited("key.updated", *[(o, n) for o, n in changes if n != o]):
                    self._write(*writes, expected={record.key_id: record for record in related})
            return changes[0][1]

        return self._retrying(attempt)

    # -- owners ------------------------------------------------------------------------

    def set_owner(
        self,
        name: str,
        *,
        rate_limit: str | None = None,
        quota: int | None = None,
        quota_refill: str | None = None,
        now: float | None = None,
    ) -> OwnerRecord:
        """Create or change the owner ``name``: limits and a quota shared by every key
        naming it, on top of each key's own. Every worker sees the change as fast as a
        key's (the store publishes it as it does a revocation).

        :param rate_limit: the owner's limits (``1000/minute;50000/day``); ``""`` removes
            them, ``None`` keeps what it had.
        :param quota: as :meth:`update`'s: the allowance from now on, counted afresh;
            ``0`` removes it, ``None`` keeps it.
        :raises InvalidKeySettings: for settings no store could read back; nothing saved.
        """
        old = self.store.get_owner(name)
        at = self.clock() if now is None else now
        kept_limit = None if old is None else old.rate_limit
        kept_quota = None if old is None else old.quota
        with _settings_checked():
            owner = OwnerRecord(
                name,
                rate_limit=kept_limit if rate_limit is None else (rate_limit or None),
                quota=kept_quota
                if quota is None
                else _topped_up(quota, quota_refill, kept_quota, name, at),
            )
        self.store.save_owner(owner)
        changed = {
            field: getattr(owner, field)
            for field in ("rate_limit", "quota")
            if old is None or getattr(owner, field) != getattr(old, field)
        }
        quota = changed.get("quota")
        if isinstance(quota, Quota):
            changed["quota"] = quota.to_dict()
        key_audit.emit_owner("owner.set", name, self._actor(), changed)
        return owner

    def unset_owner(self, name: str) -> bool:
        """Remove the owner ``name``'s limits and quota (its keys keep naming it, and
        share nothing until it is set again); whether there was one."""
        removed = self.store.delete_owner(name)
        if removed:
            key_audit.emit_owner("owner.unset", name, self._actor())
        return removed

    def rotation_of(self, record: KeyRecord) -> list[KeyRecord]:
        """``record``, then its successors, then its predecessors still in their grace
        period: the records whose tokens are the same credential's (what
        :meth:`update` changes together). Each link is followed once, so a store edited
        into a loop of links cannot make it run forever."""
        related = {record.key_id: record}
        current = record
        while current.replaced_by is not None and current.replaced_by not in related:
            following = self.store.get(current.replaced_by)
            if following is None:
                break
            related[following.key_id] = current = following
        now = self.clock()
        current = record
        while current.replaces is not None and current.replaces not in related:
            preceding = self.store.get(current.replaces)
            # A disabled predecessor is still the same credential: it takes the change,
            # so enabling it never brings back what its successor lost.
            if (
                preceding is None
                or preceding.replaced_by != current.key_id
                or preceding.refusal(now) not in (None, "disabled")
            ):
                break
            related[preceding.key_id] = current = preceding
        return list(related.values())
