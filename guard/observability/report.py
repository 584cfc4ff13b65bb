"""What the guard reports once a request is over, beside its audit entry: the metrics
count (when metrics are on) and the request's signal, both with the outcome and reason
of the audit entry."""

from __future__ import annotations

from typing import TYPE_CHECKING

from guard._request.state import RequestState
from guard.observability import audit
from guard.observability.signals import request_authenticated, request_refused

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment
    from flask import Flask

    from guard.observability.metrics import Metrics


class Report:
    """What the guard reports once a request is over, beside its audit entry: the
    metrics count (when metrics are on) and the request's signal. Called by the WSGI
    layer once per request, with the status the client got."""

    def __init__(self, app: Flask, metrics: Metrics | None) -> None:
        self.app = app
        self.metrics = metrics

    def __call__(self, state: RequestState, environ: WSGIEnvironment, status: int) -> None:
        if self.metrics is None and not (
            request_refused.receivers or request_authenticated.receivers
        ):
            return  # nobody to tell: the common case, on every request
        result, reason = audit.outcome(state, status)
        if self.metrics is not None:
            self.metrics.count(state, result, reason)
        # Checked first: sending costs a generator even with nobody listening.
        if result == "denied":
            if request_refused.receivers:
                request_refused.send(
                    self.app, reason=reason, key_id=state.key_id, request_id=state.request_id
                )
        elif state.key is not None and request_authenticated.receivers:
            request_authenticated.send(self.app, key=state.key, request_id=state.request_id)
