"""The ``Authorization: Bearer`` header (RFC 6750), read strictly."""

from __future__ import annotations

import re

#: ``Bearer`` (any case), one or more spaces, a b64token: nothing else is a credential.
_BEARER = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr] +([A-Za-z0-9\-._~+/]+=*)")
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
