"""CORS for an exact origin allowlist, answered by Flask-CORS's own rules.

Only an origin in ``GUARD_CORS_ORIGINS`` (compared exactly, ignoring case, as browsers
send it) gets CORS headers, and its preflight is answered before authentication and
limits. Flask-CORS would treat an entry with regex characters as an unanchored pattern
(``https://(app|admin).example.com`` would grant ``https://app.example.com.evil.net``):
the settings refuse such entries at start-up (:mod:`guard.config`).

Flask-CORS recomputes its headers on every response, yet for one set of options they
depend only on four request headers. The guard installs Flask-CORS, through its public
API, on a scratch app, asks it once per distinct combination from an allowed origin, and
keeps the answers in a small LRU.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from flask import Flask
from flask_cors import CORS

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
_ENVIRON_KEYS = tuple(key for _, key in _VARYING)


class Cors:
    """CORS headers for allowed origins; none at all when no origin is configured."""

    def __init__(
        self,
        origins: tuple[str, ...],
        *,
        allow_credentials: bool,
        allow_headers: tuple[str, ...],
        max_age: int,
    ) -> None:
        self.enabled = bool(origins)
        self._any = "*" in origins
        self._allowed = frozenset(origin.lower() for origin in origins)
        scratch = Flask("guard.cors")
        CORS(
            scratch,
            origins=list(origins),
            supports_credentials=allow_credentials,
            allow_headers=list(allow_headers),
            expose_headers=EXPOSE_HEADERS,
            max_age=max_age,
            send_wildcard=False,
            vary_header=True,
        )
        scratch.add_url_rule(
            "/", "probe", lambda: "", methods=["GET", "POST", "PUT", "PATCH", "DELETE"]
        )
        self._scratch = scratch
        self._headers = functools.lru_cache(maxsize=1024)(self._ask)

    def allows(self, environ: WSGIEnvironment) -> bool:
        """Whether the request comes from an allowed origin."""
        origin = environ.get("HTTP_ORIGIN")
        return (
            self.enabled and origin is not None and (self._any or origin.lower() in self._allowed)
        )

    def headers_for(self, environ: WSGIEnvironment) -> Headers:
        if not self.allows(environ):
            return []
        values = tuple(map(environ.get, _ENVIRON_KEYS))
        return self._headers(environ["REQUEST_METHOD"], values)

    def is_preflight(self, environ: WSGIEnvironment) -> bool:
        """A browser's preflight from an allowed origin: answered before auth and limits."""
        return (
            environ["REQUEST_METHOD"] == "OPTIONS"
            and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in environ
            and self.allows(environ)
        )

    def _ask(self, method: str, values: tuple[str | None, ...]) -> Headers:
        sent = [(name, value) for (name, _), value in zip(_VARYING, values, strict=True) if value]
        # A client per question: threads may ask at once.
        answer = self._scratch.test_client().open("/", method=method, headers=sent)
        return [
            (name, value)
            for name, value in answer.headers.items()
            if name.lower().startswith("access-control-") or name.lower() == "vary"
        ]
