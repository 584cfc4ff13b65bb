"""Authentication and scopes, answered as RFC 6750 says."""

from __future__ import annotations

import pytest
from flask import Flask

from guard import ConfigurationError, Guard
from stores import KeyRecord, MemoryStore, StoreUnavailable
from tests.conftest import BASE_CONFIG, LOCAL_CONFIG, Api


def test_valid_key_reaches_the_view_which_sees_the_key(api: Api) -> None:
    response = api.client.get("/orders", headers=api.bearer(api.issue("alice")))
    assert response.status_code == 200
    assert response.json == {"orders": [], "key": "alice"}
    assert response.headers["Cache-Control"] == "no-store"


def test_an_authenticated_answer_is_never_cached_whatever_the_view_says(api: Api) -> None:
    @api.app.get("/cacheable")
    def cacheable() -> tuple[str, int, dict[str, str]]:
        return "ok", 200, {"Cache-Control": "public, max-age=600"}

    response = api.client.get("/cacheable", headers=api.bearer(api.issue()))
    assert response.headers.getlist("Cache-Control") == ["no-store"]


def test_no_credentials_is_401_with_a_bare_challenge(api: Api) -> None:
    response = api.client.get("/orders")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    body = response.json
    assert body is not None
    assert body["error"] == "unauthorized"
    assert body["request_id"] == response.headers["X-Request-ID"]


def test_another_scheme_is_treated_as_no_credentials(api: Api) -> None:
    response = api.client.get("/orders", headers={"Authorization": "Basic YWxpY2U6cHc="})
    assert response.status_code == 401
    assert "error=" not in response.headers["WWW-Authenticate"]


@pytest.mark.parametrize(
    "header", ["Bearer", "Bearer ", "Bearer a b", "Bearer a,Bearer b", "Bearer\ttok", "Bearer tök"]
)
def test_malformed_bearer_header_is_400_invalid_request(api: Api, header: str) -> None:
    response = api.client.get("/orders", headers={"Authorization": header})
    assert response.status_code == 400
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="api", error="invalid_request"'


def test_bad_token_is_401_invalid_token_with_no_hint_why(api: Api) -> None:
    token = api.issue()
    for bad in (token[:-1], "gk_" + "0" * 16 + ".x.y", "not-a-token"):
        response = api.client.get("/orders", headers=api.bearer(bad))
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="api", error="invalid_token"'
        assert response.json is not None
        assert response.json["message"] == "The API key is not valid."


def test_revoked_and_expired_keys_are_refused_alike(api: Api) -> None:
    revoked = api.issue("revoked")
    expired = api.issue("expired", expires_in=-1)
    with api.app.app_context():
        key_id = revoked.split(".")[0].removeprefix("gk_")
        api.guard.keys.revoke(key_id)
    for token in (revoked, expired):
        response = api.client.get("/orders", headers=api.bearer(token))
        assert response.status_code == 401
        assert response.json is not None and response.json["error"] == "invalid_token"


def test_bearer_scheme_is_case_insensitive(api: Api) -> None:
    token = api.issue()
    response = api.client.get("/orders", headers={"Authorization": f"bEaReR {token}"})
    assert response.status_code == 200


def test_missing_scope_is_403_naming_the_scope(api: Api) -> None:
    token = api.issue(scopes=["orders:read"])
    response = api.client.post("/orders", headers=api.bearer(token), json={})
    assert response.status_code == 403
    assert response.headers["WWW-Authenticate"] == (
        'Bearer realm="api", error="insufficient_scope", scope="orders:write"'
    )


def test_unknown_routes_need_a_key_before_they_say_404(api: Api) -> None:
    assert api.client.get("/nope").status_code == 401
    assert api.client.get("/nope", headers=api.bearer(api.issue())).status_code == 404


def test_exempt_view_needs_no_key(api: Api) -> None:
    response = api.client.get("/health")
    assert response.status_code == 200
    assert "Cache-Control" not in response.headers


class DownStore(MemoryStore):
    def get(self, key_id: str) -> KeyRecord | None:
        raise StoreUnavailable("down")


def test_store_outage_answers_503_with_retry_after_never_200(api: Api) -> None:
    token = api.issue()
    api.app.extensions["guard"].keys.store = DownStore()
    response = api.client.get("/orders", headers=api.bearer(token))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json is not None and response.json["error"] == "unavailable"


def test_scopes_stack_and_order_of_decorators_below_route_does_not_matter() -> None:
    app = Flask("x")
    app.config.update(LOCAL_CONFIG)
    guard = Guard(app)

    @app.get("/both")
    @guard.require("a")
    @guard.require("b")
    def both() -> str:
        return "ok"

    with app.app_context():
        only_a, _ = guard.keys.create("a", scopes=["a"])
        a_and_b, _ = guard.keys.create("ab", scopes=["a", "b"])
    client = app.test_client()
    assert client.get("/both", headers=Api.bearer(only_a)).status_code == 403
    assert client.get("/both", headers=Api.bearer(a_and_b)).status_code == 200


def test_init_app_refuses_bad_settings_at_start_up() -> None:
    app = Flask("x")
    app.config.update(BASE_CONFIG, GUARD_RATE_LIMIT="lots")
    with pytest.raises(ConfigurationError, match="GUARD_RATE_LIMIT"):
        Guard(app)


def test_guard_can_be_created_before_the_app() -> None:
    guard = Guard()
    app = Flask("x")
    app.config.update(BASE_CONFIG)
    guard.init_app(app)
    assert "guard" in app.extensions


def test_plain_http_in_production_needs_an_explicit_acknowledgement() -> None:
    app = Flask("x")
    app.config.update(BASE_CONFIG, GUARD_FORCE_HTTPS=False)
    with pytest.raises(ConfigurationError, match="GUARD_ALLOW_PLAIN_HTTP"):
        Guard(app)
    app.testing = True  # TESTING changes nothing: a test sees what production does
    with pytest.raises(ConfigurationError, match="GUARD_ALLOW_PLAIN_HTTP"):
        Guard(app)
    app.debug = True  # the development server on loopback may serve plain HTTP
    Guard(app)
    production = Flask("y")
    production.config.update(BASE_CONFIG, GUARD_FORCE_HTTPS=False, GUARD_ALLOW_PLAIN_HTTP=True)
    Guard(production)


def test_a_streamed_body_sees_its_own_key_and_request_id(api: Api) -> None:
    from flask import Response, stream_with_context

    @api.app.get("/export")
    @api.guard.require("orders:read")
    def export() -> Response:
        def rows() -> object:
            # Runs after the view returned, while the server reads the body.
            key = api.guard.current_key
            yield f"{key.name if key else None},{api.guard.request_id}"

        return Response(stream_with_context(rows()))

    response = api.client.get("/export", headers=api.bearer(api.issue("alice")))
    assert response.status_code == 200
    assert response.text == f"alice,{response.headers['X-Request-ID']}"


def test_a_request_made_inside_a_view_leaves_the_outer_request_its_own_key(api: Api) -> None:
    other = Api()  # a second guarded app, called in-process from a view of the first
    bob = other.issue("bob")

    @api.app.get("/relay")
    @api.guard.require("orders:read")
    def relay() -> dict[str, object]:
        inner = other.client.get("/orders", headers=other.bearer(bob))
        key = api.guard.current_key
        return {"inner": inner.json["key"], "outer": key.name if key else None}

    response = api.client.get("/relay", headers=api.bearer(api.issue("alice")))
    assert response.json == {"inner": "bob", "outer": "alice"}
