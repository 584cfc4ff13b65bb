"""Errors raised by the guard, and how a refused request is answered.

::

    GuardError
      ConfigurationError        a missing, unknown or unsafe setting; raised at start-up
      RequestRejected           a werkzeug HTTPException; each refusal below is also
                                werkzeug's class for its status (Unauthorized, ...), so an
                                app's @app.errorhandler(401) receives it, as Flask-Limiter's
                                RateLimitExceeded is a TooManyRequests
        InvalidRequest            400  error="invalid_request"   malformed Authorization
        AuthenticationRequired    401  (no error code)           no credentials
        InvalidToken              401  error="invalid_token"     forged, unknown, expired...
        InsufficientScope         403  error="insufficient_scope"
        AddressNotAllowed         403  error="address_not_allowed"  outside the key's allowlist
        PayloadTooLarge           413
        UnsupportedMediaType      415
        RateLimited               429  + Retry-After
          QuotaExceeded           429  error="quota_exceeded"    + Retry-After until the refill
        GuardUnavailable          503  + Retry-After             the store did not answer

A refusal tells the client no more than it needs: every bad token is the same
``invalid_token``, and the precise ``reason`` goes to the audit entry only.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, ClassVar

from werkzeug import exceptions
from werkzeug.exceptions import HTTPException

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

#: Seconds a client is told to wait when the store or limiter is down.
RETRY_AFTER_UNAVAILABLE = "5"


class GuardError(Exception):
    """Base class for the guard's own errors."""


class ConfigurationError(GuardError, ValueError):
    """A setting is missing, unknown or unsafe; the message names it."""


class RequestRejected(GuardError, HTTPException):
    """A request the guard refused. Rendered as JSON with the request id.

    :param reason: the precise cause, for the audit entry (never sent to the client).
    """

    code: int = 400
    error: ClassVar[str] = "invalid_request"
    message: ClassVar[str] = "The request was refused."

    def __init__(
        self,
        reason: str,
        *,
        request_id: str = "",
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(self.message)
        self.reason = reason
        self.request_id = request_id
        self.extra_headers = headers or []

    def get_headers(
        self, environ: WSGIEnvironment | None = None, scope: dict[str, Any] | None = None
    ) -> list[tuple[str, str]]:
        return [("Content-Type", "application/json"), *self.extra_headers]

    def get_body(
        self, environ: WSGIEnvironment | None = None, scope: dict[str, Any] | None = None
    ) -> str:
        body = {"error": self.error, "message": self.message, "request_id": self.request_id}
        return json.dumps(body)


class InvalidRequest(RequestRejected, exceptions.BadRequest):
    code = 400
    error = "invalid_request"
    message = "The Authorization header is malformed: send 'Authorization: Bearer <token>'."


class AuthenticationRequired(RequestRejected, exceptions.Unauthorized):
    code = 401
    error = "unauthorized"
    message = "An API key is required: send 'Authorization: Bearer <token>'."


class InvalidToken(RequestRejected, exceptions.Unauthorized):
    code = 401
    error = "invalid_token"
    message = "The API key is not valid."


class InsufficientScope(RequestRejected, exceptions.Forbidden):
    code = 403
    error = "insufficient_scope"
    message = "The API key does not grant access to this resource."


class AddressNotAllowed(RequestRejected, exceptions.Forbidden):
    """The key verified, but the request came from outside its ``allow_from`` networks.

    Said plainly rather than as ``invalid_token``: a client on the wrong network is to be
    told where to look, and the token is no weaker for it (it still works only from the
    networks its operator chose)."""

    code = 403
    error = "address_not_allowed"
    message = "The API key may not be used from this address."


class PayloadTooLarge(RequestRejected, exceptions.RequestEntityTooLarge):
    code = 413
    error = "payload_too_large"
    message = "The request body is too large."


class UnsupportedMediaType(RequestRejected, exceptions.UnsupportedMediaType):
    code = 415
    error = "unsupported_media_type"
    message = "The request body must be JSON (Content-Type: application/json)."


class RateLimited(RequestRejected, exceptions.TooManyRequests):
    code = 429
    error = "rate_limited"
    message = "Too many requests: retry after the time in the Retry-After header."


class QuotaExceeded(RateLimited):
    """The key's usage quota is spent (a RateLimited, so a 429 handler renders it too)."""

    error = "quota_exceeded"
    message = (
        "The API key's usage quota is spent: retry after the time in the Retry-After "
        "header, when it refills (none: it does not refill)."
    )


class GuardUnavailable(RequestRejected, exceptions.ServiceUnavailable):
    code = 503
    error = "unavailable"
    message = "The service cannot check credentials right now: retry shortly."


def retry_later() -> list[tuple[str, str]]:
    return [("Retry-After", RETRY_AFTER_UNAVAILABLE)]
