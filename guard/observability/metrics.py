"""Prometheus metrics on ``prometheus_client`` (``pip install flask-api-guard[metrics]``),
switched on by ``GUARD_METRICS=true``:

- ``guard_requests_total{outcome, reason}``: one per request, the outcome and reason of
  its audit entry (plus ``key_id`` with ``GUARD_METRICS_KEY_LABEL=true``, ``owner`` with
  ``GUARD_METRICS_OWNER_LABEL=true``; off by default,
  so the number of series stays bounded by the guard's own reasons);
- ``guard_store_seconds`` / ``guard_store_errors_total``: key lookups in the store
  (cache hits included) and the calls that failed;
- ``guard_limiter_seconds`` / ``guard_limiter_errors_total{kind}``: the limiter's storage
  calls, ``kind`` being the counter hit (``key``: a key's rate limit, ``failed-auth``: a
  client's failed attempts);
- ``guard_invalidation_subscribed``: 1 while the worker's Redis invalidation listener is
  subscribed, 0 otherwise (revocations may then be late); only for stores that have one.

They are served at ``GUARD_METRICS_PATH`` to keys with the scope ``metrics:read``, or,
with ``GUARD_METRICS_TOKEN`` set, to that token only, checked without the store so a
Redis outage does not blind the scraper (or to anyone with ``GUARD_METRICS_PUBLIC=true``).
Under gunicorn, with ``PROMETHEUS_MULTIPROC_DIR`` set, prometheus_client's multiprocess
mode sums every worker's values (docs/deployment.md). Metrics carry no token, secret or digest.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import TYPE_CHECKING

import limits.errors
from flask import Response, request

import stores
from guard._counting.plan import Hit, Plan, Reply, Window
from guard._request.auth import MalformedCredentials, MissingCredentials, bearer_token
from guard._request.state import RequestState, current, refuse
from guard.config import GuardConfig
from guard.errors import (
    AuthenticationRequired,
    ConfigurationError,
    InvalidRequest,
    InvalidToken,
)
from guard.keys.lifecycle import Lookup, Reason, Touch
from stores import KeyRecord, KeyStore
from stores.cache import BoundedCache

if TYPE_CHECKING:
    import prometheus_client

#: The scope a key needs to read the metrics (unless GUARD_METRICS_PUBLIC=true).
SCOPE = "metrics:read"
#: Every ``(outcome, reason)`` the guard itself gives a request, exported at 0 from
#: start-up: a series that appears only with its first event makes ``increase()`` and
#: ``rate()`` read that first burst as 0 (the first 31 revocation refusals after a
#: restart, say). ``error`` reasons other than ``server_error`` are the names of the
#: app's exceptions, unknown in advance. A test holds this list to the guard's code.
KNOWN_OUTCOMES: tuple[tuple[str, str], ...] = (
    *(
        ("allowed", reason)
        for reason in ("valid", "exempt", "preflight", "https_redirect", "metrics_token")
    ),
    *(
        ("denied", reason)
        for reason in (
            *(r.value for r in Reason if r is not Reason.VALID),
            "no_credentials",
            "unsupported_scheme",
            "malformed_bearer",
            "malformed_api_key",
            "two_credentials",
            "header_too_long",
            "too_many_failed_attempts",
            "insufficient_scope",
            "address_not_allowed",
            "rate_limited",
            "quota_exceeded",
            "route_rate_limited",
            "limiter_unavailable",
            "body_too_large",
            "unsupported_media_type",
            "policy_not_seen",
            "guard_error",
            "wrong_metrics_token",
        )
    ),
    ("error", "server_error"),
)
#: The limiter's counters, each a ``kind`` of ``guard_limiter_errors_total``.
LIMITER_COUNTERS = ("key", "failed-auth")
#: Label values whose counter child is remembered (least recently used leave first).
LABELS_CACHE_SIZE = 4096
#: Seconds: store lookups are mostly cache hits (µs), limiter calls a round trip (ms).
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


def from_config(config: GuardConfig) -> Metrics | None:
    """The metrics ``config`` asks for, or ``None`` when they are off.

    :raises ConfigurationError: when they are on and prometheus_client is not installed
        (never silently off).
    """
    if not config.metrics:
        return None
    try:
        import prometheus_client
    except ImportError:
        raise ConfigurationError(
            "GUARD_METRICS=true needs prometheus_client: pip install 'flask-api-guard[metrics]'"
        ) from None
    return Metrics(
        prometheus_client,
        key_label=config.metrics_key_label,
        owner_label=config.metrics_owner_label,
    )


class Metrics:
    """The guard's metrics for one app, in a registry of their own (never the global
    one, so two apps in a process do not collide)."""

    def __init__(
        self, prometheus: ModuleType, *, key_label: bool = False, owner_label: bool = False
    ) -> None:
        self._prometheus = prometheus
        self.registry = prometheus.CollectorRegistry()
        # prometheus_client's own switch, read when it is imported: every value then
        # lives in a file per worker, and a scrape sums the files.
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.key_label = key_label
        self.owner_label = owner_label
        labels: tuple[str, ...] = ("outcome", "reason")
        labels += ("key_id",) if key_label else ()
        labels += ("owner",) if owner_label else ()
        self.requests = prometheus.Counter(
            "guard_requests",
            "Requests the guard finished, by the outcome and reason of their audit entry.",
            labels,
            registry=self.registry,
        )
        self.store_seconds = prometheus.Histogram(
            "guard_store_seconds",
            "Key lookups in the credential store (cache hits included), in seconds.",
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.store_errors = prometheus.Counter(
            "guard_store_errors",
            "Credential store calls that failed (the request was refused with 503).",
            registry=self.registry,
        )
        self.limiter_seconds = prometheus.Histogram(
            "guard_limiter_seconds",
            "Rate-limit storage calls (sending a hit and reading its answer), in seconds.",
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.limiter_errors = prometheus.Counter(
            "guard_limiter_errors",
            "Rate-limit storage calls that failed, by counter (key, failed-auth).",
            ("kind",),
            registry=self.registry,
        )
        # labels() validates and locks on every call (1.6 µs of its 2.4); it gives the
        # same child for the same values every time, so it is remembered, bounded.
        self._children: BoundedCache[tuple[str, ...], prometheus_client.Counter] = BoundedCache(
            LABELS_CACHE_SIZE
        )
        # Every known series at 0 from start-up. Per-key and per-owner series cannot be:
        # the keys and owners are not known in advance.
        if not key_label and not owner_label:
            for values in KNOWN_OUTCOMES:
                self._children.put(values, self.requests.labels(*values))
        for counter in LIMITER_COUNTERS:
            self.limiter_errors.labels(counter)
        self.subscribed: prometheus_client.Gauge | None = None
        self._store: KeyStore | None = None
        self._was_subscribed: bool | None = None

    # -- per request -------------------------------------------------------------------

    def count(self, state: RequestState, outcome: str, reason: str) -> None:
        """Count one finished request (``outcome`` and ``reason`` as in its audit entry)."""
        values: tuple[str, ...] = (outcome, reason)
        if self.key_label or self.owner_label:
            key = state.key
            if self.key_label:
                values += ((key.key_id if key is not None else state.key_id) or "",)
            if self.owner_label:
                values += ((key.owner if key is not None else None) or "",)
        found = self._children.get(values)
        if found is None:
            child = self.requests.labels(*values)
            self._children.put(values, child)
        else:
            child = found[0]
        child.inc()
        if self.subscribed is not None:
            self._note_subscription()

    # -- the store ---------------------------------------------------------------------

    def watch(self, store: KeyStore) -> None:
        """Report ``store``'s invalidation listener in ``guard_invalidation_subscribed``,
        if it has one (the store is read, never wrapped)."""
        self._store = store
        if _subscribed(store) is None:
            return
        self.subscribed = self._prometheus.Gauge(
            "guard_invalidation_subscribed",
            "1 while this worker's Redis invalidation listener is subscribed, else 0: "
            "revocations may be late while it is 0.",
            registry=self.registry,
            # Across workers, the lowest: 0 as soon as one worker is not subscribed.
            multiprocess_mode="livemin",
        )
        self._note_subscription()

    def timed_lookup(self, lookup: Lookup) -> Lookup:
        """``lookup`` (a store read made by verification), timed, its failures
        (``StoreUnavailable``) counted; for :meth:`Keys.observe_store`."""
        observe = self.store_seconds.observe
        errors = self.store_errors

        def timed(key_id_or_digest: str) -> KeyRecord | None:
            started = time.perf_counter()
            try:
                return lookup(key_id_or_digest)
            except stores.StoreUnavailable:
                errors.inc()
                raise
            finally:
                observe(time.perf_counter() - started)

        return timed

    def counted_touch(self, touch: Touch) -> Touch:
        """``touch`` (a write of last-use times), its failures counted."""
        errors = self.store_errors

        def counted(used: Mapping[str, float]) -> None:
            try:
                touch(used)
            except stores.StoreUnavailable:
                errors.inc()
                raise

        return counted

    def _note_subscription(self) -> None:
        # Set on change only: in multiprocess mode every set writes the worker's file.
        value = bool(_subscribed(self._store))
        if value is not self._was_subscribed and self.subscribed is not None:
            self.subscribed.set(1 if value else 0)
            self._was_subscribed = value

    # -- the limiter -------------------------------------------------------------------

    def timed_hit(self, hit: Hit) -> Hit:
        """``hit`` (the limiter's storage call), timed from sending it to reading its
        reply (the time in between, when the pipeline overlaps it with Flask's own work,
        left out), its failures counted by the counter it was for (``key`` or
        ``failed-auth``)."""
        observe = self.limiter_seconds.observe
        errors = self.limiter_errors

        def timed(plan: Plan) -> Reply:
            counter = plan[0].policy
            started = time.perf_counter()
            try:
                reply = hit(plan)
            except limits.errors.StorageError:
                observe(time.perf_counter() - started)
                errors.labels(counter).inc()
                raise
            sending = time.perf_counter() - started

            def read() -> tuple[Window, ...]:
                reading = time.perf_counter()
                try:
                    return reply()
                except limits.errors.StorageError:
                    errors.labels(counter).inc()
                    raise
                finally:
                    observe(sending + time.perf_counter() - reading)

            return read

        return timed

    # -- the endpoint ------------------------------------------------------------------

    def make_view(self, token: str = "", realm: str = "api") -> Callable[[], Response]:
        """A view function serving :meth:`exposition` (a function of its own, for the
        guard's view policy to be set on).

        :param token: the scrape credential (``GUARD_METRICS_TOKEN``): the view then
            serves only a request bearing it, compared in constant time (as digests,
            so not even its length shows), and needs neither the store nor the limiter,
            so the metrics stay readable through the outage they describe. It is never
            logged: a refusal's audit entry says only that it was wrong.
        """
        if not token:

            def guard_metrics() -> Response:
                return self.exposition()

            return guard_metrics
        expected = hashlib.sha256(token.encode()).digest()
        challenge = f'Bearer realm="{realm}"'

        def guard_metrics_by_token() -> Response:
            state = current()
            try:
                given = bearer_token(request.headers.get("Authorization"))
            except MissingCredentials as exc:
                refuse(state, AuthenticationRequired, str(exc), [("WWW-Authenticate", challenge)])
            except MalformedCredentials as exc:
                bad = f'{challenge}, error="invalid_request"'
                refuse(state, InvalidRequest, str(exc), [("WWW-Authenticate", bad)])
            if not hmac.compare_digest(hashlib.sha256(given.encode()).digest(), expected):
                bad = f'{challenge}, error="invalid_token"'
                refuse(state, InvalidToken, "wrong_metrics_token", [("WWW-Authenticate", bad)])
            if state is not None:
                state.reason = "metrics_token"
            return self.exposition()

        return guard_metrics_by_token

    def exposition(self) -> Response:
        """The metrics in the format the scraper asks for (Prometheus text or
        OpenMetrics), summed over every worker in multiprocess mode."""
        if self.subscribed is not None:
            self._note_subscription()
        registry = self.registry
        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = self._prometheus.CollectorRegistry()
            # prometheus_client leaves the collector's __init__ unannotated.
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        encoder, content_type = self._prometheus.exposition.choose_encoder(
            request.headers.get("Accept")
        )
        return Response(encoder(registry), content_type=content_type)


def _subscribed(store: KeyStore | None) -> bool | None:
    # RedisStore.subscribed (a public bool property); other stores have no listener.
    value = getattr(store, "subscribed", None)
    return value if isinstance(value, bool) else None
