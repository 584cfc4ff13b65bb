"""The Flask extension: builds the guard's parts from the settings and wires them in.

``init_app`` installs three things on the app, all through Flask's public API: the WSGI
layer (:mod:`guard._request.middleware`: request id, response headers, audit entry), one
before-request hook running the stages in order (:mod:`guard._request.pipeline`), and error
handlers that answer in the guard's JSON shape. The decorators mark what a view (or a
blueprint) asks of the guard (:mod:`guard._request.policy`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import warnings
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import flask_limiter
import limits.errors
from flask import Blueprint, Flask, Request, current_app, got_request_exception, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response as WerkzeugResponse

from guard._counting.plan import parse_limits
from guard._request import pipeline
from guard._request import policy as scopes
from guard._request.auth import Authenticator
from guard._request.cors import Cors
from guard._request.middleware import GuardMiddleware
from guard._request.pipeline import GuardState
from guard._request.rate_limits import RateLimits
from guard._request.security_headers import SecurityHeaders
from guard._request.state import RequestState, current, refusal
from guard._request.throttle import FailureThrottle
from guard.config import GuardConfig
from guard.errors import (
    ConfigurationError,
    GuardUnavailable,
    PayloadTooLarge,
    RateLimited,
    RequestRejected,
    retry_later,
)
from guard.keys.lifecycle import Keys
from guard.observability import audit, redis_access
from guard.observability import metrics as guard_metrics
from guard.observability.audit_stream import RedisStreamHandler
from guard.observability.logs import current_request_id
from guard.observability.readiness import Readiness
from guard.observability.report import Report
from stores import KeyRecord
from stores.redis import RedisStore
from stores.urls import redact, scrub

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

Target = TypeVar("Target", bound=Callable[..., Any] | Blueprint)


class Guard:
    """Protects every view of an app: ``Guard(app)`` or ``guard.init_app(app)``.

    Settings come from ``app.config`` (``GUARD_*``, see ``.env.example``); keyword
    arguments override them, named without the prefix: ``Guard(app, rate_limit="5/second")``.
    """

    def __init__(self, app: Flask | None = None, **settings: Any) -> None:
        self._settings = {f"GUARD_{name.upper()}": value for name, value in settings.items()}
        self._limiter: flask_limiter.Limiter | None = None
        # The apps this guard runs on, for a Flask-Limiter first used after init_app.
        self._apps: weakref.WeakSet[Flask] = weakref.WeakSet()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Check the settings and install the guard on ``app``.

        :raises ConfigurationError: for a missing, unknown or unsafe setting.
        """
        config = GuardConfig.from_mapping({**app.config, **self._settings})
        if not (config.force_https or config.allow_plain_http or app.debug):
            raise ConfigurationError(
                "GUARD_FORCE_HTTPS is off, so keys could travel in clear text: turn it on, "
                "or set GUARD_ALLOW_PLAIN_HTTP=true to acknowledge it (e.g. for local use)"
            )
        state = _build(config)
        redis_access.check_at_start(config)
        app.extensions["guard"] = state
        denials = redis_access.named_limiter_denials(config)
        if denials is not None:
            state.limits.observe(redis_access.logging_denials(denials))
        # Metrics (GUARD_METRICS): the store's and the limiter's calls timed where they
        # are made (the store itself stays unwrapped, for the commands that read its
        # kind), and one endpoint; the per-request count and signals are in the Report.
        metrics = guard_metrics.from_config(config)
        if metrics is not None:
            metrics.watch(state.keys.store)
            state.keys.observe_store(metrics.timed_lookup, metrics.counted_touch)
            state.limits.observe(metrics.timed_hit)
            view = metrics.make_view(config.metrics_token, config.realm)
            if config.metrics_public or config.metrics_token:
                # The token is checked by the view itself, without the store or the
                # limiter: a key lookup would fail in the very outage being scraped.
                view = self.exempt(view)
            else:
                view = self.require(guard_metrics.SCOPE)(view)
            app.add_url_rule(config.metrics_path, "guard_metrics", view, methods=["GET"])
        if config.ready_path:
            ready = Readiness(state.keys.store, state.limits).make_view()
            app.add_url_rule(config.ready_path, "guard_ready", self.exempt(ready), methods=["GET"])
        wsgi_app: WSGIApplication = GuardMiddleware(
            app.wsgi_app,
            state.headers,
            state.cors,
            Report(app, metrics),
        )
        if config.trusted_proxies:
            # Outside the guard, so every stage sees the forwarded address and scheme.
            hops = config.trusted_proxies
            wsgi_app = ProxyFix(wsgi_app, x_for=hops, x_proto=hops)
        app.wsgi_app = wsgi_app  # type: ignore[method-assign,assignment]
        if app.config.get("MAX_CONTENT_LENGTH") is None and config.max_content_length:
            app.config["MAX_CONTENT_LENGTH"] = config.max_content_length
        earlier = len(app.before_request_funcs.get(None, ()))
        if earlier:
            warnings.warn(
                f"{earlier} before-request hook(s) were registered on {app.name!r} before the "
                "guard, so they run before authentication: create the guard first if they "
                "must only see authenticated requests",
                stacklevel=2,
            )
        app.before_request(functools.partial(pipeline.run, state))
        # Flask runs after-request hooks in reverse: installed with the guard (first, as
        # the warning above asks), it sees the response the app's own hooks made.
        app.after_request(pipeline.note_body)
        got_request_exception.connect(_note_exception, app)
        app.register_error_handler(RequestEntityTooLarge, _too_large)
        app.register_error_handler(limits.errors.StorageError, _limiter_down)
        self._apps.add(app)
        if self._limiter is not None:
            self._init_limiter(app)
        if config.audit_stream_url:
            with _url_setting("GUARD_AUDIT_STREAM_URL", config.audit_stream_url):
                stream = RedisStreamHandler.from_config(config)
            audit.logger.addHandler(stream)
            if audit.logger.level == logging.NOTSET:
                audit.logger.setLevel(logging.INFO)

    # -- the decorators: on a view (below @app.route) or on a blueprint -----------------
    # What they mark is decided by the pipeline, before the view runs
    # (guard._request.policy says where it finds the marks).

    def exempt(self, target: Target) -> Target:
        """Let requests reach ``target`` (a view or a blueprint) with no key and no limit,
        e.g. health checks. No token is looked at there. Only the function registered
        at the view's URL exempts it: under a decorator that hides it (no
        ``functools.wraps``), or above ``@app.route``, the view stays protected."""
        return scopes.mark(target, exempt=True)

    def require(self, *required: str) -> Callable[[Target], Target]:
        """Refuse (403) keys that lack any of ``required`` scopes, on a view or on every
        view of a blueprint: wherever it is written, under any other decorator, and
        above ``@app.route`` too (then at every URL that function is registered at)."""
        _check_names("require", "scope", required)
        return lambda target: scopes.mark(target, scopes=required)

    def accepts(self, *content_types: str) -> Callable[[Target], Target]:
        """Let a view take bodies of ``content_types`` instead of GUARD_CONTENT_TYPES
        (and refuse the others with 415), under any other decorator."""
        _check_names("accepts", "content type", content_types)
        return lambda target: scopes.mark(target, content_types=content_types)

    def cost(self, cost: int | Callable[[Request], int]) -> Callable[[Target], Target]:
        """Make each request to a view spend ``cost`` units of its key's quota instead of
        1: a number, or a function of the request returning one (called only for keys
        with a quota). A cost of 0 spends nothing and is never refused for a spent quota.
        A function that raises or returns anything else refuses the request (503)."""
        scopes.check_cost(cost)
        return lambda target: scopes.mark(target, cost=cost)

    def headers(self, *, csp: str) -> Callable[[Target], Target]:
        """Send ``csp`` as the Content-Security-Policy of a view's (or a blueprint's)
        responses instead of the API's ``default-src 'none'``: for an HTML page such as
        API docs. The other security headers stay."""
        _check_names("headers", "policy", (csp,))
        return lambda target: scopes.mark(target, csp=csp)

    def openapi(
        self, target: object, *, app: Flask | None = None, exempt_docs: bool = True
    ) -> None:
        """Document the guard in ``target``'s OpenAPI document: an APIFlask app, a
        flask-smorest ``Api`` or an apispec ``APISpec`` (before their paths are added;
        ``app`` is needed for the last two outside an app context). The framework's
        documentation pages become reachable without a key unless ``exempt_docs`` is
        false. Needs the ``openapi`` extra (apispec); see :mod:`guard.integrations.openapi`."""
        from guard.integrations.openapi import document  # apispec is an optional dependency

        document(target, app=app, exempt_docs=exempt_docs)

    # -- for views -------------------------------------------------------------------

    @property
    def current_key(self) -> KeyRecord | None:
        """The key that authenticated the current request (``None`` on exempt views)."""
        state = current()
        return None if state is None else state.key

    @property
    def request_id(self) -> str | None:
        """The current request's id, as in its audit entry and ``X-Request-ID`` (``None``
        outside a request). For log records, see :class:`guard.RequestIdFilter`."""
        return current_request_id()

    @property
    def keys(self) -> Keys:
        """Key operations on the current app's store."""
        state: GuardState = current_app.extensions["guard"]
        return state.keys

    @property
    def limiter(self) -> flask_limiter.Limiter:
        """A Flask-Limiter for per-route limits (``@guard.limiter.limit("5/minute")``),
        on the guard's storage, keyed by key id. Built on first use, before or after
        ``init_app``: apps that do not use it do not pay for its request hooks."""
        if self._limiter is None:
            self._limiter = flask_limiter.Limiter(_limit_key, headers_enabled=False)
            for app in list(self._apps):
                self._init_limiter(app)
        return self._limiter

    def _init_limiter(self, app: Flask) -> None:
        state: GuardState = app.extensions["guard"]
        config = state.config
        app.config.setdefault("RATELIMIT_STORAGE_URI", config.ratelimit_storage_url)
        # Connected as the guard's own limiter is (timeouts, retry; its pool on one
        # server), so a hung Redis answers 503 in GUARD_STORE_TIMEOUT here too.
        app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", state.limits.storage_options())
        app.config.setdefault("RATELIMIT_STRATEGY", config.ratelimit_strategy)
        assert self._limiter is not None
        # Its hook comes after the guard's, so its key function sees the key.
        self._limiter.init_app(app)
        app.register_error_handler(flask_limiter.RateLimitExceeded, _route_limited)


