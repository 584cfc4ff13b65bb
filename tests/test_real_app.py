"""The guard inside an ordinary app (tests/realapp): factory, blueprints, dictConfig with
a JSON formatter, an app-wide error handler, Flask-Limiter decorators before and after
init_app; in-process with the test client and under werkzeug's threaded server."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from flask import Flask
from pythonjsonlogger.json import JsonFormatter

from tests.conftest import LOCAL_CONFIG, Api
from tests.realapp import create_app, guard
from tests.servers import fetch, served


@pytest.fixture
def app(restore_logging: None) -> Iterator[Flask]:
    # The app configures logging for the whole process: restore_logging puts it back.
    app = create_app({**LOCAL_CONFIG, "GUARD_RATE_LIMIT": "100/minute"})
    yield app
    app.extensions["guard"].keys.close()


def token(app: Flask, *scopes: str) -> dict[str, str]:
    with app.app_context():
        issued, _ = guard.keys.create("client", scopes=scopes)
    return Api.bearer(issued)


def test_blueprint_views_are_protected_exempt_or_scoped_as_declared(app: Flask) -> None:
    client = app.test_client()
    reader, admin = token(app, "catalog:read"), token(app, "admin")
    assert client.get("/ops/health").status_code == 200
    assert client.get("/catalog/items").status_code == 401
    assert client.get("/catalog/items", headers=reader).status_code == 200
    assert client.get("/admin/stats", headers=reader).status_code == 403
    assert client.get("/admin/stats", headers=admin).status_code == 200


def test_the_apps_problem_details_keep_the_guards_protocol_headers(app: Flask) -> None:
    client = app.test_client()
    missing = client.get("/catalog/items")
    assert missing.headers["Content-Type"] == "application/problem+json"
    assert missing.json is not None and missing.json["status"] == 401
    assert missing.json["request_id"] == missing.headers["X-Request-ID"]
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    forbidden = client.get("/admin/stats", headers=token(app, "catalog:read"))
    assert 'error="insufficient_scope", scope="admin"' in forbidden.headers["WWW-Authenticate"]


def test_per_route_limits_hold_whether_declared_before_or_after_init_app(app: Flask) -> None:
    client = app.test_client()
    writer = token(app, "catalog:write")
    for expected in (201, 201, 429):
        response = client.post("/catalog/items", headers=writer, json={"name": "fig"})
        assert response.status_code == expected
    assert response.headers["Retry-After"] == "60"
    reports = token(app)
    assert client.get("/reports", headers=reports).status_code == 200
    assert client.get("/reports", headers=reports).status_code == 429


def test_the_app_under_werkzeugs_threaded_server(app: Flask) -> None:
    reader = token(app, "catalog:read")
    with served(app) as connection:
        response, body = fetch(connection, "GET", "/catalog/items", reader)
        assert response.status == 200
        assert json.loads(body)["caller"] == "client"
        response, body = fetch(connection, "GET", "/admin/stats", reader)
        assert response.status == 403
        assert "insufficient_scope" in response.headers["WWW-Authenticate"]
        response, _ = fetch(connection, "GET", "/ops/health")
        assert response.status == 200


def test_the_audit_trail_reaches_the_apps_json_logs_after_dictconfig(app: Flask) -> None:
    # The app's dictConfig (disable_existing_loggers by default) disabled guard.audit,
    # which exists from `import guard` on: entries must still arrive, announced once.
    (handler,) = [  # the one the app configured (pytest adds its own)
        h for h in logging.getLogger().handlers if isinstance(h.formatter, JsonFormatter)
    ]
    assert isinstance(handler, logging.StreamHandler)
    written = io.StringIO()
    handler.setStream(written)
    client = app.test_client()
    client.get("/catalog/items")
    client.get("/catalog/items", headers=token(app, "catalog:read"))
    lines = [json.loads(line) for line in written.getvalue().splitlines()]
    audit = [line for line in lines if line["name"] == "guard.audit" and "outcome" in line]
    notices = [line for line in lines if line["name"] == "guard.audit" and "outcome" not in line]
    assert [(a["status"], a["outcome"], a["reason"]) for a in audit] == [
        (401, "denied", "no_credentials"),
        (200, "allowed", "valid"),
    ]
    assert audit[1]["key_name"] == "client" and audit[1]["path"] == "/catalog/items"
    assert len(notices) == 1 and notices[0]["levelname"] == "WARNING"
