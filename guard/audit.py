"""One structured JSON entry per request, on the ``guard.audit`` logger.

Route it with ordinary logging handlers. An entry never holds the token or any part of
the secret; every value goes through ``json.dumps`` (ASCII only), so CR, LF and other
control characters in a path, user agent or request id are escaped and cannot start a
second line or forge a field. Long values are cut short.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from .state import RequestState

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

logger = logging.getLogger("guard.audit")
logger.addHandler(logging.NullHandler())

#: Longest path or user agent kept in an entry, in characters.
MAX_VALUE_LENGTH = 512


def _cut(value: str | None) -> str | None:
    return (
        value if value is None or len(value) <= MAX_VALUE_LENGTH else value[:MAX_VALUE_LENGTH] + "…"
    )


def entry(state: RequestState, environ: WSGIEnvironment, status: int) -> dict[str, Any]:
    """The audit entry for a finished request."""
    key = state.key
    outcome, reason = state.outcome, state.reason
    if status >= 500 and outcome == "allowed":
        outcome, reason = "error", state.error or "server_error"
    return {
        "ts": _timestamp(time.time()),
        "request_id": state.request_id,
        "method": _cut(environ.get("REQUEST_METHOD")),
        "path": _cut(_text(environ.get("PATH_INFO", ""))),
        "status": status,
        "outcome": outcome,
        "reason": reason,
        "key_id": key.key_id if key is not None else state.key_id,
        "key_name": key.name if key is not None else None,
        "client": environ.get("REMOTE_ADDR"),
        "user_agent": _cut(environ.get("HTTP_USER_AGENT")),
        "latency_ms": round((time.perf_counter() - state.started) * 1000, 3),
    }


def _timestamp(now: float) -> str:
    """``now`` in ISO 8601, UTC, to the millisecond (as ``datetime.isoformat`` writes it)."""
    second = int(now)
    return f"{_utc_second(second)}.{int((now - second) * 1000):03d}+00:00"


@functools.lru_cache(maxsize=2)
def _utc_second(second: int) -> str:
    # Formatting a datetime costs more than the rest of the entry: once per second.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def _text(wsgi_value: str) -> str:
    # WSGI carries bytes as latin-1 text; paths are UTF-8 (invalid bytes kept visible).
    return wsgi_value.encode("latin-1", "replace").decode("utf-8", "backslashreplace")


def emit(state: RequestState, environ: WSGIEnvironment, status: int) -> None:
    """Log the entry for this request."""
    if logger.isEnabledFor(logging.INFO):
        line = _ENCODER.encode(entry(state, environ, status))
        # A record made directly: logger.info would walk the stack to find its caller,
        # which costs more than the rest of the entry and tells nothing here.
        logger.handle(logger.makeRecord(logger.name, logging.INFO, __file__, 0, line, (), None))


_ENCODER = json.JSONEncoder(ensure_ascii=True, default=str)
