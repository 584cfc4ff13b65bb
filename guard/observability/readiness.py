"""A readiness check for load balancers: whether this worker's credential store and
rate-limit storage answer (``GUARD_READY_PATH``).

``/health`` in the README is liveness only: it answers 200 while every protected request
gets 503. The readiness view answers 503 (with ``Retry-After``) when a request needing
the store would be refused, so a load balancer can take the worker out of rotation.
The answer is computed at most once a second per worker, whatever the poll rate, so
polling costs Redis two ``PING`` a second per worker at most; it needs no key and
reveals only "ok" or "unavailable" per part, never a URL, host or error text.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import NamedTuple

from flask import Response, jsonify

from guard._request.rate_limits import RateLimits
from guard.errors import retry_later
from stores import KeyStore, StoreError
from stores.cache import BoundedCache

#: Seconds an answer is reused: a load balancer polling every second or faster costs
#: one probe a second per worker.
TTL = 1.0


class Answer(NamedTuple):
    store: bool
    limiter: bool
    #: Requests can be served: the store answers, and the limiter does or fails open.
    ready: bool


class Readiness:
    """The readiness of one app's guard: its store and its limiter's storage, each
    probed with a call bounded by ``GUARD_STORE_TIMEOUT``."""

    def __init__(self, store: KeyStore, limits: RateLimits) -> None:
        self.store = store
        self.limits = limits
        self._answer: BoundedCache[str, Answer] = BoundedCache(1, TTL)
        self._probing = threading.Lock()

    def check(self) -> Answer:
        """The current answer, probing at most once per :data:`TTL` (concurrent callers
        wait for the one probe and share its answer)."""
        found = self._answer.get("ready")
        if found is not None:
            return found[0]
        with self._probing:
            found = self._answer.get("ready")
            if found is not None:
                return found[0]
            answer = self._probe()
            self._answer.put("ready", answer)
            return answer

    def _probe(self) -> Answer:
        try:
            self.store.check()
            store = True
        except StoreError:
            store = False
        limiter = bool(self.limits.storage.check())
        return Answer(store, limiter, store and (limiter or self.limits.fail_open))

    def make_view(self) -> Callable[[], Response]:
        """A view function serving :meth:`response` (a function of its own, for the
        guard's exemption to be set on)."""

        def guard_ready() -> Response:
            return self.response()

        return guard_ready

    def response(self) -> Response:
        """``{"ready": ..., "store": "ok"|"unavailable", "limiter": ...}``, 200 when
        ready, else 503 with ``Retry-After``; never cached by a proxy."""
        answer = self.check()
        shown = {False: "unavailable", True: "ok"}
        response = jsonify(
            ready=answer.ready, store=shown[answer.store], limiter=shown[answer.limiter]
        )
        response.headers["Cache-Control"] = "no-store"
        if not answer.ready:
            response.status_code = 503
            response.headers.extend(retry_later())
        return response
