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


def _hmac_sha256(key: bytes, message: bytes) -> bytes:
    return hmac.digest(key, message, hashlib.sha256)


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
        # itsdangerous' documented "hmac" derivation: the signing key is HMAC-SHA256 of
        # the salt under the secret. (Keys' verified-token memory spares the signature
        # check for known-good tokens, so its per-call derivation costs nothing there.)
        self._signer = Signer(
            [_bytes(key) for key in secret_keys],
            salt=SALT,
            key_derivation="hmac",
            digest_method=hashlib.sha256,
        )
        self._peppers = {
            _hmac_sha256(_bytes(pepper), b"guard.pepper-id")[:4].hex(): _bytes(pepper)
            for pepper in peppers
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

    def signed(self, token: str) -> bool:
        """Whether ``token`` is one this server signed (its secret is not checked): such
        a token cannot be guessed, only leaked."""
        try:
            self.open(token)
        except BadToken:
            return False
        return True

    def digest(self, secret: str) -> tuple[str, str]:
        """``(digest, pepper_id)`` of ``secret`` under the newest pepper."""
        return _hmac_sha256(self._peppers[self._pepper_id], secret.encode()).hex(), self._pepper_id

    def digests(self, secret: str) -> list[str]:
        """The digest of ``secret`` under every pepper, to find an imported key."""
        return [_hmac_sha256(pepper, secret.encode()).hex() for pepper in self._peppers.values()]

    def matches(self, record: KeyRecord, secret: str) -> bool:
        """Whether ``secret`` is the one ``record`` was made from, in constant time."""
        pepper = self._peppers.get(record.pepper_id, b"")
        expected = _hmac_sha256(pepper, secret.encode())
        # A record's digest is 64 lowercase hex digits (KeyRecord refuses anything else),
        # so both sides are ASCII text, which compare_digest takes as it is.
        return hmac.compare_digest(expected.hex(), record.digest) and bool(pepper)
