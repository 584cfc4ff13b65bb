"""The guard at the WSGI boundary: it opens each request's state, adds the response
headers, and writes the audit entry. It decides nothing: the pipeline does.

Working on the raw ``start_response`` header list spares werkzeug's per-header checks
(the headers were built and checked at start-up), and it sees every response the app
sends, whoever rendered it: redirects, the guard's refusals rendered by an app's own
error handler (whose protocol headers it puts back), 404s and 500s, and every exception
that escapes the app.

A request is finished (its audit entry written, its report made) once its body is done.
A body Flask holds in memory is done when the app returns it. A streamed one (a generator,
``stream_with_context``, a file) is done when the server closes it, after its last
chunk: so the entry comes last, with the latency of the whole answer, and an exception
raised while the body streams is audited as the error it is, not as the 200 whose status
line had already gone out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from guard._request.cors import Cors
from guard._request.rate_limits import headers as ratelimit_headers
from guard._request.security_headers import SecurityHeaders
from guard._request.state import RUNNING, STATE, RequestState, request_id
from guard.observability import audit

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

#: Work done once the request is over, after its audit entry (metrics, signals), with
#: the status the client got.
Report = Callable[[RequestState, "WSGIEnvironment", int], None]


class GuardMiddleware:
    def __init__(
        self,
        app: WSGIApplication,
        headers: SecurityHeaders,
        cors: Cors,
        report: Report,
    ) -> None:
        self.app = app
        self.headers = headers
        self.cors = cors
        self.report = report

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        state = environ[STATE] = RequestState(request_id(environ.get("HTTP_X_REQUEST_ID")))

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            state.status = int(status[:3])
            self._add_headers(state, environ, headers)
            return start_response(status, headers, exc_info)

        running = RUNNING.set(state)
        answered = False
        try:
            body = self.app(environ, start)
            answered = True
        except BaseException as exc:
            # Nothing answered this request: record it as the 500 the server will send.
            _failed(state, exc)
            raise
        finally:
            RUNNING.reset(running)
            if not answered or state.body_in_memory:
                self._finish(state, environ)
        if state.body_in_memory:
            return body
        return _Streamed(body, self, state, environ)

    def _finish(self, state: RequestState, environ: WSGIEnvironment) -> None:
        status = state.status or 500
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


def _failed(state: RequestState, exc: BaseException) -> None:
    state.error = type(exc).__name__
    state.status = 500


class _Streamed:
    """A streamed body, passed on chunk by chunk, that finishes its request when the
    server closes it (as werkzeug's ``ClosingIterator`` runs its callbacks then, and as
    every WSGI server must call ``close``). An exception raised while it streams is
    recorded on the request's state first, so the request is audited as the 500 it is.
    The request is finished once, even if the body's own ``close`` raises."""

    __slots__ = ("_body", "_chunks", "_environ", "_guard", "_state")

    def __init__(
        self,
        body: Iterable[bytes],
        guard: GuardMiddleware,
        state: RequestState,
        environ: WSGIEnvironment,
    ) -> None:
        self._body = body
        self._chunks = iter(body)
        self._guard: GuardMiddleware | None = guard
        self._state = state
        self._environ = environ

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._chunks)
        except StopIteration:
            raise
        except BaseException as exc:
            _failed(self._state, exc)
            raise

    def close(self) -> None:
        guard, self._guard = self._guard, None
        if guard is None:
            return  # closed already
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        except BaseException as exc:
            _failed(self._state, exc)
            raise
        finally:
            guard._finish(self._state, self._environ)
