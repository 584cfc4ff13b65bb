"""One structured audit entry per request, on the ``guard.audit`` logger.

Route it with ordinary logging handlers. Each field of the entry (``ts``, ``request_id``,
``method``, ``path``, ``status``, ``outcome``, ``reason``, ``key_id``, ``key_name``,
``owner`` (the key's owner, or null), ``client``, ``user_agent``, ``latency_ms``) is an
attribute of the ``LogRecord``, so a JSON formatter (python-json-logger, structlog's
``ProcessorFormatter``) puts them at the top level of its own object; the record's
message is the same entry as one line of compact JSON, for handlers with no formatter of
their own.

An entry never holds the token, its secret or a digest of it. The line is written by
``json`` (ASCII only), so CR, LF, quotes and other control characters in a path, user
agent or request id are escaped and cannot start a second line or forge a field. Long
values are cut short.

The trail never vanishes silently: ``logging.config.dictConfig`` disables every logger
that exists when it runs unless told otherwise (``disable_existing_loggers``), and this
one exists from ``import guard`` on. When the guard finds it disabled it enables it again
and says so, once, in a WARNING record on the logger itself.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from json.encoder import encode_basestring_ascii as _quote
from typing import TYPE_CHECKING, Any, NamedTuple

from guard._request.state import RequestState

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

logger = logging.getLogger("guard.audit")
logger.addHandler(logging.NullHandler())

#: Longest string (path, user agent, ...) kept in an entry, in characters.
MAX_VALUE_LENGTH = 512

#: The entry's fields, in the order the line writes them.
FIELDS = (
    "ts",
    "request_id",
    "method",
    "path",
    "status",
    "outcome",
    "reason",
    "key_id",
    "key_name",
    "owner",
    "client",
    "user_agent",
    "latency_ms",
)


def outcome(state: RequestState, status: int) -> tuple[str, str]:
    """The request's ``(outcome, reason)``: the guard's own, or ``error`` when it was
    allowed and the app answered 5xx. The audit entry, the metrics and the signals all
    take it from here."""
    if status >= 500 and state.outcome == "allowed":
        return "error", state.error or "server_error"
    return state.outcome, state.reason


def entry(
    state: RequestState, environ: WSGIEnvironment, status: int, now: float
) -> tuple[dict[str, Any], str]:
    """The audit entry of a request finished at ``now`` (seconds since the epoch): its
    fields, and the same as one line of compact JSON, ASCII only: what
    ``json.dumps(fields, separators=(",", ":"))`` writes, byte for byte (a test holds it
    to that).

    Joined here, every string through the escaper ``json`` itself uses, because
    ``json.dumps`` builds its encoder anew on every call. The fields a client's requests
    share (all but the time, the request id and the latency) are cleaned and written
    once per distinct combination."""
    key = state.key
    result, reason = outcome(state, status)
    shared = _shared(
        environ.get("REQUEST_METHOD"),
        environ.get("PATH_INFO", ""),
        status,
        result,
        reason,
        state.key_id if key is None else key.key_id,
        None if key is None else key.name,
        None if key is None else key.owner,
        environ.get("REMOTE_ADDR"),
        environ.get("HTTP_USER_AGENT"),
    )
    ts = timestamp(now)
    # To the microsecond (round() with digits costs as much as the rest of this line).
    latency = int((time.perf_counter() - state.started) * 1_000_000) / 1000
    fields = {"ts": ts, "request_id": state.request_id, **shared.fields, "latency_ms": latency}
    # The timestamp is digits and punctuation; the latency a finite float, which json
    # writes as repr does.
    text = (
        f'{{"ts":"{ts}","request_id":{_quote(state.request_id)},{shared.text},'
        f'"latency_ms":{latency!r}}}'
    )
    return fields, text


class _Shared(NamedTuple):
    fields: dict[str, Any]
    text: str


@functools.lru_cache(maxsize=256)
def _shared(
    method: str | None,
    path: str,
    status: int,
    result: str,
    reason: str,
    key_id: str | None,
    key_name: str | None,
    owner: str | None,
    client: str | None,
    agent: str | None,
) -> _Shared:
    # Request ids (128), reasons, key ids and names (256) are short by construction; only
    # what the client sends unchecked is cut.
    fields: dict[str, Any] = {
        "method": _cut(method),
        "path": _cut(_text(path)),
        "status": status,
        "outcome": result,
        "reason": reason,
        "key_id": key_id,
        "key_name": key_name,
        "owner": owner,
        "client": _cut(client),
        "user_agent": _cut(agent),
    }
    text = ",".join(f'"{name}":{_json(value)}' for name, value in fields.items())
    return _Shared(fields, text)


def _json(value: Any) -> str:
    # Strings, None and whole numbers.
    if value.__class__ is str:
        return _quote(value)
    return "null" if value is None else repr(value)


def timestamp(now: float) -> str:
    """``now`` in ISO 8601, UTC, to the millisecond (as ``datetime.isoformat`` writes it)."""
    second = int(now)
    return f"{_utc_second(second)}.{_MILLISECONDS[int((now - second) * 1000)]}+00:00"


#: ``000`` to ``999``: looked up, which costs a third of formatting each time.
_MILLISECONDS = tuple(f"{n:03d}" for n in range(1000))


@functools.lru_cache(maxsize=2)
def _utc_second(second: int) -> str:
    # Formatting a datetime costs more than the rest of the timestamp: once per second.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def _cut(value: str | None) -> str | None:
    if value is not None and len(value) > MAX_VALUE_LENGTH:
        return value[:MAX_VALUE_LENGTH] + "…"
    return value


def _text(wsgi_value: str) -> str:
    # WSGI carries bytes as latin-1 text; paths are UTF-8 (invalid bytes kept visible).
    return wsgi_value.encode("latin-1", "replace").decode("utf-8", "backslashreplace")


def emit(state: RequestState, environ: WSGIEnvironment, status: int) -> None:
    """Log the entry for this request."""
    if logger.disabled:
        keep_enabled(logger)
    if logger.isEnabledFor(logging.INFO):
        fields, text = entry(state, environ, status, time.time())
        # makeRecord + handle: logging's public API, without logger.info's walk up the
        # stack for a caller that is always this function.
        record = logger.makeRecord(logger.name, logging.INFO, __file__, 0, text, (), None)
        # What makeRecord's extra= does, without its check of each name against the
        # record's own (these names are the guard's, and none is a LogRecord attribute):
        # 2.2 µs of the entry's 12.
        record.__dict__.update(fields)
        logger.handle(record)


_reenabling = threading.Lock()


def keep_enabled(trail: logging.Logger) -> None:
    """Enable ``trail`` again if logging configuration disabled it, and say so once.

    A security trail must never vanish silently. ``dictConfig``'s default
    ``disable_existing_loggers=True`` disables it as a side effect, not by intent (an app
    that wants fewer entries sets the logger's level or handlers, which are respected).
    The notice goes on ``trail`` itself, at WARNING, so it lands where the entries do.
    """
    with _reenabling:  # two threads that both saw it disabled: one notice
        if not trail.disabled:
            return
        trail.disabled = False
    trail.warning(
        "logger %r was disabled by the logging configuration (dictConfig's "
        "disable_existing_loggers); the guard enabled it again so the audit trail is not "
        "lost. Name %r under 'loggers' in the configuration, or set "
        "disable_existing_loggers=False, to silence this notice",
        trail.name,
        trail.name,
    )
