"""The Content-Security-Policy of an API's HTML documentation pages (Swagger UI, ReDoc).

Every API response is sent with ``default-src 'none'``, under which those pages run
nothing. :data:`DOCS_CSP` lets them run from the app's own assets only: scripts, styles
and images from the app, calls (``connect-src``) to the app alone, no ``<base>``, no form
posted anywhere, never framed. It is given per view or per blueprint with
``@guard.headers(csp=DOCS_CSP)``, never to the API.

Each page starts its UI with an inline ``<script>`` rendered from a template: it holds
the document's URL, which depends on the prefix the app is mounted under (per request),
and the app's UI settings. A hash computed once at start-up would have to render the
page outside a request and would break it silently whenever a request differs; so
:data:`DOCS_CSP` allows inline scripts, which works for any page as a constant, and
:func:`pin_inline_scripts` narrows that on each page as it is sent: ``'unsafe-inline'``
is replaced by the SHA-256 hashes of the page's own inline scripts. Scripts a bug in the
UI might inject later (event-handler attributes, ``javascript:`` URLs, new ``<script>``
elements) then never run. ``guard.openapi()`` does both for the framework's pages; an app
serving its own page adds ``pin_inline_scripts`` as an ``after_request`` function.
Inline styles stay allowed (ReDoc injects its styles at run time): CSS can load nothing
from elsewhere under this policy.
"""

from __future__ import annotations

import base64
import hashlib
from html.parser import HTMLParser
from typing import TypeVar

from flask import Response

#: Inline scripts and styles allowed: see the module's docstring.
_INLINE_SCRIPTS = "script-src 'self' 'unsafe-inline'"

DOCS_CSP = (
    "default-src 'none'; "
    f"{_INLINE_SCRIPTS}; "
    "style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; "
    "connect-src 'self'; "
    "worker-src blob:; "
    "base-uri 'none'; "
    "form-action 'none'; "
    "frame-ancestors 'none'"
)

AnyResponse = TypeVar("AnyResponse", bound=Response)


def pinned(page: str) -> str:
    """:data:`DOCS_CSP` with inline scripts limited to those of the HTML ``page``."""
    hashes = sorted({_hash(script) for script in inline_scripts(page)})
    return DOCS_CSP.replace(_INLINE_SCRIPTS, " ".join(["script-src 'self'", *hashes]))


def pin_inline_scripts(response: AnyResponse) -> AnyResponse:
    """Send an HTML ``response`` with :func:`pinned` as its Content-Security-Policy (the
    guard keeps a policy the response carries); other responses are left as they are.
    For ``after_request`` on a blueprint or app serving documentation pages."""
    if response.mimetype == "text/html" and not response.is_streamed:
        response.headers["Content-Security-Policy"] = pinned(response.get_data(as_text=True))
    return response


def inline_scripts(page: str) -> list[str]:
    """The text of each ``<script>`` element of ``page`` that has no ``src``."""
    parser = _InlineScripts()
    parser.feed(page)
    parser.close()
    return parser.scripts


def _hash(script: str) -> str:
    # Browsers hash the text after HTML's input preprocessing, which makes every line
    # break a line feed; in UTF-8.
    text = script.replace("\r\n", "\n").replace("\r", "\n")
    digest = hashlib.sha256(text.encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


class _InlineScripts(HTMLParser):
    # A script element's content is raw text to the parser, as to a browser.
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self._parts: list[str] | None = None  # the open inline script's text

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self._parts = None if any(name == "src" for name, _ in attrs) else []

    def handle_data(self, data: str) -> None:
        if self._parts is not None:
            self._parts.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._parts is not None:
            self.scripts.append("".join(self._parts))
            self._parts = None
