"""The guard's request pipeline: the one place where the order of the stages lives.

Flask calls :func:`run` as one before-request hook. Each stage either lets the request
go on, answers it (a redirect, a preflight), or refuses it by raising a
:class:`~guard.errors.RequestRejected`, which Flask renders through the app's error
handlers::

    1  https       plain HTTP is redirected to HTTPS                  https.py
    2  cors        a preflight from an allowed origin is answered     cors.py
    3  policy      the view's policy; an exempt view skips 4-6, 8     policy.py
    4  auth        failed-attempt throttle, token, its key            auth.py
    5  address     the client's address is in the key's allowlist     addresses.py
    6  ratelimit   the key's limits                                   rate_limits.py
    7  body        size and content type                              body.py
    8  scopes      the key has every scope the view requires          policy.py

Stage 5 comes before 6 so that a request from outside a key's networks spends none of
its limits. Stages 3, 7 and 8 are the one place a view's policy is decided, before it runs: the
wrappers the guard's decorators return only check that it was (see
:mod:`guard._request.policy`).

One pass of the stages per request: on Redis a key's requests spend the lease its
process holds (:mod:`guard._counting.leases`), so there is no round trip left to hide
behind Flask's own request setup.

Around the pipeline, the WSGI layer (:mod:`guard._request.middleware`) opens each request's state
and request id, adds the security, CORS and rate-limit headers to every response, and
writes the audit entry once the body is done: as the app returns it when it is in memory
(which :func:`run` notes on the response), when the server closes it when it streams.
"""

from __future__ import annotations

import dataclasses
import logging

from flask import Flask, Request, Response, current_app, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from guard._request import https
from guard._request import policy as scopes
from guard._request.addresses import check_address
from guard._request.auth import Authenticator
from guard._request.body import check_body
from guard._request.cors import Cors
from guard._request.rate_limits import RateLimits
from guard._request.security_headers import SecurityHeaders
from guard._request.state import RUNNING, STATE, Policy, RequestState, refuse
from guard.config import GuardConfig
from guard.errors import GuardUnavailable, retry_later
from guard.keys.lifecycle import Keys
from stores.cache import BoundedCache

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
    #: Endpoint -> (the view it was looked up for, its policy), looked up on first use
    #: (views may be added after init_app) and again whenever the view is another.
    policies: BoundedCache[str | None, tuple[object, Policy]] = dataclasses.field(
        default_factory=lambda: BoundedCache(4096)
    )

    def policy(self, endpoint: str | None, app: Flask) -> Policy:
        """The policy of ``endpoint`` in ``app``.

        It follows the view: a view swapped into ``app.view_functions`` after the
        endpoint's first request is decided by its own policy, never by the one
        cached for the view it replaced (an exempt one, say)."""
        view = app.view_functions.get(endpoint or "")
        found = self.policies.get(endpoint)
        if found is not None and found[0][0] is view:
            return found[0][1]
        policy = scopes.for_endpoint(app, endpoint)
        self.policies.put(endpoint, (view, policy))
        return policy


def run(gs: GuardState) -> ResponseReturnValue | None:
    """The stages, in order, for the current request.

    A stage that fails in a way nobody planned for (a driver raising something else than
    its storage errors, say) fails closed: the request is refused with 503, and the
    exception is logged on ``guard.errors`` with its traceback. It never becomes a 500
    that skipped the rest of the checks unnoticed, nor a pass-through.
    """
    # The request itself (the proxy's documented ``_get_current_object``): each attribute
    # read through the proxy costs a context lookup, and the stages read several.
    current: Request = request._get_current_object()  # type: ignore[attr-defined]
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    state: RequestState = current.environ[STATE]
    try:
        return _stages(gs, state, current, app)
    except HTTPException:
        raise
    except Exception:
        logger.exception("guard stage failed; request %s refused with 503", state.request_id)
        refuse(state, GuardUnavailable, "guard_error", retry_later())


def note_body(response: Response) -> Response:
    """The app's last after-request hook (installed once by ``init_app``): marks a
    response whose body is whole in memory, so the WSGI layer finishes it at once."""
    # Whatever answered (the view, a refusal, an error page), a body Flask holds in memory
    # is done when the app returns it, and the WSGI layer finishes the request then. So is
    # a refusal, error page or redirect Flask rendered from a werkzeug exception: whole,
    # and saying its length. Anything else (a generator, a file) streams: the request is
    # finished when the server closes the body.
    if response.is_sequence or (
        response.status_code >= 300 and response.content_length is not None
    ):
        state = RUNNING.get()
        if state is not None:
            state.body_in_memory = True
    return response


def _stages(
    gs: GuardState, state: RequestState, request: Request, app: Flask
) -> ResponseReturnValue | None:
    environ = request.environ
    if https.due(environ, gs.config.force_https):
        state.reason = "https_redirect"
        return https.redirect_to_https(request)
    if gs.cors.is_preflight(environ):
        state.reason = "preflight"
        return Response(status=204)
    policy = gs.policy(request.endpoint, app)
    if policy.methods is not None:
        policy = policy.methods.get(request.method, policy)
    state.policy = policy
    if policy.exempt:
        state.reason = "exempt"  # no token is looked at: nothing to guess against here
        # The size cap holds here too: werkzeug's own limit would cut a chunked body
        # short without a word, and the view would serve what was left.
        check_body(state, request, gs.config.max_content_length, policy.content_types or ())
        return None
    header = environ.get("HTTP_AUTHORIZATION")
    key_header = gs.config.api_key_environ
    api_key = None if key_header is None else environ.get(key_header)
    address = environ.get("REMOTE_ADDR") or "-"
    key = gs.auth.authenticate(state, header, address, api_key)
    check_address(state, key, address)
    gs.limits.enforce(state, key, lambda: scopes.cost_of(policy, request))
    accepted = gs.config.content_types if policy.content_types is None else policy.content_types
    check_body(state, request, gs.config.max_content_length, accepted)
    if policy.scopes:
        scopes.check_scopes(state, policy, gs.config.realm)
    return None
