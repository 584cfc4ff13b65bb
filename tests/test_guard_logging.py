"""The audit trail inside an app's own logging: JSON formatters see its fields at the top
level, the app's records carry the audit entry's request id, and a ``dictConfig`` never
makes the trail vanish silently, whatever the order."""

from __future__ import annotations

import io
import json
import logging
import logging.config
from typing import Any

import pytest
import structlog
from flask import Flask

from guard import Guard
from tests.conftest import LOCAL_CONFIG, Api

FIELDS = {
    "ts",
    "request_id",
    "method",
    "path",
    "status",
    "outcome",
    "reason",
    "key_id",
    "key_name",
    "owner",
    "client",
    "user_agent",
    "latency_ms",
}


@pytest.fixture(autouse=True)
def _restored(restore_logging: None) -> None:
    """Every test here configures logging: the shared fixture puts it back."""


def configure(formatter: dict[str, Any], **config: Any) -> io.StringIO:
    """Logging set up the way an app does it: dictConfig, defaults left as they are."""
    stream = io.StringIO()
    logging.config.dictConfig(
        {
            "version": 1,
            "filters": {"request_id": {"()": "guard.RequestIdFilter"}},
            "formatters": {"main": formatter},
            "handlers": {
                "main": {
                    "class": "logging.StreamHandler",
                    "stream": stream,
                    "formatter": "main",
                    "filters": ["request_id"],
                }
            },
            "root": {"handlers": ["main"], "level": "INFO"},
            **config,
        }
    )
    return stream


JSON_LOGGER = {
    "()": "pythonjsonlogger.json.JsonFormatter",
    "format": "%(levelname)s %(name)s %(message)s",
}


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_python_json_logger_puts_every_field_at_the_top_level(api: Api) -> None:
    stream = configure(JSON_LOGGER)
    token = api.issue("alice")
    response = api.client.get("/orders", headers=api.bearer(token, **{"User-Agent": "cli/1.0"}))
    logged = lines(stream)
    [entry] = [e for e in logged if (e["levelname"], e["name"]) == ("INFO", "guard.audit")]
    assert set(entry) >= FIELDS
    assert entry["request_id"] == response.headers["X-Request-ID"]
    assert (entry["status"], entry["outcome"], entry["reason"]) == (200, "allowed", "valid")
    assert (entry["key_name"], entry["user_agent"]) == ("alice", "cli/1.0")
    assert token.split(".")[1] not in stream.getvalue()


def test_structlog_processor_formatter_puts_every_field_at_the_top_level(api: Api) -> None:
    formatter = {
        "()": structlog.stdlib.ProcessorFormatter,
        # Records from the standard library: their extra attributes become event keys.
        "foreign_pre_chain": [structlog.stdlib.add_log_level, structlog.stdlib.ExtraAdder()],
        "processors": [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.JSONRenderer(),
        ],
    }
    stream = configure(formatter)
    api.client.get("/orders", headers=api.bearer("gk_forged.token"))
    [entry] = [line for line in lines(stream) if "outcome" in line]
    assert set(entry) >= FIELDS
    assert (entry["status"], entry["outcome"], entry["reason"]) == (401, "denied", "malformed")
    assert entry["level"] == "info"


def test_without_a_formatter_each_entry_is_one_compact_json_line(api: Api) -> None:
    stream = configure({"format": "%(message)s"}, disable_existing_loggers=False)
    api.client.get("/health")
    [line] = stream.getvalue().splitlines()
    assert json.loads(line)["reason"] == "exempt"
    assert line == json.dumps(json.loads(line), separators=(",", ":"))


def test_an_apps_own_records_carry_the_audit_entrys_request_id() -> None:
    stream = configure(JSON_LOGGER)
    app = Flask("shop")
    app.config.update(LOCAL_CONFIG)
    guard = Guard(app)

    @app.get("/checkout")
    @guard.exempt
    def checkout() -> dict[str, Any]:
        logging.getLogger("checkout").info("checkout started")
        return {"request_id": guard.request_id}

    response = app.test_client().get("/checkout")
    own, audit = [line for line in lines(stream) if line["levelname"] == "INFO"]
    assert own["message"] == "checkout started" and audit["name"] == "guard.audit"
    assert own["request_id"] == audit["request_id"] == response.headers["X-Request-ID"]
    assert response.json == {"request_id": audit["request_id"]}
    logging.getLogger("checkout").info("outside any request")
    assert lines(stream)[-1]["request_id"] == "-"
    assert guard.request_id is None


@pytest.mark.parametrize("order", ["dictConfig first", "guard first"])
def test_dictconfig_never_silences_the_trail(order: str) -> None:
    app = Flask("app")
    app.config.update(LOCAL_CONFIG)
    if order == "guard first":
        guard = Guard(app)
    # disable_existing_loggers is left at its default, True: guard.audit exists already.
    stream = configure({"format": "%(levelname)s %(name)s %(message)s"})
    if order == "dictConfig first":
        guard = Guard(app)
    app.add_url_rule("/health", "health", guard.exempt(lambda: "ok"))
    client = app.test_client()
    for _ in range(3):
        client.get("/health")
    output = stream.getvalue().splitlines()
    notices = [line for line in output if line.startswith("WARNING")]
    entries = [line for line in output if line.startswith("INFO guard.audit {")]
    assert len(notices) == 1 and "'guard.audit'" in notices[0] and "disabled" in notices[0]
    assert len(entries) == 3
    # Configured again: disabled again, and said again, once.
    again = configure({"format": "%(levelname)s %(name)s %(message)s"})
    client.get("/health")
    client.get("/health")
    output = again.getvalue().splitlines()
    assert [line.split()[:2] for line in output] == [
        ["WARNING", "guard.audit"],
        ["INFO", "guard.audit"],
        ["INFO", "guard.audit"],
    ]


def test_naming_the_trail_in_dictconfig_keeps_it_without_a_notice(api: Api) -> None:
    stream = configure(
        {"format": "%(levelname)s %(name)s %(message)s"},
        loggers={"guard.audit": {"level": "INFO"}},
    )
    api.client.get("/health")
    [line] = stream.getvalue().splitlines()
    assert line.startswith("INFO guard.audit {")
