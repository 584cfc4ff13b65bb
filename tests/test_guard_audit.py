"""Exactly one JSON audit entry per request, whatever happened, and never a secret."""

from __future__ import annotations

import datetime
import io
import json
import logging
import os
import threading
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guard._request.state import RequestState
from guard.observability import audit
from tests.conftest import Api


@pytest.fixture
def entries(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    caplog.set_level(logging.INFO, logger="guard.audit")
    return _Entries(caplog)  # type: ignore[return-value]


class _Entries(list):  # type: ignore[type-arg]
    """The audit entries logged so far, parsed from the log lines themselves."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        super().__init__()
        self.caplog = caplog

    def all(self) -> list[dict[str, Any]]:
        lines = [r.getMessage() for r in self.caplog.records if r.name == "guard.audit"]
        assert all("\n" not in line and "\r" not in line for line in lines)
        return [json.loads(line) for line in lines]


def test_allowed_request_is_audited_with_key_and_latency(api: Api, entries: Any) -> None:
    token = api.issue("alice")
    response = api.client.get("/orders", headers=api.bearer(token, **{"User-Agent": "cli/1.0"}))
    [entry] = entries.all()
    assert entry["status"] == 200
    assert (entry["outcome"], entry["reason"]) == ("allowed", "valid")
    assert entry["key_name"] == "alice" and entry["key_id"] in token
    assert entry["request_id"] == response.headers["X-Request-ID"]
    assert (entry["method"], entry["path"], entry["user_agent"]) == ("GET", "/orders", "cli/1.0")
    assert entry["client"] == "127.0.0.1"
    assert entry["latency_ms"] >= 0
    assert entry["ts"].endswith("+00:00")


def test_denials_record_the_precise_reason_the_client_never_sees(api: Api, entries: Any) -> None:
    token = api.issue("alice")
    with api.app.app_context():
        api.guard.keys.revoke(token[3:19])
    api.client.get("/orders", headers=api.bearer(token))
    api.client.get("/orders", headers=api.bearer(token[:-1]))
    revoked, malformed = entries.all()
    assert (revoked["status"], revoked["reason"], revoked["key_id"]) == (
        401,
        "revoked",
        token[3:19],
    )
    assert (malformed["outcome"], malformed["reason"]) == ("denied", "malformed")


def test_404_and_unhandled_errors_are_audited_once(api: Api, entries: Any) -> None:
    token = api.issue()
    api.client.get("/missing", headers=api.bearer(token))
    api.app.testing = False  # let Flask answer 500 instead of raising into the test
    assert api.client.get("/boom", headers=api.bearer(token)).status_code == 500
    missing, boom = entries.all()
    assert missing["status"] == 404
    assert (boom["status"], boom["outcome"], boom["reason"]) == (500, "error", "RuntimeError")


def test_an_exception_that_escapes_every_handler_is_still_audited(api: Api, entries: Any) -> None:
    api.app.testing = True  # exceptions propagate: after_request never runs
    with pytest.raises(RuntimeError):
        api.client.get("/boom", headers=api.bearer(api.issue()))
    [entry] = entries.all()
    assert (entry["status"], entry["outcome"], entry["reason"]) == (500, "error", "RuntimeError")


def test_no_token_or_secret_ever_reaches_the_audit_trail(
    api: Api, entries: Any, caplog: pytest.LogCaptureFixture
) -> None:
    token = api.issue()
    api.client.get("/orders", headers=api.bearer(token))
    api.client.get("/orders", headers=api.bearer(token + "x"))
    api.client.get(f"/orders?token={token[:-1]}", headers=api.bearer(token[:-1]))
    secret = token.split(".")[1]
    # Neither in the line nor in any attribute a JSON formatter would write.
    assert all(secret not in json.dumps(vars(r), default=str) for r in caplog.records)
    assert len(entries.all()) == 3


@pytest.mark.parametrize("field", ["path", "user_agent", "request_id"])
def test_control_characters_cannot_forge_a_second_line(api: Api, entries: Any, field: str) -> None:
    forged = 'x\r\n{"status": 200, "outcome": "allowed"}\x00\x1b[2J'
    # Raw environ values: a real server may pass on what the test client would refuse.
    environ = {
        "path": {"PATH_INFO": "/orders" + forged},
        "user_agent": {"HTTP_USER_AGENT": forged},
        "request_id": {"HTTP_X_REQUEST_ID": forged},
    }[field]
    api.client.get("/orders", environ_overrides=environ)
    [entry] = entries.all()
    assert entry["status"] == 401
    assert entry["outcome"] == "denied"
    if field == "request_id":
        assert entry["request_id"] != forged  # refused and replaced by a fresh id
    else:
        assert forged in entry[field]  # kept, but only ever as an escaped JSON string


def test_sane_request_ids_are_kept_and_echoed(api: Api, entries: Any) -> None:
    response = api.client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"
    assert entries.all()[0]["request_id"] == "abc-123"
    generated = api.client.get("/health", headers={"X-Request-ID": "x" * 500})
    assert len(generated.headers["X-Request-ID"]) == 32


def test_timestamps_are_utc_iso_8601_to_the_millisecond() -> None:
    state = RequestState("req-1")
    for now in (0.0, 1_800_000_000.9999, 1_800_000_059.0405):
        expected = datetime.datetime.fromtimestamp(now, datetime.UTC)
        fields, _ = audit.entry(state, {}, 200, now)
        assert fields["ts"] == expected.isoformat(timespec="milliseconds")


@given(agent=st.text(), method=st.sampled_from(["GET", "PATCH"]), status=st.integers(100, 599))
def test_each_line_is_exactly_what_json_dumps_writes(agent: str, method: str, status: int) -> None:
    state = RequestState("req-1", outcome="denied", reason="revoked", key_id="00ff")
    environ = {"REQUEST_METHOD": method, "PATH_INFO": '/a"b\\c', "HTTP_USER_AGENT": agent}
    fields, line = audit.entry(state, environ, status, 0.0)
    cut = agent if len(agent) <= audit.MAX_VALUE_LENGTH else agent[: audit.MAX_VALUE_LENGTH] + "…"
    parsed = json.loads(line)
    assert {k: v for k, v in parsed.items() if k != "latency_ms"} == {
        "ts": "1970-01-01T00:00:00.000+00:00",
        "request_id": "req-1",
        "method": method,
        "path": '/a"b\\c',
        "status": status,
        "outcome": "denied",
        "reason": "revoked",
        "key_id": "00ff",
        "key_name": None,
        "owner": None,
        "client": None,
        "user_agent": cut,
    }
    assert line == json.dumps(parsed, separators=(",", ":"))
    assert parsed == fields  # the record's attributes and its message agree
    assert line.isascii() and "\n" not in line
    assert parsed["latency_ms"] >= 0


def test_every_field_is_an_attribute_of_the_record_and_the_message_is_its_json(
    api: Api, entries: Any, caplog: pytest.LogCaptureFixture
) -> None:
    token = api.issue("alice")
    api.client.get("/orders", headers=api.bearer(token, **{"User-Agent": "cli/1.0"}))
    api.client.get("/orders", headers=api.bearer(token[:-1]))
    records = [r for r in caplog.records if r.name == "guard.audit"]
    assert len(records) == 2
    for record in records:
        fields = {name: getattr(record, name) for name in audit.FIELDS}
        assert record.getMessage() == json.dumps(fields, separators=(",", ":"))
        assert (record.levelname, record.args) == ("INFO", ())
    assert records[0].key_name == "alice" and records[1].reason == "malformed"  # type: ignore[attr-defined]


def test_audit_records_format_like_any_other_record(api: Api, entries: Any) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        logging.Formatter(
            "%(levelname)s %(name)s %(module)s %(filename)s %(threadName)s %(process)d "
            "%(request_id)s %(status)s %(message)s"
        )
    )
    audit.logger.addHandler(handler)
    try:
        response = api.client.get("/health")
    finally:
        audit.logger.removeHandler(handler)
    request_id = response.headers["X-Request-ID"]
    head, _, message = stream.getvalue().strip().partition(" {")
    assert head == (
        f"INFO guard.audit audit audit.py {threading.current_thread().name} {os.getpid()} "
        f"{request_id} 200"
    )
    assert json.loads("{" + message)["request_id"] == request_id


def test_an_applications_record_factory_makes_every_audit_record(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    class Tagged(logging.LogRecord):
        tenant = "blue"

    caplog.set_level(logging.INFO, logger="guard.audit")
    logging.setLogRecordFactory(Tagged)
    try:
        api.client.get("/health")
    finally:
        logging.setLogRecordFactory(logging.LogRecord)
    [record] = [r for r in caplog.records if r.name == "guard.audit"]
    assert isinstance(record, Tagged) and json.loads(record.getMessage())["status"] == 200