def _build(config: GuardConfig) -> GuardState:
    keys = Keys.from_config(config)
    if config.redis_max_connections and isinstance(keys.store, RedisStore):
        # Keys.from_config also builds the CLI's store, which makes one call at a time:
        # the pool cap is the app's concern, so the app's Redis store is built capped
        # here (the uncapped one has opened no connection yet).
        keys.store.close()
        keys.store = RedisStore.from_url(
            config.store_url,
            prefix=config.store_prefix,
            timeout=config.store_timeout,
            cache_ttl=config.store_cache_ttl,
            max_connections=config.redis_max_connections,
        )
    with _url_setting("GUARD_RATELIMIT_STORAGE_URL", config.ratelimit_storage_url):
        limits_ = RateLimits.from_config(config)
    throttle = FailureThrottle(
        parse_limits(config.failed_auth_limit)[0], ipv6_prefix=config.failed_auth_ipv6_prefix
    )
    return GuardState(
        config=config,
        keys=keys,
        limits=limits_,
        auth=Authenticator(keys, throttle, limits_, config.realm),
        headers=SecurityHeaders(config.hsts_max_age),
        cors=Cors(
            config.cors_origins,
            allow_credentials=config.cors_allow_credentials,
            allow_headers=config.cors_allow_headers,
            max_age=config.cors_max_age,
        ),
    )


