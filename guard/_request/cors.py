"""CORS for an exact origin allowlist, answered by Flask-CORS's own rules.

Only an origin in ``GUARD_CORS_ORIGINS`` (compared exactly, ignoring case, as browsers
send it) gets CORS headers, and its preflight is answered before authentication and
limits. Flask-CORS would treat an entry with regex characters as an unanchored pattern
(``https://(app|admin).example.com`` would grant ``https://app.example.com.evil.net``):
the settings refuse such entries at start-up (:mod:`guard.config`).

Every response of an app with CORS on says ``Vary: Origin``: an allowed origin gets its
headers and any other origin none, so a shared cache must not hand one origin's answer to
another (Flask-CORS leaves it out when a single origin is configured).

Flask-CORS recomputes its headers in an after-request hook on every response, yet for
one set of options they depend only on the method and four request headers. The guard
calls Flask-CORS's own header logic directly (:func:`flask_cors.core.serialize_options`
once, :func:`flask_cors.core.get_cors_headers` per distinct question) and memoises the
answers: the same rules, without a hook per response. Those two functions are not in
Flask-CORS's documented API; checked against Flask-CORS 6.0.0 and 6.0.5, and
``tests/test_cors_headers.py`` compares every kind of answer with Flask-CORS installed on
an app through its public ``CORS(app)``, so a change in them fails there.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from flask_cors import core as flask_cors
from werkzeug.datastructures import Headers as RequestHeaders

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
VARY_ORIGIN = ("Vary", "Origin")


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
        # Built once, with the options Flask-CORS itself would compute for CORS(app, ...).
        self._options = flask_cors.serialize_options(
            {
                **flask_cors.DEFAULT_OPTIONS,
                "origins": list(origins),
                "supports_credentials": allow_credentials,
                "allow_headers": list(allow_headers),
                "expose_headers": EXPOSE_HEADERS,
                "max_age": max_age,
                "send_wildcard": False,
                "vary_header": True,
            }
        )
        # Pure memoisation: an answer depends on its arguments alone.
        self._headers = functools.lru_cache(maxsize=1024)(self._ask)

    def allows(self, environ: WSGIEnvironment) -> bool:
        """Whether the request comes from an allowed origin."""
        origin = environ.get("HTTP_ORIGIN")
        return (
            self.enabled and origin is not None and (self._any or origin.lower() in self._allowed)
        )

    def headers_for(self, environ: WSGIEnvironment) -> Headers:
        """The CORS headers of the response to this request (none when CORS is off)."""
        if not self.enabled:
            return []
        if not self.allows(environ):
            return [VARY_ORIGIN]
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
        sent = RequestHeaders(
            [(name, value) for (name, _), value in zip(_VARYING, values, strict=True) if value]
        )
        answer = flask_cors.get_cors_headers(self._options, sent, method)
        headers = [(name, str(value)) for name, value in answer.items(multi=True)]
        if not any(name.lower() == "vary" for name, _ in headers):
            headers.append(VARY_ORIGIN)
        return headers
