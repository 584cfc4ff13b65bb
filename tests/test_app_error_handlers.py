"""An app's own error handlers, registered by status code as Flask documents them, see the
guard's refusals: each refusal is also werkzeug's exception for its status, as
Flask-Limiter's ``RateLimitExceeded`` is a ``TooManyRequests``. The protocol headers
(``WWW-Authenticate``, ``Retry-After``, ``RateLimit*``) reach the client either way."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from guard import Guard
from tests.conftest import LOCAL_CONFIG


def shop(**config: Any) -> tuple[Flask, Guard]:
    app = Flask("shop")
    app.config.update({**LOCAL_CONFIG, **config})
    guard = Guard(app)

    @app.get("/orders")
    @guard.require("orders:read")
    def orders() -> object:
        return {"orders": []}

    @app.post("/orders")
    @guard.require("orders:write")
    def place() -> object:
        return {"placed": True}

    for code in (400, 401, 403, 413, 415, 429, 503):

        @app.errorhandler(code)
        def house_style(error: HTTPException) -> tuple[object, int]:
            return jsonify(house_error=error.code, name=error.name), error.code or 500

    return app, guard


def issue(app: Flask, guard: Guard, *scopes: str, **options: Any) -> str:
    with app.app_context():
        token, _ = guard.keys.create("client", scopes=scopes, **options)
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_missing_key_reaches_the_apps_401_handler_with_its_challenge() -> None:
    app, _ = shop()
    response = app.test_client().get("/orders")
    assert response.status_code == 401
    assert response.json == {"house_error": 401, "name": "Unauthorized"}
    assert response.headers["WWW-Authenticate"].startswith("Bearer realm=")


def test_a_bad_token_reaches_the_apps_401_handler() -> None:
    app, _ = shop()
    response = app.test_client().get("/orders", headers=bearer("gk_forged"))
    assert response.json == {"house_error": 401, "name": "Unauthorized"}
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_a_malformed_header_reaches_the_apps_400_handler() -> None:
    app, _ = shop()
    response = app.test_client().get("/orders", headers={"Authorization": "Bearer"})
    assert response.status_code == 400
    assert response.json == {"house_error": 400, "name": "Bad Request"}


def test_a_missing_scope_reaches_the_apps_403_handler_with_its_challenge() -> None:
    app, guard = shop()
    token = issue(app, guard, "orders:read")
    response = app.test_client().post("/orders", json={}, headers=bearer(token))
    assert response.status_code == 403
    assert response.json == {"house_error": 403, "name": "Forbidden"}
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]


def test_a_rate_limited_key_reaches_the_apps_429_handler_with_retry_after() -> None:
    app, guard = shop()
    token = issue(app, guard, "orders:read", rate_limit="1/hour")
    client = app.test_client()
    assert client.get("/orders", headers=bearer(token)).status_code == 200
    response = client.get("/orders", headers=bearer(token))
    assert response.status_code == 429
    assert response.json == {"house_error": 429, "name": "Too Many Requests"}
    assert int(response.headers["Retry-After"]) > 0
    assert response.headers["RateLimit"].startswith('"key";r=0;')


def test_a_body_of_the_wrong_type_reaches_the_apps_415_handler() -> None:
    app, guard = shop()
    token = issue(app, guard, "orders:write")
    response = app.test_client().post(
        "/orders", data="a,b", headers={**bearer(token), "Content-Type": "text/csv"}
    )
    assert response.status_code == 415
    assert response.json == {"house_error": 415, "name": "Unsupported Media Type"}


@pytest.mark.parametrize("limit", [None, 10])
def test_a_body_too_large_reaches_the_apps_413_handler(limit: int | None) -> None:
    # Refused by the guard's body stage, or by werkzeug under MAX_CONTENT_LENGTH.
    app, guard = shop(GUARD_MAX_CONTENT_LENGTH=10, MAX_CONTENT_LENGTH=limit)
    token = issue(app, guard, "orders:write")
    response = app.test_client().post("/orders", json={"n": "x" * 100}, headers=bearer(token))
    assert response.status_code == 413
    assert response.json == {"house_error": 413, "name": "Request Entity Too Large"}


def test_a_store_outage_reaches_the_apps_503_handler_with_retry_after() -> None:
    _app, elsewhere = shop()
    token = issue(_app, elsewhere, "orders:read")  # signed as here
    # A Redis store nothing listens on: the token's lookup fails within the store timeout.
    app, _ = shop(GUARD_STORE_URL="redis://127.0.0.1:1/0", GUARD_STORE_TIMEOUT=0.2)
    response = app.test_client().get("/orders", headers=bearer(token))
    assert response.status_code == 503
    assert response.json == {"house_error": 503, "name": "Service Unavailable"}
    assert response.headers["Retry-After"] == "5"


def test_without_handlers_of_its_own_the_app_answers_in_the_guards_json() -> None:
    app = Flask("plain")
    app.config.update(LOCAL_CONFIG)
    Guard(app)
    response = app.test_client().get("/orders")
    assert response.status_code == 401
    assert response.json is not None and response.json["error"] == "unauthorized"
