"""Security headers, HTTPS, trusted proxies, CORS and request criteria."""

from __future__ import annotations

import pytest

from tests.conftest import Api

ORIGIN = "https://app.example"


def test_every_response_carries_the_json_api_security_headers(api: Api) -> None:
    for response in (
        api.client.get("/orders", headers=api.bearer(api.issue())),
        api.client.get("/orders"),
        api.client.get("/health"),
    ):
        headers = response.headers
        assert headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"
        assert headers["X-Frame-Options"] == "DENY"


def test_hsts_only_on_requests_that_came_over_https(api: Api) -> None:
    assert "Strict-Transport-Security" not in api.client.get("/health").headers
    secure = api.client.get("/health", base_url="https://localhost")
    assert secure.headers["Strict-Transport-Security"].startswith("max-age=31536000")


def test_plain_http_is_redirected_to_https_by_default() -> None:
    api = Api(GUARD_FORCE_HTTPS=True)
    response = api.client.get("/orders?x=1")
    assert response.status_code == 301
    assert response.headers["Location"] == "https://localhost/orders?x=1"
    assert api.client.post("/orders").status_code == 308
    assert api.client.get("/health", base_url="https://localhost").status_code == 200


def test_forwarded_proto_is_ignored_without_a_trusted_proxy() -> None:
    api = Api(GUARD_FORCE_HTTPS=True)
    response = api.client.get("/health", headers={"X-Forwarded-Proto": "https"})
    assert response.status_code == 301
    assert "Strict-Transport-Security" not in response.headers


def test_forwarded_headers_are_used_behind_a_trusted_proxy() -> None:
    api = Api(GUARD_FORCE_HTTPS=True, GUARD_TRUSTED_PROXIES=1, GUARD_FAILED_AUTH_LIMIT="1/minute")
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
    response = api.client.get("/health", headers=forwarded)
    assert response.status_code == 200
    assert "Strict-Transport-Security" in response.headers
    # The client address comes from X-Forwarded-For: throttling hits 203.0.113.7 only.
    api.client.get("/orders", headers=forwarded)
    assert api.client.get("/orders", headers=forwarded).status_code == 429
    other = {**forwarded, "X-Forwarded-For": "203.0.113.8"}
    assert api.client.get("/orders", headers=other).status_code == 401


def test_allowed_origin_gets_cors_headers_also_on_errors() -> None:
    api = Api(GUARD_CORS_ORIGINS=ORIGIN)
    for response in (
        api.client.get("/orders", headers=api.bearer(api.issue(), Origin=ORIGIN)),
        api.client.get("/orders", headers={"Origin": ORIGIN}),
    ):
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert "WWW-Authenticate" in response.headers["Access-Control-Expose-Headers"]
        assert "Access-Control-Allow-Credentials" not in response.headers


def test_other_origins_get_no_cors_headers_and_preflight_needs_a_key() -> None:
    api = Api(GUARD_CORS_ORIGINS=ORIGIN)
    response = api.client.get("/health", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in response.headers
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    assert api.client.options("/orders", headers=preflight).status_code == 401


def test_preflight_allows_the_configured_headers() -> None:
    api = Api(GUARD_CORS_ORIGINS=ORIGIN, GUARD_CORS_ALLOW_CREDENTIALS=True)
    response = api.client.options(
        "/orders",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert "authorization" in response.headers["Access-Control-Allow-Headers"].lower()


def test_cors_is_off_when_no_origin_is_configured(api: Api) -> None:
    response = api.client.get("/health", headers={"Origin": ORIGIN})
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ({"GUARD_CORS_ORIGINS": "*", "GUARD_CORS_ALLOW_CREDENTIALS": True}, "any site"),
        ({"GUARD_CORS_ORIGINS": "app.example"}, "not an origin"),
        ({"GUARD_CORS_ORIGINS": "https://app.example/path"}, "not an origin"),
    ],
)
def test_unsafe_cors_settings_are_refused_at_start_up(
    setting: dict[str, object], complaint: str
) -> None:
    from guard import ConfigurationError

    with pytest.raises(ConfigurationError, match=complaint):
        Api(**setting)


def test_body_over_the_cap_is_413_in_the_json_shape() -> None:
    api = Api(GUARD_MAX_CONTENT_LENGTH=10)
    response = api.client.post("/orders", headers=api.bearer(api.issue()), json={"x": "y" * 20})
    assert response.status_code == 413
    assert response.json is not None and response.json["error"] == "payload_too_large"


def test_body_that_is_not_json_is_415_unless_the_view_accepts_it(api: Api) -> None:
    token = api.issue()
    response = api.client.post(
        "/orders", headers=api.bearer(token), data="a,b", content_type="text/csv"
    )
    assert response.status_code == 415
    assert api.client.post("/orders", headers=api.bearer(token), json={}).status_code == 201
    accepted = api.client.post(
        "/uploads", headers=api.bearer(token), data="a,b", content_type="text/csv"
    )
    assert accepted.status_code == 200
