"""Audit entries to a capped Redis Stream, for a central trail across workers and hosts.

A logging handler on ``guard.audit`` (set ``GUARD_AUDIT_STREAM_URL``): entries are queued
in the process and sent in one pipelined ``XADD`` batch per interval, never on the
request's own round trip. If Redis cannot take a batch, its entries are written to the
local log instead (logger ``guard.unsent_audit``, level WARNING, so Python's last-resort
handler prints them even where logging is not configured), with a line saying why:
none is lost, also where a ``dictConfig`` disabled that logger (it is enabled again, as
``guard.audit`` is).
"""

from __future__ import annotations

import logging
from typing import Any

import redis

from guard._batch import Batcher
from guard.config import GuardConfig
from guard.observability.audit import keep_enabled
from stores.redis import client_from_url
from stores.redis_acl import DenialLog, stream_needs

unsent = logging.getLogger("guard.unsent_audit")


class RedisStreamHandler(logging.Handler):
    """Ships each record's message (one JSON entry) to ``stream``, capped near ``maxlen``."""

    def __init__(self, client: Any, stream: str, maxlen: int, interval: float = 0.5) -> None:
        super().__init__(logging.INFO)
        self.client = client
        self.stream = stream
        self.maxlen = maxlen
        self.denials = DenialLog(f"the audit stream {stream}", client, stream_needs(stream))
        self.batch: Batcher[str] = Batcher(self._send, self._keep_locally, interval=interval)

    @classmethod
    def from_url(
        cls, url: str, timeout: float, stream: str, maxlen: int, max_connections: int = 0
    ) -> RedisStreamHandler:
        """A handler shipping to ``stream`` at ``url``, on a client built as the store's
        is (:func:`stores.redis.client_from_url`, its pool capped at ``max_connections``):
        a batch waits ``timeout`` at most for Redis, then goes to the local log."""
        return cls(client_from_url(url, timeout, max_connections=max_connections), stream, maxlen)

    @classmethod
    def from_config(cls, config: GuardConfig) -> RedisStreamHandler:
        """The handler ``GUARD_AUDIT_STREAM_*`` describe (``config.audit_stream_url`` set),
        as the app and the ``guard`` command both install it."""
        return cls.from_url(
            config.audit_stream_url,
            config.store_timeout,
            config.audit_stream_key,
            config.audit_stream_maxlen,
            config.redis_max_connections,
        )

    def emit(self, record: logging.LogRecord) -> None:
        self.batch.add(record.getMessage())

    def flush(self) -> None:
        self.batch.flush()

    def close(self) -> None:
        self.batch.close()
        super().close()

    def _send(self, entries: list[str]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for entry in entries:
            # "~": Redis trims whole nodes, far cheaper than an exact cap.
            pipe.xadd(self.stream, {"entry": entry}, maxlen=self.maxlen, approximate=True)
        pipe.execute()

    def _keep_locally(self, entries: list[str], error: BaseException | None) -> None:
        if unsent.disabled:
            keep_enabled(unsent)
        if isinstance(error, redis.exceptions.NoPermissionError):
            # Named and logged once; the entries are kept here on every batch.
            cause = f"NOPERM {self.denials.named(error)}"
        elif error:
            cause = f"{type(error).__name__}: {error}"
        else:
            cause = "too many entries queued"
        unsent.warning(
            "audit stream %s unavailable (%s): %d entries written here instead",
            self.stream,
            cause,
            len(entries),
        )
        for entry in entries:
            unsent.warning(entry)
