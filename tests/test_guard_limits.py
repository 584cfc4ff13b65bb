"""Per-key limits, the failed-attempt throttle and the RateLimit headers."""

from __future__ import annotations

import pytest
from flask import Flask

from guard import Guard
from tests.conftest import LOCAL_CONFIG, Api

ORIGIN = "https://app.example"


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


class CountingLimits:
    """Wraps the guard's limiter to count the calls that reach its storage."""

    def __init__(self, api: Api) -> None:
        self.limits = api.app.extensions["guard"].limits
        self.calls = 0
        original = self.limits._send

        def counted(*args: object) -> object:
            self.calls += 1
            return original(*args)

        self.limits._send = counted


def test_forged_tokens_never_reach_the_store_or_the_shared_limiter() -> None:
    api = Api(GUARD_FAILED_AUTH_LIMIT="1000/minute")
    token = api.issue()
    counting = CountingLimits(api)
    store_calls: list[str] = []
    store = api.app.extensions["guard"].keys.store
    original_get = store.get
    store.get = lambda key_id: store_calls.append(key_id) or original_get(key_id)
    forged = [token[:-1] + "x", token.replace(".", "-", 1), "gk_" + "0" * 16 + ".a.b", "junk"]
    for candidate in forged * 25:
        assert api.client.get("/orders", headers=api.bearer(candidate)).status_code == 401
    assert counting.calls == 0 and store_calls == []


def test_failures_that_needed_the_store_count_in_the_shared_limiter() -> None:
    api = Api(GUARD_FAILED_AUTH_LIMIT="2/minute")
    token = api.issue()
    with api.app.app_context():
        api.guard.keys.revoke(token[3:19])
    counting = CountingLimits(api)
    assert api.client.get("/orders", headers=api.bearer(token)).status_code == 401
    assert api.client.get("/orders", headers=api.bearer(token)).status_code == 401
    assert counting.calls == 2
    blocked = api.client.get("/orders", headers=api.bearer(api.issue("fresh")))
    assert blocked.status_code == 429
    assert 1 <= int(blocked.headers["Retry-After"]) <= 60
    assert counting.calls == 2  # a blocked address is refused before anything is counted


def test_an_authenticated_request_makes_one_limiter_call() -> None:
    api = Api()
    token = api.issue()
    counting = CountingLimits(api)
    for _ in range(5):
        api.client.get("/orders", headers=api.bearer(token))
    assert counting.calls == 5


def test_a_key_used_on_an_exempt_view_counts_there_but_is_never_refused_there() -> None:
    api = Api(GUARD_RATE_LIMIT="1/minute")
    token = api.issue()
    assert api.client.get("/health", headers=api.bearer(token)).status_code == 200
    assert api.client.get("/health", headers=api.bearer(token)).status_code == 200
    assert api.client.get("/orders", headers=api.bearer(token)).status_code == 429


def test_a_request_sent_to_https_or_a_preflight_does_not_count_against_the_key() -> None:
    api = Api(GUARD_FORCE_HTTPS=True, GUARD_RATE_LIMIT="1/minute", GUARD_CORS_ORIGINS=ORIGIN)
    token = api.issue()
    redirected = api.client.get("/orders", headers=api.bearer(token))
    assert redirected.status_code == 301
    preflight = api.client.options(
        "/orders",
        base_url="https://localhost",
        headers=api.bearer(token, Origin=ORIGIN, **{"Access-Control-Request-Method": "GET"}),
    )
    assert preflight.status_code == 204
    answered = api.client.get("/orders", base_url="https://localhost", headers=api.bearer(token))
    assert answered.status_code == 200
    assert answered.headers["RateLimit"].startswith('"key";r=0;')
