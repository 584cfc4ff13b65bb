"""The Flask extension: wires the guard's stages in front of every request.

A WSGI layer (:mod:`guard.middleware`) opens each request's state, adds the response
headers and writes the audit entry; before Flask runs, it also verifies a token and
sends its rate-limit hit (:func:`_prepare`), refusing nothing. Inside Flask, one
before-request hook runs the stages in order and decides: HTTPS redirection, CORS
preflight, the view's policy, the failed-attempt throttle, authentication, the per-key
limit, scopes, request criteria.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import flask_limiter
import limits.errors
from flask import Flask, Response, current_app, got_request_exception, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response as WerkzeugResponse

from stores import KeyRecord
from stores.redis import client_from_url

from . import audit, policy
from . import metrics as guard_metrics
from .audit_stream import RedisStreamHandler
from .auth import MalformedCredentials, MissingCredentials, bearer_token
from .config import GuardConfig
from .cors import Cors
from .errors import (
    AuthenticationRequired,
    ConfigurationError,
    GuardUnavailable,
    InsufficientScope,
    InvalidRequest,
    InvalidToken,
    PayloadTooLarge,
    RateLimited,
    RequestRejected,
    UnsupportedMediaType,
)
from .headers import SecurityHeaders
from .keys import Keys, Reason, Verdict
from .logs import current_request_id
from .middleware import STATE, GuardMiddleware
from .policy import Policy, View
from .ratelimit import LimiterUnavailable, RateLimits, parse_limit
from .report import Report
from .state import RequestState
from .throttle import FailureThrottle

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication, WSGIEnvironment

#: Seconds a client is told to wait when the store or limiter is down.
RETRY_AFTER_UNAVAILABLE = "5"


@dataclasses.dataclass
class GuardState:
    """Everything the guard built for one app, in ``app.extensions["guard"]``."""

    config: GuardConfig
    keys: Keys
    limits: RateLimits
    headers: SecurityHeaders
    cors: Cors
    throttle: FailureThrottle
    #: The ``WWW-Authenticate`` challenge every refusal starts with (RFC 6750).
    challenge: str
    #: Endpoint -> policy, filled on first use (views may be added after init_app).
    policies: dict[str | None, Policy] = dataclasses.field(default_factory=dict)


class Guard:
    """Protects every view of an app: ``Guard(app)`` or ``guard.init_app(app)``.

    Settings come from ``app.config`` (``GUARD_*``, see ``.env.example``); keyword
    arguments override them, named without the prefix: ``Guard(app, rate_limit="5/second")``.
    """

    def __init__(self, app: Flask | None = None, **settings: Any) -> None:
        self._settings = {f"GUARD_{name.upper()}": value for name, value in settings.items()}
        self._limiter: flask_limiter.Limiter | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Check the settings and install the guard on ``app``.

        :raises ConfigurationError: for a missing, unknown or unsafe setting.
        """
        config = GuardConfig.from_mapping({**app.config, **self._settings})
        if not (config.force_https or config.allow_plain_http or app.debug or app.testing):
            raise ConfigurationError(
                "GUARD_FORCE_HTTPS is off, so keys could travel in clear text: turn it on, "
                "or set GUARD_ALLOW_PLAIN_HTTP=true to acknowledge it (e.g. for local use)"
            )
        state = GuardState(
            config=config,
            keys=Keys.from_config(config),
            limits=RateLimits(config),
            headers=SecurityHeaders(config),
            cors=Cors(config, app),
            throttle=FailureThrottle(parse_limit(config.failed_auth_limit)),
            challenge=f'Bearer realm="{config.realm}"',
        )
        app.extensions["guard"] = state
        # Metrics (GUARD_METRICS): the store and the limiter's storage calls timed, and
        # one endpoint; the per-request count and signals are in the Report.
        metrics = guard_metrics.from_config(config)
        if metrics is not None:
            state.keys.store = metrics.timed_store(state.keys.store)
            state.limits.observe(metrics.timed_sender)
            view = metrics.make_view()
            if config.metrics_public:
                view = policy.update(view, exempt=True)
            else:
                view = policy.update(view, scopes=(guard_metrics.SCOPE,))
            app.add_url_rule(config.metrics_path, "guard_metrics", view, methods=["GET"])
        prepare = functools.partial(_prepare, state)
        wsgi_app: WSGIApplication = GuardMiddleware(
            app.wsgi_app, state.headers, state.cors, prepare, Report(app, metrics)
        )
        if config.trusted_proxies:
            # Outside the guard, so every stage sees the forwarded address and scheme.
            hops = config.trusted_proxies
            wsgi_app = ProxyFix(wsgi_app, x_for=hops, x_proto=hops)
        app.wsgi_app = wsgi_app  # type: ignore[method-assign,assignment]
        if app.config.get("MAX_CONTENT_LENGTH") is None and config.max_content_length:
            app.config["MAX_CONTENT_LENGTH"] = config.max_content_length
        # The first before-request hook: the guard sees every request before any other.
        app.before_request_funcs.setdefault(None, []).insert(0, lambda: _before(state))
        got_request_exception.connect(_note_exception, app)
        app.register_error_handler(RequestEntityTooLarge, _too_large)
        app.register_error_handler(limits.errors.StorageError, _limiter_down)
        if self._limiter is not None:
            self._init_limiter(app, config)
        if config.audit_stream_url:
            client = client_from_url(config.audit_stream_url, config.store_timeout)
            stream = RedisStreamHandler(client, config.audit_stream_key, config.audit_stream_maxlen)
            audit.logger.addHandler(stream)
            if audit.logger.level == logging.NOTSET:
                audit.logger.setLevel(logging.INFO)

    # -- the decorators --------------------------------------------------------------

    def exempt(self, view: View) -> View:
        """Let requests reach ``view`` with no key and no limit (health checks). A request
        that carries a valid key anyway still counts against that key's limit."""
        return policy.update(view, exempt=True)

    def require(self, *scopes: str) -> Callable[[View], View]:
        """Refuse (403) keys that lack any of ``scopes``. Place it below ``@app.route``."""
        return lambda view: policy.update(view, scopes=scopes)

    def accepts(self, *content_types: str) -> Callable[[View], View]:
        """Let ``view`` take bodies of ``content_types`` instead of GUARD_CONTENT_TYPES."""
        return lambda view: policy.update(view, content_types=content_types)

    # -- for views -------------------------------------------------------------------

    @property
    def current_key(self) -> KeyRecord | None:
        """The key that authenticated the current request (``None`` on exempt views)."""
        state: RequestState | None = request.environ.get(STATE)
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
        on the guard's storage, keyed by key id. Built on first use: apps that do not use
        it do not pay for its request hooks."""
        if self._limiter is None:
            self._limiter = flask_limiter.Limiter(_limit_key, headers_enabled=False)
        return self._limiter

    def _init_limiter(self, app: Flask, config: GuardConfig) -> None:
        app.config.setdefault("RATELIMIT_STORAGE_URI", config.ratelimit_storage_url)
        app.config.setdefault("RATELIMIT_STRATEGY", config.ratelimit_strategy)
        self.limiter.init_app(app)
        app.register_error_handler(flask_limiter.RateLimitExceeded, _route_limited)


def _limit_key() -> str:
    state: RequestState | None = request.environ.get(STATE)
    if state is not None and state.key is not None:
        return state.key.key_id
    return request.remote_addr or "-"


# -- the request pipeline --------------------------------------------------------------


def _prepare(gs: GuardState, environ: WSGIEnvironment, state: RequestState) -> None:
    """Before Flask: verify the token and send its key's rate-limit hit, so that on Redis
    the round trip overlaps Flask's own request setup instead of following it.

    Only a token that can be checked is acted on, and nothing is refused here: the hook
    refuses in the pipeline's order. A request that carries a valid key counts against
    that key also on an exempt view (it is never refused there).
    """
    if gs.headers.redirects(environ) or gs.cors.is_preflight(environ):
        return
    if gs.throttle.blocked(environ.get("REMOTE_ADDR") or "-") is not None:
        return
    try:
        token = bearer_token(environ.get("HTTP_AUTHORIZATION"))
    except (MissingCredentials, MalformedCredentials):
        return
    verdict = state.verdict = gs.keys.verify(token)
    if verdict.ok and verdict.record is not None:
        state.pending = gs.limits.send_key_hit(verdict.record)


def _before(gs: GuardState) -> ResponseReturnValue | None:
    environ = request.environ
    state: RequestState = environ[STATE]
    if state.verdict is None:  # else _prepare found it neither a redirect nor a preflight
        redirect = gs.headers.https_redirect(request)
        if redirect is not None:
            state.reason = "https_redirect"
            return redirect
        if gs.cors.is_preflight(environ):
            state.reason = "preflight"
            return Response(status=204)
    endpoint = request.endpoint
    view_policy = gs.policies.get(endpoint)
    if view_policy is None:
        view = current_app.view_functions.get(endpoint or "")
        view_policy = gs.policies[endpoint] = policy.of(view)
    if view_policy.exempt:
        state.reason = "exempt"
        return None
    try:
        _authenticate(gs, state, environ)
        _limit(gs, state)
    except LimiterUnavailable:
        _reject(state, GuardUnavailable, "limiter_unavailable", _retry_later())
    _check_scopes(gs, state, view_policy)
    if "CONTENT_LENGTH" in environ or "HTTP_TRANSFER_ENCODING" in environ:
        _check_body(gs, state, view_policy)
    return None


def _authenticate(gs: GuardState, state: RequestState, environ: WSGIEnvironment) -> None:
    address = environ.get("REMOTE_ADDR") or "-"
    verdict = state.verdict
    if verdict is None:  # not verified before Flask: blocked, or no usable credentials
        verdict = _verify(gs, state, environ, address)
    state.key_id = verdict.key_id
    if verdict.reason is Reason.UNAVAILABLE:
        _reject(state, GuardUnavailable, verdict.reason.value, _retry_later())
    if not verdict.ok:
        if verdict.reason in (Reason.MALFORMED, Reason.BAD_SIGNATURE):
            gs.throttle.count(address)  # judged without the store: counted here only
        else:
            over = gs.limits.count_failure(address)
            if over is not None:
                gs.throttle.block(address, over.reset_in)
        challenge = f'{gs.challenge}, error="invalid_token"'
        _reject(state, InvalidToken, verdict.reason.value, [("WWW-Authenticate", challenge)])
    state.key = verdict.record
    assert verdict.record is not None
    gs.keys.note_use(verdict.record)


def _verify(gs: GuardState, state: RequestState, environ: WSGIEnvironment, address: str) -> Verdict:
    blocked = gs.throttle.blocked(address)
    if blocked is not None:
        _reject(state, RateLimited, "too_many_failed_attempts", blocked.retry_after())
    try:
        token = bearer_token(environ.get("HTTP_AUTHORIZATION"))
    except MissingCredentials as exc:
        gs.throttle.count(address)
        _reject(state, AuthenticationRequired, str(exc), [("WWW-Authenticate", gs.challenge)])
    except MalformedCredentials as exc:
        gs.throttle.count(address)
        challenge = f'{gs.challenge}, error="invalid_request"'
        _reject(state, InvalidRequest, str(exc), [("WWW-Authenticate", challenge)])
    return gs.keys.verify(token)


def _limit(gs: GuardState, state: RequestState) -> None:
    assert state.key is not None
    pending = state.pending or gs.limits.send_key_hit(state.key)
    window = state.window = pending.result()
    if window is not None and not window.allowed:
        _reject(state, RateLimited, "rate_limited", window.retry_after())


def _check_scopes(gs: GuardState, state: RequestState, view_policy: Policy) -> None:
    if state.key is None or view_policy.scopes <= set(state.key.scopes):
        return
    scopes = " ".join(sorted(view_policy.scopes))
    challenge = f'{gs.challenge}, error="insufficient_scope", scope="{scopes}"'
    _reject(state, InsufficientScope, "insufficient_scope", [("WWW-Authenticate", challenge)])


def _check_body(gs: GuardState, state: RequestState, view_policy: Policy) -> None:
    length = request.content_length
    cap = gs.config.max_content_length
    if cap and length is not None and length > cap:
        _reject(state, PayloadTooLarge, "body_too_large")
    accepted = view_policy.content_types
    if accepted is None:
        accepted = gs.config.content_types
    has_body = bool(length) or "chunked" in request.headers.get("Transfer-Encoding", "")
    if accepted and has_body and request.mimetype not in accepted:
        _reject(state, UnsupportedMediaType, "unsupported_media_type")


def _reject(
    state: RequestState,
    kind: type[RequestRejected],
    reason: str,
    headers: list[tuple[str, str]] | None = None,
) -> None:
    state.outcome, state.reason = "denied", reason
    raise kind(reason, request_id=state.request_id, headers=headers)


def _retry_later() -> list[tuple[str, str]]:
    return [("Retry-After", RETRY_AFTER_UNAVAILABLE)]


def _note_exception(sender: Flask, exception: BaseException, **extra: object) -> None:
    # Flask turns the exception into a 500 itself; keep its type for the audit entry.
    state: RequestState | None = request.environ.get(STATE)
    if state is not None:
        state.error = type(exception).__name__


# -- error handlers: the same JSON shape for errors raised outside the guard's hooks ----


def _too_large(error: RequestEntityTooLarge) -> WerkzeugResponse:
    return _render(PayloadTooLarge, "body_too_large")


def _limiter_down(error: Exception) -> WerkzeugResponse:
    return _render(GuardUnavailable, "limiter_unavailable", _retry_later())


def _route_limited(error: flask_limiter.RateLimitExceeded) -> WerkzeugResponse:
    retry = str(error.limit.limit.get_expiry())
    return _render(RateLimited, "route_rate_limited", [("Retry-After", retry)])


def _render(
    kind: type[RequestRejected], reason: str, headers: list[tuple[str, str]] | None = None
) -> WerkzeugResponse:
    state: RequestState | None = request.environ.get(STATE)
    if state is not None:
        state.outcome, state.reason = "denied", reason
    rejection = kind(reason, request_id=state.request_id if state else "", headers=headers)
    return rejection.get_response()
