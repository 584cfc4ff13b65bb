"""The token format, its signature and the keyed digest of its secret.

A token reads ``{prefix}{key_id}.{secret}.{signature}``:

- ``prefix`` (``gk_`` by default) lets secret scanners and people recognise a leaked token;
- ``key_id`` (16 hex digits) is public and names the stored record;
- ``secret`` is 256 bits from :mod:`secrets`, base64url;
- ``signature`` is an itsdangerous HMAC-SHA256 over ``key_id.secret`` under the server
  secret, so a mistyped, truncated or forged token is refused without a store lookup.

Stores keep only ``digest``: HMAC-SHA256 of the secret under a server-side pepper, so a
leaked store cannot be used to test guesses offline. Both server secrets rotate: given
oldest to newest, the newest signs or digests, and every one still verifies.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from typing import NamedTuple

from itsdangerous import Signer
from itsdangerous.signer import HMACAlgorithm

from stores import KeyRecord

#: Salt keeping token signatures apart from anything else signed with the same secret.
SALT = b"guard.token"
#: Longest token (or imported secret) ever looked at; anything longer is refused unread.
MAX_TOKEN_LENGTH = 512


class BadToken(Exception):
    """The token is not one this server issued; ``reason`` says how it failed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Issued(NamedTuple):
    """A new token and what the store keeps of it."""

    token: str
    digest: str
    pepper_id: str


def _bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


class _PreparedHMAC:
    """HMAC-SHA256 under a few fixed server keys, each keyed once: a MAC then costs a
    copy of the keyed state (``hmac.HMAC.copy``), where ``hmac.digest`` sets the key and
    the algorithm up again on every call (several times slower with OpenSSL 3)."""

    def __init__(self) -> None:
        self._keyed: dict[bytes, hmac.HMAC] = {}

    def __call__(self, key: bytes, message: bytes) -> bytes:
        keyed = self._keyed.get(key)
        if keyed is None:
            keyed = self._keyed[key] = hmac.new(key, digestmod=hashlib.sha256)
        mac = keyed.copy()
        mac.update(message)
        return mac.digest()


_mac = _PreparedHMAC()


class _HMACSHA256(HMACAlgorithm):
    """itsdangerous' HMAC-SHA256 on prepared keys; its ``verify_signature`` still
    compares in constant time."""

    def __init__(self) -> None:
        super().__init__(hashlib.sha256)

    def get_signature(self, key: bytes, value: bytes) -> bytes:
        return _mac(key, value)


class TokenCodec:
    """Issues tokens, opens them, and digests their secrets.

    :param secret_keys: signing secrets, oldest to newest; the last one signs.
    :param peppers: digest keys, oldest to newest; the last one digests new secrets.
    :param prefix: written before every token, e.g. ``gk_``.
    """

    def __init__(
        self,
        secret_keys: Sequence[str | bytes],
        peppers: Sequence[str | bytes],
        prefix: str = "gk_",
    ) -> None:
        if not secret_keys or not peppers:
            raise ValueError("at least one secret key and one pepper are required")
        # The signing keys are derived from the secrets once here, instead of by the
        # Signer on every call; "none" then tells it to use them as given.
        derived = [_mac(_bytes(key), SALT) for key in secret_keys]
        self._signer = Signer(derived, key_derivation="none", algorithm=_HMACSHA256())
        self._peppers = {
            _mac(_bytes(pepper), b"guard.pepper-id")[:4].hex(): _bytes(pepper) for pepper in peppers
        }
        self._pepper_id = next(reversed(self._peppers))
        self.prefix = prefix
        # The last signature character is restricted to the ones whose unused low bits
        # are zero, so each signature has exactly one spelling: a flipped bit that base64
        # would ignore is still a refused token.
        self._shape = re.compile(
            re.escape(prefix)
            + r"([0-9a-f]{16})\.([A-Za-z0-9_-]{43})\.([A-Za-z0-9_-]{42}[AEIMQUYcgkosw048])"
        )

    @staticmethod
    def new_key_id() -> str:
        return secrets.token_hex(8)

    def issue(self, key_id: str) -> Issued:
        """A fresh token for ``key_id``; the caller shows it once and stores the digest."""
        secret = secrets.token_urlsafe(32)
        token = self.prefix + self._signer.sign(f"{key_id}.{secret}").decode()
        return Issued(token, *self.digest(secret))

    def open(self, token: str) -> tuple[str, str]:
        """``(key_id, secret)`` from a token this server signed.

        :raises BadToken: ``malformed`` if it is not shaped like a token,
            ``bad_signature`` if no signing secret made its signature.
        """
        match = self._shape.fullmatch(token) if len(token) <= MAX_TOKEN_LENGTH else None
        if match is None:
            raise BadToken("malformed")
        key_id, secret, signature = match.groups()
        if not self._signer.verify_signature(f"{key_id}.{secret}", signature):
            raise BadToken("bad_signature")
        return key_id, secret

    def digest(self, secret: str) -> tuple[str, str]:
        """``(digest, pepper_id)`` of ``secret`` under the newest pepper."""
        return _mac(self._peppers[self._pepper_id], secret.encode()).hex(), self._pepper_id

    def digests(self, secret: str) -> list[str]:
        """The digest of ``secret`` under every pepper, to find an imported key."""
        return [_mac(pepper, secret.encode()).hex() for pepper in self._peppers.values()]

    def matches(self, record: KeyRecord, secret: str) -> bool:
        """Whether ``secret`` is the one ``record`` was made from, in constant time."""
        pepper = self._peppers.get(record.pepper_id, b"")
        expected = _mac(pepper, secret.encode()).hex()
        return hmac.compare_digest(expected, record.digest) and bool(pepper)
