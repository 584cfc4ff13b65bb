"""The Content-Security-Policy of an API's HTML documentation pages (Swagger UI, ReDoc).

Every API response is sent with ``default-src 'none'``, under which those pages run
nothing. :data:`DOCS_CSP` lets them run from the app's own assets only: scripts, styles
and images from the app, calls (``connect-src``) to the app alone, no ``<base>``, no form
posted anywhere, never framed. It is given per view or per blueprint with
``@guard.headers(csp=DOCS_CSP)``, never to the API. Given alone it runs no inline
script at all.

Each page starts its UI with an inline ``<script>`` rendered from a template: it holds
the document's URL, which depends on the prefix the app is mounted under (per request),
and the app's UI settings, so no hash of it is known before the request. Hashing what the
page sends would allow whatever it sends, a script an HTML injection put there included.
So the scripts a page may run are the ones its templates declare: :func:`pin_inline_scripts`
installs a Jinja extension that gives every ``<script`` tag written in a template's own
text (never one that comes from a value rendered into it) the nonce the request was
issued, and sends the page with that nonce in its ``script-src``. An injected
``<script>``, event-handler attribute or ``javascript:`` URL then never runs, nor does a
script a page builds from a string it did not declare. ``guard.openapi()`` does this for
the framework's pages. Inline styles stay allowed (ReDoc injects its styles at run time):
CSS can load nothing from elsewhere under this policy.
"""

from __future__ import annotations

import functools
import logging
import re
import secrets
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    has_request_context,
    make_response,
    request,
)
from flask.blueprints import BlueprintSetupState
from jinja2.ext import Extension
from jinja2.lexer import Token, TokenStream
from markupsafe import Markup

logger = logging.getLogger("guard.errors")

#: Scripts from the app only; :func:`pin_inline_scripts` adds the request's nonce.
_SCRIPTS = "script-src 'self'"

DOCS_CSP = (
    "default-src 'none'; "
    f"{_SCRIPTS}; "
    "style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; "
    "connect-src 'self'; "
    "worker-src blob:; "
    "base-uri 'none'; "
    "form-action 'none'; "
    "frame-ancestors 'none'"
)

#: Where the current request's nonce lives once issued: in its WSGI environ, which no
#: other request shares (``flask.g`` is shared by requests under one app context).
_NONCE = "guard.script_nonce"
#: Where an app keeps the names of its pinned blueprints, in ``app.extensions``.
_PINNED = "guard.pinned_pages"
#: The template global each declared ``<script`` tag calls.
_GLOBAL = "guard_script_nonce"
#: A ``<script>`` start tag written whole in a template's own text, its attributes.
_SCRIPT_TAG = re.compile(r"<script(?=[\s/>])([^<>]*)>", re.IGNORECASE)
_SRC = re.compile(r"[\s/]src\s*=", re.IGNORECASE)

Target = TypeVar("Target", Flask, Blueprint)
AnyResponse = TypeVar("AnyResponse", bound=Response)


def pin_inline_scripts(target: Target) -> Target:
    """Let the HTML pages of ``target`` (an app or a blueprint, e.g. flask-swagger-ui's)
    run the inline scripts their Jinja templates declare, and no other inline script.

    Each of its requests that renders a template gets a fresh nonce, which each inline
    ``<script>`` tag written in the template carries; its HTML response is sent under
    :data:`DOCS_CSP` with that nonce. Call it before the blueprint is registered (or the
    app serves requests): templates compiled before it give no nonce, and their inline
    scripts do not run. (No before-request hook: APIFlask takes any blueprint that has
    one for its own.)
    """
    if isinstance(target, Blueprint):
        target.record(_pin_registered)
    elif isinstance(target, Flask):
        install(target)
        _pinned_names(target).add(None)
    elif isinstance(target, Response):
        # Registered as an after-request function, as earlier versions were: too late
        # to give the page's templates a nonce, so its inline scripts stay blocked.
        logger.error(
            "guard: pin_inline_scripts is given the app or blueprint serving the pages "
            "(pin_inline_scripts(blueprint)), not registered as an after-request "
            "function: this page's inline scripts do not run"
        )
        return target
    else:
        raise TypeError(
            "pin_inline_scripts() takes the Flask app or the blueprint serving the pages, "
            f"before it serves requests, not {type(target).__name__}"
        )
    target.after_request(pin)
    return target


