"""The guard's request pipeline: the one place where the order of the stages lives.

Flask calls :func:`run` as one before-request hook. Each stage either lets the request
go on, answers it (a redirect, a preflight), or refuses it by raising a
:class:`~guard.errors.RequestRejected`, which Flask renders through the app's error
handlers::

    1  https       plain HTTP is redirected to HTTPS                  guard.https
    2  cors        a preflight from an allowed origin is answered     guard.cors
    3  policy      an exempt view needs nothing more                  guard.scopes
    4  auth        failed-attempt throttle, Bearer token, its key     guard.auth
    5  ratelimit   the key's limits                                   guard.ratelimit
    6  body        size and content type                              guard.body
    7  scopes      checked by the view's own wrapper when it is called guard.scopes

Around the pipeline, the WSGI layer (:mod:`guard.middleware`) opens each request's state
and request id, adds the security, CORS and rate-limit headers to every response, and
writes the audit entry.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

from flask import Response, current_app, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from stores.cache import BoundedCache

from . import scopes
from .auth import Authenticator
from .body import check_body
from .config import GuardConfig
from .context import STATE, RequestState
from .cors import Cors
from .errors import GuardUnavailable, refuse, retry_later
from .headers import SecurityHeaders
from .https import redirect_to_https
from .keys import Keys
from .ratelimit import RateLimits
from .scopes import Policy

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

logger = logging.getLogger("guard.errors")


@dataclasses.dataclass
class GuardState:
    """Everything the guard built for one app, in ``app.extensions["guard"]``."""

    config: GuardConfig
    keys: Keys
    limits: RateLimits
    auth: Authenticator
    headers: SecurityHeaders
    cors: Cors
    #: Endpoint -> policy, looked up on first use (views may be added after init_app).
    policies: BoundedCache[str | None, Policy] = dataclasses.field(
        default_factory=lambda: BoundedCache(4096)
    )

    def policy(self, endpoint: str | None) -> Policy:
        found = self.policies.get(endpoint)
        if found is not None:
            return found[0]
        policy = scopes.for_endpoint(current_app, endpoint)
        self.policies.put(endpoint, policy)
        return policy


def run(gs: GuardState) -> ResponseReturnValue | None:
    """The stages, in order, for the current request.

    A stage that fails in a way nobody planned for (a driver raising something else than
    its storage errors, say) fails closed: the request is refused with 503, and the
    exception is logged on ``guard.errors`` with its traceback. It never becomes a 500
    that skipped the rest of the checks unnoticed, nor a pass-through.
    """
    environ = request.environ
    state: RequestState = environ[STATE]
    try:
        return _stages(gs, state, environ)
    except HTTPException:
        raise
    except Exception:
        logger.exception("guard stage failed; request %s refused with 503", state.request_id)
        refuse(state, GuardUnavailable, "guard_error", retry_later())


def _stages(
    gs: GuardState, state: RequestState, environ: WSGIEnvironment
) -> ResponseReturnValue | None:
    redirect = redirect_to_https(request, environ, gs.config.force_https)
    if redirect is not None:
        state.reason = "https_redirect"
        return redirect
    if gs.cors.is_preflight(environ):
        state.reason = "preflight"
        return Response(status=204)
    policy = state.policy = gs.policy(request.endpoint)
    if policy.exempt:
        state.reason = "exempt"  # no token is looked at: nothing to guess against here
        return None
    key = gs.auth.authenticate(
        state, environ.get("HTTP_AUTHORIZATION"), environ.get("REMOTE_ADDR") or "-"
    )
    gs.limits.enforce(state, key)
    accepted = gs.config.content_types if policy.content_types is None else policy.content_types
    check_body(state, request, gs.config.max_content_length, accepted)
    return None
