"""Per-key limits, the failed-attempt throttle and the RateLimit headers."""

from __future__ import annotations

import pytest
from flask import Flask

from guard import Guard
from tests.conftest import LOCAL_CONFIG, Api


def test_each_key_gets_the_default_limit_and_rate_limit_headers() -> None:
    api = Api(GUARD_RATE_LIMIT="2/minute")
    alice, bob = api.issue("alice"), api.issue("bob")
    first = api.client.get("/orders", headers=api.bearer(alice))
    assert first.headers["RateLimit-Policy"] == '"key";q=2;w=60'
    assert first.headers["RateLimit"].startswith('"key";r=1;t=')
    assert api.client.get("/orders", headers=api.bearer(alice)).status_code == 200
    refused = api.client.get("/orders", headers=api.bearer(alice))
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["RateLimit"].startswith('"key";r=0;')
    assert refused.json is not None and refused.json["error"] == "rate_limited"
    assert api.client.get("/orders", headers=api.bearer(bob)).status_code == 200


def test_a_keys_own_limit_overrides_the_default() -> None:
    api = Api(GUARD_RATE_LIMIT="100/minute")
    token = api.issue(rate_limit="1/minute")
    assert api.client.get("/orders", headers=api.bearer(token)).status_code == 200
    assert api.client.get("/orders", headers=api.bearer(token)).status_code == 429


def test_failed_attempts_throttle_the_client_address_even_for_a_valid_key() -> None:
    api = Api(GUARD_FAILED_AUTH_LIMIT="3/minute")
    token = api.issue()
    for _ in range(3):
        assert api.client.get("/orders", headers=api.bearer("wrong")).status_code == 401
    # Past the limit nothing from that address is checked, so guessing learns nothing.
    response = api.client.get("/orders", headers=api.bearer(token))
    assert response.status_code == 429
    assert response.headers["RateLimit-Policy"] == '"failed-auth";q=3;w=60'
    other = api.client.get(
        "/orders", headers=api.bearer(token), environ_base={"REMOTE_ADDR": "10.0.0.9"}
    )
    assert other.status_code == 200


def test_successes_do_not_count_against_the_address() -> None:
    api = Api(GUARD_FAILED_AUTH_LIMIT="2/minute")
    token = api.issue()
    for _ in range(5):
        assert api.client.get("/orders", headers=api.bearer(token)).status_code == 200


def test_preflight_is_answered_without_a_key_and_counts_against_no_limit() -> None:
    api = Api(GUARD_CORS_ORIGINS="https://app.example", GUARD_FAILED_AUTH_LIMIT="1/minute")
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "GET"}
    for _ in range(3):
        response = api.client.options("/orders", headers=preflight)
        assert response.status_code == 204
        assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert api.client.get("/orders", headers=api.bearer(api.issue())).status_code == 200


@pytest.mark.parametrize(("fail_open", "status"), [(False, 503), (True, 200)])
def test_limiter_outage_follows_the_configured_policy(fail_open: bool, status: int) -> None:
    api = Api(
        GUARD_RATELIMIT_STORAGE_URL="redis://127.0.0.1:1/0", GUARD_RATELIMIT_FAIL_OPEN=fail_open
    )
    token = api.issue()
    response = api.client.get("/orders", headers=api.bearer(token))
    assert response.status_code == status
    if status == 503:
        assert response.headers["Retry-After"] == "5"


def test_auth_still_fails_closed_when_the_limiter_fails_open() -> None:
    api = Api(GUARD_RATELIMIT_STORAGE_URL="redis://127.0.0.1:1/0", GUARD_RATELIMIT_FAIL_OPEN=True)
    assert api.client.get("/orders", headers=api.bearer("wrong")).status_code == 401
    assert api.client.get("/orders").status_code == 401


def test_flask_limiter_decorators_still_work_per_route() -> None:
    guard = Guard()
    app = Flask("x")
    app.config.update(LOCAL_CONFIG)

    @app.get("/expensive")
    @guard.limiter.limit("1/minute")
    def expensive() -> str:
        return "ok"

    guard.init_app(app)
    with app.app_context():
        token, _ = guard.keys.create("alice")
    client = app.test_client()
    assert client.get("/expensive", headers=Api.bearer(token)).status_code == 200
    refused = client.get("/expensive", headers=Api.bearer(token))
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "60"
    assert refused.json is not None and refused.json["error"] == "rate_limited"
    assert client.get("/expensive").status_code == 401  # the guard still runs first