def install(app: Flask) -> None:
    """Give ``app``'s templates the nonce of requests that are issued one."""
    env = app.jinja_env
    if ScriptNonces.identifier not in env.extensions:
        env.add_extension(ScriptNonces)
        env.globals[_GLOBAL] = _nonce_attribute
        if env.cache is not None:
            env.cache.clear()  # compiled before: their tags would give no nonce


def issue_nonce() -> str:
    """The current request's nonce, issued on first use."""
    environ = request.environ
    nonce: str | None = environ.get(_NONCE)
    if nonce is None:
        nonce = environ[_NONCE] = secrets.token_urlsafe(18)
    return nonce


def pin(response: AnyResponse) -> AnyResponse:
    """Send an HTML ``response`` under :data:`DOCS_CSP` with the request's nonce (the
    guard keeps a policy the response carries); other responses are left as they are."""
    nonce = request.environ.get(_NONCE)
    if nonce is not None and response.mimetype == "text/html":
        response.headers["Content-Security-Policy"] = DOCS_CSP.replace(
            _SCRIPTS, f"{_SCRIPTS} 'nonce-{nonce}'"
        )
    return response


def pinned_view(view: Callable[..., Any]) -> Callable[..., Response]:
    """``view`` issuing its own nonce and sent pinned, for a page whose blueprint is not
    the app's to change (``guard.openapi()`` wraps the framework's pages this way; the
    app's templates need :func:`install` too)."""

    @functools.wraps(view)
    def page(*args: Any, **kwargs: Any) -> Response:
        issue_nonce()
        return pin(make_response(view(*args, **kwargs)))

    return page


class ScriptNonces(Extension):
    """Gives each inline ``<script>`` tag in a template's own text the request's nonce.

    It works on the template's tokens: a tag in the template's text is a ``data`` token,
    while anything rendered into the page (a variable, a filter's output) is not, so no
    value, however it is escaped, ever carries the nonce. Only a start tag written whole
    in the text, without ``src``, gets it: one with a rendered value among its attributes
    might be given a ``src`` (or be one attribute long), and a script file the page
    names loads from the app under ``'self'`` as before, never from elsewhere.
    """

    def filter_stream(self, stream: TokenStream) -> Iterator[Token]:
        for token in stream:
            if token.type != "data":
                yield token
                continue
            text, done = token.value, 0
            for tag in _SCRIPT_TAG.finditer(text):
                if _SRC.search(tag.group(1)):
                    continue
                cut = tag.start() + len("<script")
                yield Token(token.lineno, "data", text[done:cut])
                yield from _nonce_call(token.lineno)
                done = cut
            if done < len(text):
                yield Token(token.lineno, "data", text[done:])


def _nonce_call(lineno: int) -> Iterator[Token]:
    # ``{{ guard_script_nonce() }}``, as Jinja's lexer would have read it.
    yield Token(lineno, "variable_begin", "{{")
    yield Token(lineno, "name", _GLOBAL)
    yield Token(lineno, "lparen", "(")
    yield Token(lineno, "rparen", ")")
    yield Token(lineno, "variable_end", "}}")


def _nonce_attribute() -> Markup:
    # Rendered outside a request, or for a page nobody pinned: the tag stays as written.
    if not has_request_context():
        return Markup("")
    pinned = _pinned_names(current_app)
    issued = _NONCE in request.environ
    if not issued and None not in pinned and pinned.isdisjoint(request.blueprints):
        return Markup("")
    return Markup(' nonce="{}"').format(issue_nonce())


def _pinned_names(app: Flask) -> set[str | None]:
    # The blueprints (by registered name) whose pages are pinned; None: the whole app.
    names: set[str | None] = app.extensions.setdefault(_PINNED, set())
    return names


def _pin_registered(state: BlueprintSetupState) -> None:
    app: Flask = state.app  # type: ignore[assignment]
    install(app)
    _pinned_names(app).add(f"{state.name_prefix}.{state.name}".lstrip("."))
