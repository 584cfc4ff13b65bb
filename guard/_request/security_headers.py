"""The security headers every response gets, made by Flask-Talisman once per policy.

Talisman recomputes its headers on every response (about as much as a bare Flask
request costs), yet for one policy they are constants: one set for plain HTTP, one with
HSTS for HTTPS. So the guard installs Talisman, through its public API, on a scratch app
and reads what it sends to one request of each kind, at start-up; a view with its own
Content-Security-Policy (``@guard.headers(csp=...)``, e.g. an HTML docs page) gets its
own pair, made the same way the first time it is needed.

Talisman's own HTTPS redirect is off: it trusts ``X-Forwarded-Proto`` from any client.
The guard redirects in :mod:`guard._request.https`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import NamedTuple

from flask import Flask
from flask_talisman import Talisman

#: For JSON: nothing may load, frame or embed a response.
CONTENT_SECURITY_POLICY = "default-src 'none'; frame-ancestors 'none'"


class Headers(NamedTuple):
    """Headers ready to append to a WSGI header list, with their lowercased names."""

    pairs: list[tuple[str, str]]
    names: frozenset[str]


class SecurityHeaders:
    """The headers for a response; HSTS only on requests that came over HTTPS."""

    def __init__(self, hsts_max_age: int) -> None:
        self.hsts_max_age = hsts_max_age
        self.plain, self.secure = self.for_policy(CONTENT_SECURITY_POLICY)

    def pick(self, secure: bool, csp: str | None) -> Headers:
        """The headers for a response over HTTPS or not, under the view's own CSP."""
        plain, with_hsts = (self.plain, self.secure) if csp is None else self.for_policy(csp)
        return with_hsts if secure else plain

    @functools.lru_cache(maxsize=64)  # noqa: B019 - one instance per app, kept for its life
    def for_policy(self, csp: str) -> tuple[Headers, Headers]:
        """``(plain, secure)`` headers with ``csp`` as the Content-Security-Policy."""
        scratch = Flask("guard.headers")
        Talisman(
            scratch,
            force_https=False,
            content_security_policy=csp,
            referrer_policy="no-referrer",
            frame_options="DENY",
            session_cookie_secure=False,
            strict_transport_security_max_age=self.hsts_max_age,
        )
        scratch.add_url_rule("/", "probe", lambda: "")
        client = scratch.test_client()
        plain = client.get("/", base_url="http://guard.invalid")
        secure = client.get("/", base_url="https://guard.invalid")
        return _security_headers(plain.headers.items()), _security_headers(secure.headers.items())


def _security_headers(sent: Iterable[tuple[str, str]]) -> Headers:
    # Every header of the probe's answer but those any response has of its own.
    pairs = [(k, v) for k, v in sent if k.lower() not in ("content-type", "content-length")]
    return Headers(pairs, frozenset(k.lower() for k, _ in pairs))
