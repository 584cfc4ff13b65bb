"""One structured JSON entry per request, on the ``guard.audit`` logger.

Route it with ordinary logging handlers. An entry never holds the token or any part of
the secret; every string goes through the escaper ``json.dumps`` uses (ASCII only), so
CR, LF, quotes and other control characters in a path, user agent or request id are
escaped and cannot start a second line or forge a field. Long values are cut short.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from json.encoder import encode_basestring_ascii as _quote
from typing import TYPE_CHECKING, Any

from .context import RequestState

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

logger = logging.getLogger("guard.audit")
logger.addHandler(logging.NullHandler())

#: Longest string (path, user agent, ...) kept in an entry, in characters.
MAX_VALUE_LENGTH = 512


def line(state: RequestState, environ: WSGIEnvironment, status: int, now: float) -> str:
    """The audit entry for a request finished at ``now``: one line of JSON, ASCII only."""
    key = state.key
    outcome, reason = state.outcome, state.reason
    if status >= 500 and outcome == "allowed":
        outcome, reason = "error", state.error or "server_error"
    # Joined by hand: a dict through json.dumps costs more than the rest of the entry.
    # Every string goes through json's own escaper, so the line is what json.dumps writes.
    return (
        f'{{"ts":"{_timestamp(now)}","request_id":{_string(state.request_id)},'
        f'"method":{_string(environ.get("REQUEST_METHOD"))},'
        f'"path":{_string(_text(environ.get("PATH_INFO", "")))},"status":{status:d},'
        f'"outcome":{_string(outcome)},"reason":{_string(reason)},'
        f'"key_id":{_string(key.key_id if key is not None else state.key_id)},'
        f'"key_name":{_string(key.name if key is not None else None)},'
        f'"client":{_string(environ.get("REMOTE_ADDR"))},'
        f'"user_agent":{_string(environ.get("HTTP_USER_AGENT"))},'
        f'"latency_ms":{(time.perf_counter() - state.started) * 1000:.3f}}}'
    )


def _string(value: str | None) -> str:
    """``value`` as a JSON string (``null`` for None), cut short if long."""
    if value is None:
        return "null"
    if len(value) > MAX_VALUE_LENGTH:
        value = value[:MAX_VALUE_LENGTH] + "…"
    return _quote(value)


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
        now = time.time()
        logger.handle(_records.make(line(state, environ, status, now), now))


class _Records:
    """The audit logger's records, as ``logger.makeRecord`` builds them, made faster.

    A ``LogRecord`` derives on every call what is the same for every entry a thread
    logs: the source file and module names, the level name, the thread and process
    (``logger.info`` would even walk the stack for the caller). Here they come from one
    record per thread made the ordinary way, and each entry copies them and sets its own
    message and time. Where an application installed its own record factory
    (``logging.setLogRecordFactory``), the factory makes every record.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._local = threading.local()

    def make(self, message: str, now: float) -> logging.LogRecord:
        if logging.getLogRecordFactory() is not logging.LogRecord:
            return self._ordinary(message)
        local = self._local
        if getattr(local, "pid", None) != os.getpid():  # new thread, or a forked child
            local.template, local.pid = vars(self._ordinary("")), os.getpid()
        template: dict[str, Any] = local.template
        record = logging.LogRecord.__new__(logging.LogRecord)
        fields = vars(record)
        fields.update(template)
        fields["msg"] = message
        fields["created"] = now
        fields["msecs"] = int((now - int(now)) * 1000) + 0.0
        fields["relativeCreated"] = template["relativeCreated"] + (now - template["created"]) * 1000
        return record

    def _ordinary(self, message: str) -> logging.LogRecord:
        return self._logger.makeRecord(
            self._logger.name, logging.INFO, __file__, 0, message, (), None
        )


_records = _Records(logger)
