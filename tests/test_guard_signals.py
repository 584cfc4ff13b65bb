"""The guard's signals fire once per event, with what a receiver needs and no secret."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from blinker import Signal

import guard
from guard import request_refused
from stores import KeyRecord
from tests.conftest import Api


class Received(list[tuple[Any, dict[str, Any]]]):
    def __call__(self, sender: Any, **extra: Any) -> None:
        self.append((sender, extra))


@pytest.fixture
def received() -> Iterator[dict[str, Received]]:
    connected: dict[str, Received] = {}
    names = ("request_authenticated", "request_refused", "key_revoked", "key_rotated")
    for name in names:
        signal: Signal = getattr(guard, name)
        connected[name] = Received()
        signal.connect(connected[name])
    yield connected
    for name in names:
        getattr(guard, name).disconnect(connected[name])


def test_an_authenticated_request_is_signalled_once_with_its_key(
    api: Api, received: dict[str, Received]
) -> None:
    token = api.issue("alice")
    response = api.client.get("/orders", headers=api.bearer(token))
    [(sender, extra)] = received["request_authenticated"]
    assert sender is api.app
    assert isinstance(extra["key"], KeyRecord) and extra["key"].name == "alice"
    assert extra["request_id"] == response.headers["X-Request-ID"]
    assert received["request_refused"] == []


def test_a_refused_request_is_signalled_once_with_its_reason(
    api: Api, received: dict[str, Received]
) -> None:
    token = api.issue("alice", scopes=["orders:read"])
    api.client.post("/orders", headers=api.bearer(token), json={})
    api.client.get("/orders")
    reasons = [(sender, extra["reason"]) for sender, extra in received["request_refused"]]
    assert reasons == [(api.app, "insufficient_scope"), (api.app, "no_credentials")]
    assert received["request_refused"][0][1]["key_id"] == token[3:19]
    assert received["request_authenticated"] == []
    assert all(token.split(".")[1] not in repr(extra) for _, extra in received["request_refused"])


def test_exempt_requests_without_a_key_signal_nothing(
    api: Api, received: dict[str, Received]
) -> None:
    api.client.get("/health")
    assert received["request_authenticated"] == received["request_refused"] == []


def test_signals_are_sent_only_for_the_app_a_receiver_connected_to() -> None:
    first, second = Api(), Api()
    seen = Received()
    request_refused.connect(seen, sender=first.app)
    try:
        first.client.get("/orders")
        second.client.get("/orders")
    finally:
        request_refused.disconnect(seen)
    assert [sender for sender, _ in seen] == [first.app]


def test_revoking_and_rotating_are_signalled_once_each(
    api: Api, received: dict[str, Received]
) -> None:
    api.issue("alice")
    with api.app.app_context():
        keys = api.guard.keys
        _, record = keys.create("bob")
        _, successor = keys.rotate(record.key_id, grace=60)
        keys.revoke(successor.key_id)
        keys.revoke(successor.key_id)  # already revoked: nothing changes, nothing sent
    [(sender, rotated)] = received["key_rotated"]
    assert sender is keys
    assert rotated["key"].key_id == successor.key_id
    assert rotated["replaced"].key_id == record.key_id
    assert rotated["replaced"].replaced_by == successor.key_id
    [(_, revoked)] = received["key_revoked"]
    assert revoked["key"].key_id == successor.key_id and revoked["key"].revoked_at is not None
