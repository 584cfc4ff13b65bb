"""HTTPS: plain-HTTP requests are redirected before anything else is looked at.

Whether a request came over HTTPS is ``wsgi.url_scheme`` alone, which reflects
``X-Forwarded-Proto`` only behind ``GUARD_TRUSTED_PROXIES`` (werkzeug's ``ProxyFix``,
installed by the extension). The redirect goes to the request's own host: set Flask's
``TRUSTED_HOSTS`` so that a forged ``Host`` is refused (400) instead of being reflected.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Request, redirect
from werkzeug.wrappers import Response

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment


def due(environ: WSGIEnvironment, force_https: bool) -> bool:
    """Whether this request came over plain HTTP while HTTPS is forced."""
    return force_https and environ["wsgi.url_scheme"] != "https"


def redirect_to_https(request: Request) -> Response:
    """The redirect to the HTTPS URL for a request :func:`due` for one.

    308 keeps the method and body of a non-GET request; either way the client learns to
    use HTTPS before it sends a key in the clear again. No setting of the app's and no
    test harness skips it: Flask's test client sends HTTPS when the app's
    ``PREFERRED_URL_SCHEME`` is ``"https"``.
    """
    code = 301 if request.method in ("GET", "HEAD") else 308
    # request.url checks the host against TRUSTED_HOSTS (a SecurityError, 400).
    return redirect(request.url.replace("http://", "https://", 1), code=code)
