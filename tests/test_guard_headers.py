"""Security headers, HTTPS, trusted proxies, CORS and request criteria."""

from __future__ import annotations

import http.client
import json

import pytest
from flask import request

from tests.conftest import Api
from tests.servers import served

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
    guess = {**forwarded, "Authorization": "Bearer a-guess"}
    api.client.get("/orders", headers=guess)
    assert api.client.get("/orders", headers=guess).status_code == 429
    other = {**guess, "X-Forwarded-For": "203.0.113.8"}
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
        ({"GUARD_CORS_ORIGINS": "app.example"}, "not an exact origin"),
        ({"GUARD_CORS_ORIGINS": "https://app.example/path"}, "not an exact origin"),
        # Review finding: Flask-CORS reads these as unanchored patterns.
        ({"GUARD_CORS_ORIGINS": "https://(app|admin).example.com"}, "GUARD_CORS_ORIGINS"),
        ({"GUARD_CORS_ORIGINS": "https://app.example.com$"}, "GUARD_CORS_ORIGINS"),
        ({"GUARD_CORS_ORIGINS": "https://*.example.com"}, "GUARD_CORS_ORIGINS"),
        ({"GUARD_CORS_ORIGINS": "https://[a-z]+.example.com"}, "GUARD_CORS_ORIGINS"),
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


def test_a_look_alike_origin_gets_no_cors_headers() -> None:
    api = Api(GUARD_CORS_ORIGINS="https://app.example.com")
    for origin in ("https://app.example.com.evil.net", "https://xapp.example.com"):
        response = api.client.get("/health", headers={"Origin": origin})
        assert "Access-Control-Allow-Origin" not in response.headers
        preflight = {"Origin": origin, "Access-Control-Request-Method": "GET"}
        assert api.client.options("/orders", headers=preflight).status_code == 401


def post_chunked(
    connection: http.client.HTTPConnection,
    path: str,
    body: bytes,
    headers: dict[str, str],
) -> http.client.HTTPResponse:
    pieces = [body[i : i + 1000] for i in range(0, len(body), 1000)]
    connection.request("POST", path, body=iter(pieces), headers=headers, encode_chunked=True)
    response = connection.getresponse()
    response.read()
    return response


@pytest.mark.parametrize("encoding", ["chunked", "Chunked", "CHUNKED"])
def test_a_chunked_body_is_checked_like_one_with_a_length(encoding: str) -> None:
    # Review finding: Transfer-Encoding: Chunked skipped the 415 check, and a chunked
    # body over the cap was cut at the cap and served 200.
    api = Api(GUARD_MAX_CONTENT_LENGTH=100)
    headers = {**api.bearer(api.issue()), "Transfer-Encoding": encoding}
    with served(api.app) as connection:
        csv = post_chunked(connection, "/orders", b"a,b", {**headers, "Content-Type": "text/csv"})
        assert csv.status == 415
    with served(api.app) as connection:
        big = b'{"x": "' + b"y" * 5000 + b'"}'
        refused = post_chunked(
            connection, "/orders", big, {**headers, "Content-Type": "application/json"}
        )
        assert refused.status == 413


def test_a_chunked_body_under_the_cap_reaches_the_view_whole() -> None:
    api = Api()

    @api.app.post("/echo")
    def echo() -> dict[str, object]:
        return {"echo": request.get_json()}

    body = b'{"x": "' + b"y" * 5000 + b'"}'
    headers = {**api.bearer(api.issue()), "Content-Type": "application/json"}
    with served(api.app) as connection:
        connection.request("POST", "/echo", body=iter([body[:10], body[10:]]), headers=headers)
        response = connection.getresponse()
        assert response.status == 200
        assert json.loads(response.read()) == {"echo": {"x": "y" * 5000}}


def test_the_https_redirect_never_targets_a_host_outside_trusted_hosts() -> None:
    # Review finding: Host: evil.example over plain HTTP got 301 https://evil.example/.
    api = Api(GUARD_FORCE_HTTPS=True, TRUSTED_HOSTS=["api.example.com"])
    evil = api.client.get("/orders", headers={"Host": "evil.example"})
    assert evil.status_code == 400
    assert "Location" not in evil.headers
    good = api.client.get("/orders?x=1", headers={"Host": "api.example.com"})
    assert good.status_code == 301
    assert good.headers["Location"] == "https://api.example.com/orders?x=1"


def test_an_apps_own_error_handler_keeps_the_refusals_protocol_headers() -> None:
    # Review finding: @app.errorhandler(HTTPException) rendering its own JSON dropped
    # WWW-Authenticate and Retry-After.
    from werkzeug.exceptions import HTTPException

    api = Api(GUARD_RATE_LIMIT="1/minute")

    @api.app.errorhandler(HTTPException)
    def render(error: HTTPException) -> tuple[dict[str, object], int]:
        return {"problem": error.name}, error.code or 500

    token = api.issue(scopes=["other"])
    assert api.client.get("/orders").headers["WWW-Authenticate"] == 'Bearer realm="api"'
    bad = api.client.get("/orders", headers={"Authorization": "Bearer"})
    assert bad.status_code == 400 and "invalid_request" in bad.headers["WWW-Authenticate"]
    forbidden = api.client.get("/orders", headers=api.bearer(token))
    assert forbidden.status_code == 403 and forbidden.json == {"problem": "Forbidden"}
    assert "insufficient_scope" in forbidden.headers["WWW-Authenticate"]
    limited = api.client.get("/orders", headers=api.bearer(token))
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert limited.headers["RateLimit"].startswith('"key";r=0;')


def test_before_request_hooks_registered_before_the_guard_are_pointed_out() -> None:
    from flask import Flask

    from guard import Guard
    from tests.conftest import LOCAL_CONFIG

    app = Flask("x")
    app.config.update(LOCAL_CONFIG)
    app.before_request(lambda: None)
    with pytest.warns(UserWarning, match="before authentication"):
        Guard(app)
