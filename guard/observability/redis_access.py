"""The guard's Redis permissions, checked at start-up and named when refused later.

Every Redis URL the settings name (``GUARD_STORE_URL``, ``GUARD_RATELIMIT_STORAGE_URL``,
``GUARD_AUDIT_STREAM_URL``) is one :class:`Part` with the commands, keys and channels it
needs (:mod:`stores.redis_acl`). ``init_app`` and ``guard store check`` ask Redis which
of them the configured user is refused, and name each as the ACL rule to add. A part
that lacks one stops the app (:class:`~guard.ConfigurationError`): a guard that cannot
count limits or hear revocations must not start as if it could. A Redis that does not
answer at start-up is logged and left to the request path, which answers 503 until it
does. URLs are shown redacted (:func:`stores.urls.redact`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from urllib.parse import urlsplit

import limits.errors
import redis

from guard._counting.plan import Hit, Plan, Reply, Window
from guard.config import GuardConfig
from guard.errors import ConfigurationError
from stores import StoreUnavailable
from stores.redis import CLIENT_SCHEMES, client_from_url, cluster_prefix
from stores.redis_acl import (
    DenialLog,
    Missing,
    Need,
    describe,
    limiter_needs,
    missing,
    store_needs,
    stream_needs,
)
from stores.urls import redact

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Part:
    """One Redis the settings name, and what the guard needs of it."""

    setting: str
    url: str
    needs: tuple[Need, ...]

    def lacking(self, timeout: float) -> list[Missing]:
        """What its user is refused, on a client of its own, closed after.

        :raises StoreUnavailable: Redis did not answer.
        """
        try:
            client = client_from_url(self.url, timeout)
        except ValueError as exc:  # reported when the part itself is built
            raise StoreUnavailable(str(exc)) from None
        try:
            return missing(client, self.needs)
        finally:
            client.close()

    def __str__(self) -> str:
        return f"{self.setting} ({redact(self.url)})"


def parts(
    *,
    store_url: str,
    store_prefix: str,
    ratelimit_storage_url: str,
    audit_stream_url: str,
    audit_stream_key: str,
) -> list[Part]:
    """The Redis parts these settings name (none on ``memory://`` and ``env://``):
    the ``GUARD_*`` settings of the same names, as :class:`GuardConfig` holds them."""
    found = []
    if _on_redis(store_url):
        cluster = store_url.startswith("redis+cluster:")
        keys = cluster_prefix(store_prefix) if cluster else store_prefix
        needs = store_needs(keys, f"{store_prefix}invalidate")
        found.append(Part("GUARD_STORE_URL", store_url, tuple(needs)))
    if _on_redis(ratelimit_storage_url):
        needs = limiter_needs()
        found.append(Part("GUARD_RATELIMIT_STORAGE_URL", ratelimit_storage_url, tuple(needs)))
    if audit_stream_url:
        needs = stream_needs(audit_stream_key)
        found.append(Part("GUARD_AUDIT_STREAM_URL", audit_stream_url, tuple(needs)))
    return found


def config_parts(config: GuardConfig) -> list[Part]:
    """:func:`parts` of ``config``."""
    return parts(
        store_url=config.store_url,
        store_prefix=config.store_prefix,
        ratelimit_storage_url=config.ratelimit_storage_url,
        audit_stream_url=config.audit_stream_url,
        audit_stream_key=config.audit_stream_key,
    )


def check_at_start(config: GuardConfig) -> None:
    """Refuse to start when a Redis user lacks a permission the guard needs.

    :raises ConfigurationError: naming each part and the ACL rules it lacks.
    """
    problems = []
    for part in config_parts(config):
        try:
            lacking = part.lacking(config.store_timeout)
        except StoreUnavailable as exc:
            logger.warning(
                "%s: could not check the Redis user's permissions at start-up (%s); "
                "requests that need it are refused with 503 until it answers",
                part,
                exc,
            )
            continue
        if lacking:
            problems.append(f"{part} lacks {describe(lacking)}")
    if problems:
        raise ConfigurationError(
            "the Redis user cannot do what the guard needs: "
            + "; ".join(problems)
            + ". Add these rules to its ACL (docs/deployment.md gives the minimal one)"
        )


def named_limiter_denials(config: GuardConfig) -> DenialLog | None:
    """The log of the limiter's refused permissions, on a Redis limiter."""
    url = config.ratelimit_storage_url
    if not _on_redis(url):
        return None
    client = client_from_url(url, config.store_timeout)  # connects only when asked
    return DenialLog(f"the limiter ({redact(url)})", client, limiter_needs())


def logging_denials(denials: DenialLog) -> Callable[[Hit], Hit]:
    """A wrapper for :meth:`RateLimits.observe`: a hit refused for a missing permission
    is logged once, naming it (the request is refused with 503 as for any failure)."""

    def note(error: limits.errors.StorageError) -> None:
        cause = error.storage_error
        if isinstance(cause, redis.exceptions.NoPermissionError):
            denials.named(cause)

    def wrap(hit: Hit) -> Hit:
        def logged(plan: Plan) -> Reply:
            try:
                reply = hit(plan)
            except limits.errors.StorageError as exc:
                note(exc)
                raise

            def read() -> tuple[Window, ...]:
                try:
                    return reply()
                except limits.errors.StorageError as exc:
                    note(exc)
                    raise

            return read

        return logged

    return wrap


def _on_redis(url: str) -> bool:
    return urlsplit(url).scheme in CLIENT_SCHEMES
