"""One structured JSON entry per request, on the ``guard.audit`` logger.

Route it with ordinary logging handlers. An entry never holds the token or any part of
the secret; every value goes through ``json.dumps`` (ASCII only), so CR, LF and other
control characters in a path, user agent or request id are escaped and cannot start a
second line or forge a field. Long values are cut short.
"""

from __future__ import annotations

import datetime
import json
import logging
import time
from typing import Any

from flask import Request

from .state import RequestState

logger = logging.getLogger("guard.audit")
logger.addHandler(logging.NullHandler())

#: Longest path or user agent kept in an entry, in characters.
MAX_VALUE_LENGTH = 512


def _cut(value: str | None) -> str | None:
    return (
        value if value is None or len(value) <= MAX_VALUE_LENGTH else value[:MAX_VALUE_LENGTH] + "…"
    )


def entry(state: RequestState, request: Request, status: int) -> dict[str, Any]:
    """The audit entry for a finished request."""
    key = state.key
    outcome, reason = state.outcome, state.reason
    if status >= 500 and outcome == "allowed":
        outcome, reason = "error", state.error or "server_error"
    return {
        "ts": datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds"),
        "request_id": state.request_id,
        "method": _cut(request.method),
        "path": _cut(request.path),
        "status": status,
        "outcome": outcome,
        "reason": reason,
        "key_id": key.key_id if key is not None else state.key_id,
        "key_name": key.name if key is not None else None,
        "client": request.remote_addr,
        "user_agent": _cut(request.user_agent.string or None),
        "latency_ms": round((time.perf_counter() - state.started) * 1000, 3),
    }


def emit(state: RequestState, request: Request, status: int) -> None:
    """Log the entry for this request, once."""
    state.audited = True
    if not logger.isEnabledFor(logging.INFO):
        return
    record = entry(state, request, status)
    logger.info(json.dumps(record, ensure_ascii=True, default=str), extra={"audit": record})