@contextlib.contextmanager
def _url_setting(setting: str, url: str) -> Iterator[None]:
    """Name ``setting`` in the error of a client built from its ``url``, the URL's
    credentials redacted: this message stops the app, and lands in its logs."""
    try:
        yield
    except ConfigurationError:
        raise
    except (ValueError, limits.errors.ConfigurationError) as exc:
        raise ConfigurationError(f"{setting}={redact(url)!r}: {scrub(str(exc), url)}") from None


def _check_names(decorator: str, what: str, names: tuple[object, ...]) -> None:
    # @guard.require without parentheses would pass the view as a scope name.
    if not names or not all(isinstance(name, str) and name for name in names):
        raise TypeError(f"guard.{decorator}() takes one or more {what} names as strings")


def _limit_key() -> str:
    state = current()
    if state is not None and state.key is not None:
        return state.key.key_id
    return request.remote_addr or "-"


def _note_exception(sender: Flask, exception: BaseException, **extra: object) -> None:
    # Flask turns the exception into a 500 itself; keep its type for the audit entry.
    state = current()
    if state is not None:
        state.error = type(exception).__name__


# -- error handlers: the guard's JSON shape for errors raised outside its pipeline ------


def _too_large(error: RequestEntityTooLarge) -> WerkzeugResponse:
    if isinstance(error, PayloadTooLarge):  # the guard's own, already noted on the state
        return error.get_response()
    return _render(PayloadTooLarge, "body_too_large")


def _limiter_down(error: Exception) -> WerkzeugResponse:
    return _render(GuardUnavailable, "limiter_unavailable", retry_later())


def _route_limited(error: flask_limiter.RateLimitExceeded) -> WerkzeugResponse:
    retry = str(error.limit.limit.get_expiry())
    return _render(RateLimited, "route_rate_limited", [("Retry-After", retry)])


def _render(
    kind: type[RequestRejected], reason: str, headers: list[tuple[str, str]] | None = None
) -> WerkzeugResponse:
    state: RequestState | None = current()
    return refusal(state, kind, reason, headers).get_response()
