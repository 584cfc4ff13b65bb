"""The request id in the app's own log records, so they join the audit entry.

Attach :class:`RequestIdFilter` to the app's handlers: every record they handle during a
request gets a ``request_id`` attribute, the id of the guard's audit entry and of the
``X-Request-ID`` response header (``"-"`` outside a request; a record that already has
one, such as the audit entry itself, keeps it).
"""

from __future__ import annotations

import logging

from flask import has_request_context

from guard._request.state import current

#: ``request_id`` of records logged outside a request.
NO_REQUEST = "-"


def current_request_id() -> str | None:
    """The id the guard gave the current request, or ``None`` outside a request."""
    if not has_request_context():
        return None
    state = current()
    return None if state is None else state.request_id


class RequestIdFilter(logging.Filter):
    """Sets ``record.request_id`` to the current request's id; filters nothing out.

    In ``dictConfig``: ``"filters": {"request_id": {"()": "guard.RequestIdFilter"}}``,
    then ``"filters": ["request_id"]`` on each handler.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id() or NO_REQUEST
        return True
