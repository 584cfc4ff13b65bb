"""Request bodies: their size (413) and content type (415), chunked bodies included.

The size cap holds on every view, exempt ones included; the content type is checked on
protected views, and on exempt ones that name their types with ``@guard.accepts``.

A body sent with ``Transfer-Encoding: chunked`` (in any case) declares no length, so its
size is only known once read, and werkzeug's own limit stops reading at the cap without
an error (the view would get the body cut short). So the guard reads such a body here,
from the server's de-chunked input (``wsgi.input_terminated``, as gunicorn and werkzeug
provide), one byte past the cap at most: over the cap is a 413; under it, the view reads
the whole body as if it had come with its ``Content-Length``.
"""

from __future__ import annotations

import io
from typing import IO

from flask import Request

from guard._request.state import RequestState, refuse
from guard.errors import PayloadTooLarge, UnsupportedMediaType


def check_body(state: RequestState, request: Request, cap: int, accepted: tuple[str, ...]) -> None:
    """Refuse a body over ``cap`` bytes (0: no cap), or not of an ``accepted`` type."""
    environ = request.environ
    if environ.get("CONTENT_LENGTH", "0") in ("0", "") and "HTTP_TRANSFER_ENCODING" not in environ:
        return  # no body: nothing to size or type
    length = request.content_length
    if cap and length is not None and length > cap:
        refuse(state, PayloadTooLarge, "body_too_large")
    if cap and length is None and environ.get("wsgi.input_terminated"):
        body = _read_at_most(environ["wsgi.input"], cap + 1)
        if len(body) > cap:
            refuse(state, PayloadTooLarge, "body_too_large")
        # Before anything opened request.stream: the view reads this copy.
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
    has_body = bool(request.content_length) or "HTTP_TRANSFER_ENCODING" in environ
    if accepted and has_body and request.mimetype not in accepted:
        refuse(state, UnsupportedMediaType, "unsupported_media_type")


def _read_at_most(stream: IO[bytes], limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    while size < limit:
        part = stream.read(min(65_536, limit - size))
        if not part:
            break
        parts.append(part)
        size += len(part)
    return b"".join(parts)
