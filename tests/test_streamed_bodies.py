"""A streamed response's request is over when its body is closed: its audit entry (and
its signal) come after the last chunk, with the latency of the whole answer, and an
exception raised while the body streams is audited as the error it is."""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, Response, stream_with_context

from guard import request_authenticated
from tests.conftest import Api
from tests.servers import fetch, served

#: How long the generator pauses before its last chunk, in seconds.
PAUSE = 0.3


class Trail(logging.Handler):
    """What happened, in order: the generator's own notes and each audit entry, parsed
    from the line the ``guard.audit`` logger writes."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[Any] = []
        self.audited = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.name != "guard.audit":
            return  # a key operation's entry (guard.audit.keys): not a request's
        self.events.append(("entry", json.loads(record.getMessage())))
        self.audited.set()

    def entry(self) -> dict[str, Any]:
        """The one audit entry, once written (a server writes it after the client has
        read the body, so it is waited for)."""
        assert self.audited.wait(10)
        [entry] = [event[1] for event in self.events if event[0] == "entry"]
        return entry  # type: ignore[no-any-return]


@pytest.fixture
def trail() -> Iterator[Trail]:
    logger = logging.getLogger("guard.audit")
    handler, level = Trail(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def streaming_api(trail: Trail) -> Api:
    """An API whose ``/export`` streams rows, pausing before the last, and whose
    ``/broken`` fails after its first chunk."""
    api = Api()

    @api.app.get("/export")
    def export() -> Response:
        def rows() -> Iterator[bytes]:
            trail.events.append("first chunk")
            yield b"id,name\n"
            time.sleep(PAUSE)
            trail.events.append("last chunk")
            yield b"1,alice\n"
            trail.events.append("body done")

        return Response(stream_with_context(rows()), mimetype="text/csv")

    @api.app.get("/broken")
    def broken() -> Response:
        def rows() -> Iterator[bytes]:
            yield b"id,name\n"
            raise LookupError("the export lost its cursor")

        return Response(rows(), mimetype="text/csv")

    return api


def test_a_streamed_body_is_audited_after_its_last_chunk_with_the_whole_latency(
    trail: Trail,
) -> None:
    api = streaming_api(trail)
    token = api.issue()
    signals: list[str] = []

    def authenticated(sender: Flask, **extra: Any) -> None:
        signals.append(extra["request_id"])
        trail.events.append("signal")

    request_authenticated.connect(authenticated, api.app)
    try:
        with served(api.app) as connection:
            response, body = fetch(connection, "GET", "/export", api.bearer(token))
            entry = trail.entry()
    finally:
        request_authenticated.disconnect(authenticated, api.app)
    assert (response.status, body) == (200, b"id,name\n1,alice\n")
    assert trail.events == [
        "first chunk",
        "last chunk",
        "body done",
        ("entry", entry),
        "signal",
    ]
    assert (entry["status"], entry["outcome"], entry["reason"]) == (200, "allowed", "valid")
    assert entry["latency_ms"] >= PAUSE * 1000
    assert signals == [entry["request_id"]] == [response.getheader("X-Request-ID")]


def test_an_exception_in_the_middle_of_a_stream_is_audited_as_an_error(trail: Trail) -> None:
    api = streaming_api(trail)
    with served(api.app) as connection:
        connection.request("GET", "/broken", headers=api.bearer(api.issue()))
        response = connection.getresponse()
        # The status line went out before the body failed: the client sees it cut short.
        with pytest.raises(http.client.IncompleteRead):
            response.read()
        entry = trail.entry()
    assert response.status == 200
    assert (entry["status"], entry["outcome"], entry["reason"]) == (500, "error", "LookupError")
    assert entry["key_name"] == "alice"


def test_with_the_test_client_a_streamed_body_is_audited_once_the_response_is_closed(
    trail: Trail,
) -> None:
    api = streaming_api(trail)
    response = api.client.get("/export", headers=api.bearer(api.issue()))
    # The view returned and the test client read the first chunk: no entry yet.
    assert trail.events == ["first chunk"]
    assert response.get_data() == b"id,name\n1,alice\n"
    assert trail.events == ["first chunk", "last chunk", "body done"]
    response.close()
    entry = trail.entry()
    assert entry["status"] == 200
    assert entry["latency_ms"] >= PAUSE * 1000


def test_the_buffered_test_client_closes_a_streamed_body_itself(trail: Trail) -> None:
    api = streaming_api(trail)
    response = api.client.get("/export", headers=api.bearer(api.issue()), buffered=True)
    assert trail.events == ["first chunk", "last chunk", "body done", ("entry", trail.entry())]
    assert response.get_data() == b"id,name\n1,alice\n"


def test_with_the_test_client_a_stream_that_fails_is_audited_as_an_error(trail: Trail) -> None:
    api = streaming_api(trail)
    response = api.client.get("/broken", headers=api.bearer(api.issue()))
    with pytest.raises(LookupError):
        response.get_data()
    response.close()
    entry = trail.entry()
    assert (entry["status"], entry["outcome"], entry["reason"]) == (500, "error", "LookupError")


def test_a_body_in_memory_is_audited_as_the_app_returns_it(trail: Trail) -> None:
    api = streaming_api(trail)
    token = api.issue()
    ok = api.client.get("/orders", headers=api.bearer(token))
    refused = api.client.get("/export")
    missing = api.client.get("/missing", headers=api.bearer(token))
    # None of the three closed: each entry was written before the client read a byte.
    statuses = [event[1]["status"] for event in trail.events]
    assert statuses == [ok.status_code, refused.status_code, missing.status_code]
    assert statuses == [200, 401, 404]
