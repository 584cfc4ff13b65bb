"""Authentication: the ``Authorization: Bearer`` header (RFC 6750), or the API key header
``GUARD_API_KEY_HEADER`` names, read strictly, and the key it names, with every failure
counted against the client's address.

A refusal names its cause to the audit trail only: the client sees one ``invalid_token``
for every bad token, whatever was wrong with it.
"""

from __future__ import annotations

import re

import limits.errors

from guard._request.rate_limits import RateLimits, retry_after
from guard._request.state import RequestState, refuse
from guard._request.throttle import FailureThrottle
from guard.errors import (
    AuthenticationRequired,
    GuardUnavailable,
    InvalidRequest,
    InvalidToken,
    RateLimited,
    retry_later,
)
from guard.keys.lifecycle import B64TOKEN, Keys, Reason
from stores import InvalidRecord, KeyRecord, OwnerRecord, StoreUnavailable

#: ``Bearer`` (any case), one or more spaces, a b64token: nothing else is a credential.
_BEARER = re.compile(rf"[Bb][Ee][Aa][Rr][Ee][Rr] +({B64TOKEN.pattern})")
#: Longer headers are refused before any parsing.
MAX_HEADER_LENGTH = 4096


class MissingCredentials(Exception):
    """No Bearer credentials: 401 without an error code (RFC 6750, section 3.1)."""


class MalformedCredentials(Exception):
    """A Bearer header that cannot be read: 400 ``invalid_request``."""


def bearer_token(header: str | None) -> str:
    """The token in an ``Authorization`` header value.

    :raises MissingCredentials: no header, an empty one, or another scheme.
    :raises MalformedCredentials: a Bearer header with no token, extra parts, bytes
        outside the b64token alphabet, or more than :data:`MAX_HEADER_LENGTH` characters.
    """
    if header is None or not header.strip():
        raise MissingCredentials("no_credentials")
    if len(header) > MAX_HEADER_LENGTH:
        raise MalformedCredentials("header_too_long")
    match = _BEARER.fullmatch(header)
    if match is not None:
        return match.group(1)
    if header.split(None, 1)[0].lower() == "bearer":
        raise MalformedCredentials("malformed_bearer")
    raise MissingCredentials("unsupported_scheme")


def request_token(authorization: str | None, api_key: str | None) -> str:
    """The token a request carries: in its ``Authorization`` header, or alone in the API
    key header (``api_key``, its value; ``None`` when that header is not configured or
    not sent).

    One credential per request: with both headers set the request is refused, whatever
    the ``Authorization`` scheme, so no layer in front of the app (a proxy adding its own
    credentials, say) and the guard can ever disagree on which one was checked.

    :raises MissingCredentials: as :func:`bearer_token`, when no API key is sent.
    :raises MalformedCredentials: as :func:`bearer_token`; for both headers at once; for
        an API key that is not one b64token, or longer than :data:`MAX_HEADER_LENGTH`.
    """
    if api_key is None or not api_key.strip():
        return bearer_token(authorization)
    if authorization is not None and authorization.strip():
        raise MalformedCredentials("two_credentials")
    if len(api_key) > MAX_HEADER_LENGTH:
        raise MalformedCredentials("header_too_long")
    if B64TOKEN.fullmatch(api_key) is None:
        raise MalformedCredentials("malformed_api_key")
    return api_key


class Authenticator:
    """Turns a request's credentials into its key, or refuses it.

    A client over its failed-attempt limit is refused (429) before a guess of its is
    looked up: a token this server did not sign (an imported secret, or a forgery). A
    signed token is verified whatever the client's failures, so one client's failures
    never lock out another's valid key behind the same address. A token that fails is
    counted in the process; one that needed the store also in the shared limiter, which
    blocks the client in every worker. No credentials, or an unreadable header, is no
    guess and counts for nothing (see :mod:`guard._request.throttle`).
    """

    def __init__(
        self, keys: Keys, throttle: FailureThrottle, limits: RateLimits, realm: str
    ) -> None:
        self.keys = keys
        self.throttle = throttle
        self.limits = limits
        #: The ``WWW-Authenticate`` challenge every refusal starts with (RFC 6750).
        self.challenge = f'Bearer realm="{realm}"'

    def authenticate(
        self, state: RequestState, header: str | None, address: str, api_key: str | None = None
    ) -> KeyRecord:
        """The request's key, or a refusal.

        :param header: the ``Authorization`` header's value.
        :param api_key: the API key header's value (see :func:`request_token`). Neither
            value is kept, logged or put in the refusal.
        """
        client = self.throttle.client(address)
        blocked = self.throttle.blocked(client)
        if blocked is not None and self._guesses(header, api_key):
            refuse(state, RateLimited, "too_many_failed_attempts", retry_after([blocked]))
        verdict = self.keys.verify(self._token(state, header, api_key))
        state.key_id = verdict.key_id
        if verdict.reason is Reason.UNAVAILABLE:
            refuse(state, GuardUnavailable, verdict.reason.value, retry_later())
        if not verdict.ok or verdict.record is None:
            self._count_failure(state, client, verdict.reason)
            challenge = f'{self.challenge}, error="invalid_token"'
            refuse(state, InvalidToken, verdict.reason.value, [("WWW-Authenticate", challenge)])
        state.key = verdict.record
        if verdict.record.owner is not None:
            state.owner = self._owner(state, verdict.record.owner)
        self.keys.note_use(verdict.record)
        return verdict.record

    def _owner(self, state: RequestState, name: str) -> OwnerRecord | None:
        """The owner's record (cached by the store as key records are), or a refusal
        (503): a key is never served without its owner's limits because the store did
        not answer, or held an owner record no reader takes."""
        try:
            return self.keys.store.get_owner(name)
        except StoreUnavailable:
            refuse(state, GuardUnavailable, Reason.UNAVAILABLE.value, retry_later())
        except InvalidRecord:
            refuse(state, GuardUnavailable, Reason.INVALID_RECORD.value, retry_later())

    def _guesses(self, header: str | None, api_key: str | None) -> bool:
        try:
            token = request_token(header, api_key)
        except (MissingCredentials, MalformedCredentials):
            return False
        return not self.keys.codec.signed(token)

    def _count_failure(self, state: RequestState, client: str, reason: Reason) -> None:
        self.throttle.count(client)
        if reason in (Reason.MALFORMED, Reason.BAD_SIGNATURE):
            return  # judged without the store: counted here only
        try:
            over = self.limits.count_failure(client)
        except limits.errors.StorageError:
            if not self.limits.fail_open:
                # A correct guess meets the outage at the rate-limit stage (503): a wrong
                # one answers the same, or the outage would tell them apart.
                refuse(state, GuardUnavailable, "limiter_unavailable", retry_later())
            return
        if over is not None:
            self.throttle.block(client, over.reset_in)

    def _token(self, state: RequestState, header: str | None, api_key: str | None) -> str:
        try:
            return request_token(header, api_key)
        except MissingCredentials as exc:
            refuse(state, AuthenticationRequired, str(exc), [("WWW-Authenticate", self.challenge)])
        except MalformedCredentials as exc:
            challenge = f'{self.challenge}, error="invalid_request"'
            refuse(state, InvalidRequest, str(exc), [("WWW-Authenticate", challenge)])
