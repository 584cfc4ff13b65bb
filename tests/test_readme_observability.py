"""The README's "Logs, metrics and signals" examples, run as written: a test fails when
one stops working."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from guard import Guard, key_revoked, request_refused
from tests.conftest import LOCAL_CONFIG, PEPPER, SECRET, Api
from tests.redis_server import free_port
from tests.test_guard_metrics import requests_total, samples, three_allowed_and_two_refused

pytestmark = pytest.mark.usefixtures("restore_logging")
README = Path(__file__).resolve().parents[1] / "README.md"


def section() -> str:
    text = README.read_text()
    start = text.index("## Logs, metrics and signals")
    return text[start : text.index("\n## ", start + 1)]


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section(), re.S)


@pytest.fixture
def app() -> Iterator[Flask]:
    app = Flask("shop")
    app.config.update(LOCAL_CONFIG)
    yield app


def run(block: str, app: Flask, guard: Guard) -> dict[str, Any]:
    namespace: dict[str, Any] = {"app": app, "guard": guard}
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - the README's own code
    return namespace


def test_the_logging_example_joins_the_apps_lines_to_the_audit_entry(
    app: Flask, capsys: pytest.CaptureFixture[str]
) -> None:
    guard = Guard(app)
    logging_example = blocks("python")[0]
    run(logging_example, app, guard)
    token, _ = guard_keys(app, guard, scopes=["orders:write"])
    response = app.test_client().post("/orders", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    created, own, entry = printed  # the key's creation is audited too
    assert created["name"] == "guard.audit.keys"
    assert own["message"] == "order placed" and entry["name"] == "guard.audit"
    assert own["request_id"] == entry["request_id"] == response.json["request_id"]  # type: ignore[index]
    assert (entry["status"], entry["reason"], entry["levelname"]) == (201, "valid", "INFO")


def test_the_structlog_formatter_puts_the_fields_in_the_event(
    app: Flask, capsys: pytest.CaptureFixture[str]
) -> None:
    guard = Guard(app)
    logging_example, structlog_example = blocks("python")[:2]
    run(logging_example, app, guard)
    options = dict(run(structlog_example, app, guard)["formatter"])
    # The same handler, structlog's formatter in place of python-json-logger's.
    [handler] = logging.getLogger().handlers
    handler.setFormatter(options.pop("()")(**options))
    app.test_client().get("/orders")
    [entry] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (entry["status"], entry["outcome"], entry["reason"]) == (401, "denied", "no_credentials")
    assert entry["level"] == "info" and entry["request_id"] != "-"


def test_the_signals_example_hears_refusals_and_revocations(
    app: Flask, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    guard = Guard(app)
    app.add_url_rule("/orders", "orders", lambda: "ok")
    namespace = run(blocks("python")[2], app, guard)
    try:
        refused = app.test_client().get("/orders")
        _, record = guard_keys(app, guard)
        with app.app_context():
            guard.keys.revoke(record.key_id)
    finally:
        request_refused.disconnect(namespace["note_refusal"])
        key_revoked.disconnect(namespace["announce"])
    request_id = refused.headers["X-Request-ID"]
    assert f"refused {request_id}: no_credentials" in caplog.messages
    assert capsys.readouterr().out == f"key {record.key_id} (alice) revoked\n"


@pytest.mark.redis
def test_the_scrapers_key_from_the_readme_reads_the_metrics(redis_url: str) -> None:
    [command] = [line.partition("#")[0].split() for line in blocks("sh") if "guard keys" in line]
    env = {"GUARD_SECRET_KEY": SECRET, "GUARD_PEPPER": PEPPER, "GUARD_STORE_URL": redis_url}
    guard_command = str(Path(sys.executable).parent / command[0])
    created = subprocess.run(
        [guard_command, *command[1:]], env=env, capture_output=True, text=True, check=True
    )
    api = Api(GUARD_STORE_URL=redis_url, GUARD_METRICS=True)
    try:
        scraper = created.stdout.strip()
        for line in blocks("text")[0].splitlines():  # the README's sample, reproduced
            labels = dict(re.findall(r'(\w+)="(\w+)"', line))
            if labels["reason"] == "valid":
                token = api.issue("alice", rate_limit="3/minute")
                for _ in range(3):
                    api.client.get("/orders", headers=api.bearer(token))
        response = api.client.get("/metrics", headers=api.bearer(scraper))
        assert response.status_code == 200
        assert requests_total(samples(response.text))[("allowed", "valid")] == 3
    finally:
        api.close()


def test_the_readmes_sample_metrics_are_what_the_metrics_show() -> None:
    api = Api(GUARD_METRICS=True)
    scraper = three_allowed_and_two_refused(api)
    shown = api.client.get("/metrics", headers=api.bearer(scraper)).text.splitlines()
    for line in blocks("text")[0].splitlines():
        assert line in shown


def guard_keys(app: Flask, guard: Guard, **options: Any) -> tuple[str, Any]:
    with app.app_context():
        return guard.keys.create("alice", **options)


def test_the_logging_example_keeps_the_unsent_audit_entries_without_a_notice(
    app: Flask, capsys: pytest.CaptureFixture[str]
) -> None:
    # The audit stream's logger exists before the README's dictConfig runs, as in an app
    # that imports the guard first.
    from guard.observability.audit_stream import RedisStreamHandler

    run(blocks("python")[0], app, Guard(app))
    closed = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens: every batch fails
    stream = RedisStreamHandler.from_url(closed, 0.2, "guard:audit", 100)
    try:
        stream.emit(logging.makeLogRecord({"msg": '{"request_id":"r1"}'}))
        stream.flush()
    finally:
        stream.close()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["name"] for line in lines] == ["guard.unsent_audit"] * 2
    assert "disabled by the logging configuration" not in json.dumps(lines)
    assert lines[1]["message"] == '{"request_id":"r1"}'
