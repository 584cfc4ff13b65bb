"""The guard at the WSGI boundary: it opens each request's state, adds the response
headers, and writes the audit entry.

Working on the raw ``start_response`` header list spares werkzeug's per-header checks
(the headers were built and checked at start-up), and it sees every response the app
sends, errors and redirects included, and every exception that escapes it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from . import audit
from .cors import Cors
from .headers import SecurityHeaders
from .state import RequestState, request_id

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

#: Where the request's :class:`RequestState` lives in the WSGI environ.
STATE = "guard.state"


#: Work done on the raw request before the app sees it.
Prepare = Callable[["WSGIEnvironment", RequestState], None]
#: Work done once the request is over, after its audit entry (metrics, signals), with
#: the status the client got.
Report = Callable[[RequestState, "WSGIEnvironment", int], None]


class GuardMiddleware:
    def __init__(
        self,
        app: WSGIApplication,
        headers: SecurityHeaders,
        cors: Cors,
        prepare: Prepare,
        report: Report | None = None,
    ) -> None:
        self.app = app
        self.headers = headers
        self.cors = cors
        self.prepare = prepare
        self.report = report

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        state = environ[STATE] = RequestState(request_id(environ.get("HTTP_X_REQUEST_ID")))

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            state.status = int(status[:3])
            self._add_headers(state, environ, headers)
            return start_response(status, headers, exc_info)

        try:
            self.prepare(environ, state)
            body = self.app(environ, start)
        except BaseException as exc:
            # Nothing answered this request: record it as the 500 the server will send.
            state.error = type(exc).__name__
            self._finish(state, environ, 500)
            raise
        self._finish(state, environ, state.status or 500)
        return body

    def _finish(self, state: RequestState, environ: WSGIEnvironment, status: int) -> None:
        if state.pending is not None:
            state.pending.settle()  # a hit sent for a view that never read it
        audit.emit(state, environ, status)
        if self.report is not None:
            self.report(state, environ, status)

    def _add_headers(
        self, state: RequestState, environ: WSGIEnvironment, headers: list[tuple[str, str]]
    ) -> None:
        present = {name.lower() for name, _ in headers}
        static = (
            self.headers.secure if environ.get("wsgi.url_scheme") == "https" else self.headers.plain
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
        if state.window is not None and "ratelimit" not in present:
            headers.extend(state.window.headers())
