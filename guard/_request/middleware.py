"""The guard at the WSGI boundary: it opens each request's state, adds the response
headers, and writes the audit entry. It decides nothing: the pipeline does.

Working on the raw ``start_response`` header list spares werkzeug's per-header checks
(the headers were built and checked at start-up), and it sees every response the app
sends, whoever rendered it: redirects, the guard's refusals rendered by an app's own
error handler (whose protocol headers it puts back), 404s and 500s, and every exception
that escapes the app.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from guard._request.cors import Cors
from guard._request.pipeline import settle
from guard._request.rate_limits import headers as ratelimit_headers
from guard._request.security_headers import SecurityHeaders
from guard._request.state import RUNNING, STATE, RequestState, request_id
from guard.observability import audit

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

#: Work done once the request is over, after its audit entry (metrics, signals), with
#: the status the client got.
Report = Callable[[RequestState, "WSGIEnvironment", int], None]
#: The pipeline's first step, before the app runs (:func:`guard._request.pipeline.start`).
Start = Callable[["WSGIEnvironment", RequestState], None]


class GuardMiddleware:
    def __init__(
        self,
        app: WSGIApplication,
        headers: SecurityHeaders,
        cors: Cors,
        report: Report,
        start: Start | None,
    ) -> None:
        self.app = app
        self.headers = headers
        self.cors = cors
        self.report = report
        self.start = start

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        state = environ[STATE] = RequestState(request_id(environ.get("HTTP_X_REQUEST_ID")))

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            state.status = int(status[:3])
            self._add_headers(state, environ, headers)
            return start_response(status, headers, exc_info)

        running = RUNNING.set(state)
        try:
            if self.start is not None:
                self.start(environ, state)
            body = self.app(environ, start)
        except BaseException as exc:
            # Nothing answered this request: record it as the 500 the server will send.
            state.error = type(exc).__name__
            state.status = 500
            raise
        finally:
            RUNNING.reset(running)
            self._finish(state, environ, state.status or 500)
        return body

    def _finish(self, state: RequestState, environ: WSGIEnvironment, status: int) -> None:
        if state.early is not None:
            settle(state)  # a hit sent early for a request the pipeline never reached
        audit.emit(state, environ, status)
        self.report(state, environ, status)

    def _add_headers(
        self, state: RequestState, environ: WSGIEnvironment, headers: list[tuple[str, str]]
    ) -> None:
        present = {name.lower() for name, _ in headers}
        policy = state.policy
        static = self.headers.pick(
            environ.get("wsgi.url_scheme") == "https", None if policy is None else policy.csp
        )
        if present.isdisjoint(static.names):
            headers.extend(static.pairs)
        else:  # the view set some of them itself: keep its values
            headers.extend(pair for pair in static.pairs if pair[0].lower() not in present)
        if "x-request-id" not in present:
            headers.append(("X-Request-ID", state.request_id))
        if "access-control-allow-origin" not in present:
            headers.extend(self.cors.headers_for(environ))
        if state.key is not None:
            # Authenticated answers are never cached, whatever the view said.
            if "cache-control" in present:
                headers[:] = [h for h in headers if h[0].lower() != "cache-control"]
            headers.append(("Cache-Control", "no-store"))
        if state.refusal_headers:
            # An app's own error handler may have rendered the refusal without them.
            missing = [h for h in state.refusal_headers if h[0].lower() not in present]
            headers.extend(missing)
            present.update(name.lower() for name, _ in missing)
        if state.windows and "ratelimit" not in present:
            headers.extend(ratelimit_headers(state.windows))
