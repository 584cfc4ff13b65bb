"""Security headers for a JSON API, compiled once by Flask-Talisman, and HTTPS redirection.

Talisman re-reads its policies on every response and trusts ``X-Forwarded-Proto`` from
any client. The guard runs Talisman once, at start-up, on a scratch app, and copies the
headers it produced; whether a request is secure is decided by ``request.is_secure``
alone, which only reflects ``X-Forwarded-Proto`` behind ``GUARD_TRUSTED_PROXIES``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from flask import Flask, Request, Response, redirect
from flask_talisman import Talisman
from werkzeug.wrappers import Response as WerkzeugResponse

from .config import GuardConfig

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment


class Headers(NamedTuple):
    """Headers ready to append to a WSGI header list, with their lowercased names."""

    pairs: list[tuple[str, str]]
    names: frozenset[str]


#: For JSON: nothing may load, frame or embed a response.
CONTENT_SECURITY_POLICY = {"default-src": "'none'", "frame-ancestors": "'none'"}


class SecurityHeaders:
    """The headers every response gets; HSTS only on requests that came over HTTPS."""

    def __init__(self, config: GuardConfig) -> None:
        scratch = Flask("guard.headers")
        talisman = Talisman(
            scratch,
            force_https=False,
            content_security_policy=CONTENT_SECURITY_POLICY,
            referrer_policy="no-referrer",
            frame_options="DENY",
            session_cookie_secure=False,
            strict_transport_security_max_age=config.hsts_max_age,
        )
        self.plain = self._compile(scratch, talisman, "http://guard.invalid")
        self.secure = self._compile(scratch, talisman, "https://guard.invalid")
        self.force_https = config.force_https

    @staticmethod
    def _compile(scratch: Flask, talisman: Talisman, base_url: str) -> Headers:
        with scratch.test_request_context("/", base_url=base_url):
            response = Response()
            talisman._set_response_headers(response)
        pairs = [(k, v) for k, v in response.headers.items() if k != "Content-Type"]
        return Headers(pairs, frozenset(k.lower() for k, _ in pairs))

    def redirects(self, environ: WSGIEnvironment) -> bool:
        """Whether this request is to be sent to HTTPS instead of being answered."""
        return self.force_https and environ["wsgi.url_scheme"] != "https"

    def https_redirect(self, request: Request) -> WerkzeugResponse | None:
        """A redirect to the HTTPS URL for a plain-HTTP request, when HTTPS is forced.

        308 keeps the method and body of a non-GET request; either way the client learns
        to use HTTPS before it sends a key in the clear again.
        """
        if not self.redirects(request.environ):
            return None
        code = 301 if request.method in ("GET", "HEAD") else 308
        return redirect(request.url.replace("http://", "https://", 1), code=code)
