"""What the guard learns about one request, and the request id.

The state lives in the WSGI environ (under :data:`STATE`) rather than on ``flask.g``:
the WSGI layer opens it before Flask runs and reads it after Flask has finished, to add
the response headers and write the audit entry, where no app context exists any more.
While the WSGI layer runs the app it is also the value of a context variable, so the
view's wrapper finds it without a lookup through Flask's ``request`` proxy, which costs
ten times as much; a streamed body, read after that, finds it through the request.
"""

from __future__ import annotations

import contextvars
import dataclasses
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import NoReturn

from flask import Request, has_request_context, request

from guard._counting.plan import Window
from guard.errors import RequestRejected
from stores import KeyRecord, OwnerRecord

#: Where the request's :class:`RequestState` lives in the WSGI environ.
STATE = "guard.state"

#: An incoming ``X-Request-ID`` is kept only if it is short and plain.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@+=/-]{1,128}")


def request_id(incoming: str | None) -> str:
    """The caller's request id if it is sane, else a new random one."""
    if incoming is not None and _REQUEST_ID.fullmatch(incoming):
        return incoming
    # Unique, not secret: the audit trail needs no CSPRNG call per request.
    return random.randbytes(16).hex()  # noqa: S311


@dataclasses.dataclass(frozen=True, slots=True)
class Policy:
    exempt: bool = False
    scopes: frozenset[str] = frozenset()
    #: Content types this view takes instead of ``GUARD_CONTENT_TYPES``.
    content_types: tuple[str, ...] | None = None
    #: A Content-Security-Policy for this view's responses instead of the API's.
    csp: str | None = None
    #: What a request spends from its key's quota (``@guard.cost``): a number of units,
    #: or a function of the request giving one (``None``: 1).
    cost: int | Callable[[Request], int] | None = None
    #: A class-based view's policy for each HTTP method whose own method asks something
    #: else than the whole view (``None``: the same for every method).
    methods: Mapping[str, Policy] | None = dataclasses.field(default=None, compare=False)


#: The policy of views with no decorator, and of requests that match no view.
PROTECTED = Policy()


@dataclasses.dataclass(slots=True)
class RequestState:
    request_id: str
    started: float = dataclasses.field(default_factory=time.perf_counter)
    #: The view's policy, once the pipeline looked it up (``None`` before routing).
    policy: Policy | None = None
    #: The authenticated key, once verified.
    key: KeyRecord | None = None
    #: The record of the key's owner, when it names one that has a record.
    owner: OwnerRecord | None = None
    #: The key id a refused token named, for the audit trail.
    key_id: str | None = None
    outcome: str = "allowed"
    reason: str = "valid"
    #: Where the key stands in each of its rate-limit windows.
    windows: tuple[Window, ...] = ()
    #: The protocol headers of the guard's refusal (``WWW-Authenticate``,
    #: ``Retry-After``, ``RateLimit*``): put back on the response if an app's own error
    #: handler rendered the refusal without them.
    refusal_headers: Sequence[tuple[str, str]] = ()
    status: int = 0
    #: The exception that ended the request, when the view (or its streamed body) raised one.
    error: str | None = None
    #: Flask answered with a body already in memory (a list, not a generator): the
    #: request is over when the app returns it, not only when the server closes it.
    body_in_memory: bool = False


#: The state of the request the WSGI layer is running the app for, on this thread or
#: greenlet (set and reset by :class:`guard._request.middleware.GuardMiddleware`).
RUNNING: contextvars.ContextVar[RequestState | None] = contextvars.ContextVar(
    "guard.running", default=None
)


def current() -> RequestState | None:
    """The state of the request being handled, if the guard opened one."""
    state = RUNNING.get()
    if state is None and has_request_context():
        state = request.environ.get(STATE)
    return state


def refusal(
    state: RequestState | None,
    kind: type[RequestRejected],
    reason: str,
    headers: list[tuple[str, str]] | None = None,
) -> RequestRejected:
    """The refusal of the current request, its outcome noted for the audit entry.

    Its protocol headers are also kept on the request's state, so they reach the client
    even when an app's own error handler renders the refusal.
    """
    if state is not None:
        state.outcome, state.reason = "denied", reason
        state.refusal_headers = list(headers or [])
    return kind(reason, request_id=state.request_id if state else "", headers=headers)


def refuse(
    state: RequestState | None,
    kind: type[RequestRejected],
    reason: str,
    headers: list[tuple[str, str]] | None = None,
) -> NoReturn:
    """Raise the :func:`refusal` of the current request."""
    raise refusal(state, kind, reason, headers)
