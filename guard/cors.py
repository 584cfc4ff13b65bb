"""CORS with an exact origin allowlist, through Flask-CORS's own rules.

Flask-CORS recomputes its headers on every response; for one set of options they depend
only on a few request headers, so the guard keeps the answers in a small bounded cache.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from flask import Flask
from flask_cors.core import get_cors_headers, get_cors_options
from werkzeug.datastructures import Headers as RequestHeaders

from .config import GuardConfig

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

Headers = list[tuple[str, str]]

#: Response headers a browser client may read.
EXPOSE_HEADERS = [
    "RateLimit",
    "RateLimit-Policy",
    "Retry-After",
    "X-Request-ID",
    "WWW-Authenticate",
]
#: The request headers CORS answers depend on, and their WSGI environ keys.
_VARYING = (
    ("Origin", "HTTP_ORIGIN"),
    ("Access-Control-Request-Method", "HTTP_ACCESS_CONTROL_REQUEST_METHOD"),
    ("Access-Control-Request-Headers", "HTTP_ACCESS_CONTROL_REQUEST_HEADERS"),
    ("Access-Control-Request-Private-Network", "HTTP_ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK"),
)


class Cors:
    """CORS headers for allowed origins; none at all when no origin is configured."""

    def __init__(self, config: GuardConfig, app: Flask) -> None:
        self.enabled = bool(config.cors_origins)
        self._options = get_cors_options(
            app,
            {
                "origins": list(config.cors_origins),
                "supports_credentials": config.cors_allow_credentials,
                "allow_headers": list(config.cors_allow_headers),
                "expose_headers": EXPOSE_HEADERS,
                "max_age": config.cors_max_age,
                "send_wildcard": False,
                "vary_header": True,
            },
        )
        self._headers = functools.lru_cache(maxsize=1024)(self._compute)

    def headers_for(self, environ: WSGIEnvironment) -> Headers:
        if not self.enabled or "HTTP_ORIGIN" not in environ:
            return []
        values = tuple(environ.get(key) for _, key in _VARYING)
        return self._headers(environ["REQUEST_METHOD"], values)

    def is_preflight(self, environ: WSGIEnvironment) -> bool:
        """A browser's preflight from an allowed origin: answered before auth and limits."""
        return (
            environ["REQUEST_METHOD"] == "OPTIONS"
            and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in environ
            and bool(self.headers_for(environ))
        )

    def _compute(self, method: str, values: tuple[str | None, ...]) -> Headers:
        request_headers = RequestHeaders(
            [(name, value) for (name, _), value in zip(_VARYING, values, strict=True) if value]
        )
        computed = get_cors_headers(self._options, request_headers, method)
        return [(name, str(value)) for name, value in computed.items(multi=True)]
