"""What the guard learns about one request, kept in the WSGI environ."""

from __future__ import annotations

import dataclasses
import random
import re
import time

from stores import KeyRecord

from .keys import Verdict
from .ratelimit import PendingHit, Window

#: An incoming ``X-Request-ID`` is kept only if it is short and plain.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@+=/-]{1,128}")


def request_id(incoming: str | None) -> str:
    """The caller's request id if it is sane, else a new random one."""
    if incoming is not None and _REQUEST_ID.fullmatch(incoming):
        return incoming
    # Unique, not secret: the audit trail needs no CSPRNG call per request.
    return f"{random.getrandbits(128):032x}"


@dataclasses.dataclass(slots=True)
class RequestState:
    request_id: str
    started: float = dataclasses.field(default_factory=time.perf_counter)
    #: The authenticated key, once verified.
    key: KeyRecord | None = None
    #: The key id a refused token named, for the audit trail.
    key_id: str | None = None
    outcome: str = "allowed"
    reason: str = "valid"
    #: The token's verdict, when the WSGI layer could verify it before Flask ran.
    verdict: Verdict | None = None
    #: The key's rate-limit hit, sent by the WSGI layer, its answer not yet read.
    pending: PendingHit | None = None
    window: Window | None = None
    status: int = 0
    #: The exception that ended the request, when the view raised one.
    error: str | None = None
