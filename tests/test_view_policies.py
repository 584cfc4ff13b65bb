"""What the guard's decorators demand of a request, as the client and the audit trail
see it: the exact 403 challenge, its reason, and misuse refused with a reason."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from flask import Blueprint, Flask

from guard import Guard
from tests.conftest import LOCAL_CONFIG, Api


def audited(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "guard.audit"]


def test_a_missing_scope_names_every_required_scope_sorted_in_one_challenge(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="guard.audit")
    api = Api(GUARD_REALM="shop")

    @api.app.get("/reports")
    @api.guard.require("reports:read", "orders:read")
    def reports() -> str:
        return "reports"

    response = api.client.get("/reports", headers=api.bearer(api.issue(scopes=["orders:read"])))
    assert response.status_code == 403
    assert (
        "WWW-Authenticate",
        'Bearer realm="shop", error="insufficient_scope", scope="orders:read reports:read"',
    ) in response.headers.to_wsgi_list()
    [entry] = audited(caplog)
    assert (entry["outcome"], entry["reason"]) == ("denied", "insufficient_scope")


def test_a_key_with_every_required_scope_and_more_is_let_through() -> None:
    api = Api()

    @api.app.get("/reports")
    @api.guard.require("reports:read", "orders:read")
    def reports() -> str:
        return "reports"

    scopes = ["orders:read", "reports:read", "orders:write"]
    response = api.client.get("/reports", headers=api.bearer(api.issue(scopes=scopes)))
    assert response.status_code == 200


def test_a_blueprints_scope_is_challenged_like_a_views(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="guard.audit")
    app = Flask("app")
    app.config.update(LOCAL_CONFIG)
    guard = Guard()
    admin = Blueprint("admin", __name__)
    guard.require("admin")(admin)

    @admin.get("/users")
    def users() -> str:
        return "users"

    app.register_blueprint(admin, url_prefix="/admin")
    guard.init_app(app)
    with app.app_context():
        token, _ = guard.keys.create("k", scopes=["orders:read"])
    response = app.test_client().get("/admin/users", headers=Api.bearer(token))
    assert response.status_code == 403
    assert (
        "WWW-Authenticate",
        'Bearer realm="api", error="insufficient_scope", scope="admin"',
    ) in response.headers.to_wsgi_list()
    [entry] = audited(caplog)
    assert entry["reason"] == "insufficient_scope"


def test_a_protected_view_called_on_an_app_without_the_guard_says_why() -> None:
    guard = Guard()
    app = Flask("bare")
    app.testing = True  # the error reaches the test instead of a 500 page

    @app.get("/admin")
    @guard.require("admin")
    def admin() -> str:
        return "secret"

    with pytest.raises(RuntimeError) as raised:
        app.test_client().get("/admin")
    assert str(raised.value) == "a view protected by the guard was called on an app without it"


def test_accepts_on_a_blueprint_is_refused_with_the_reason() -> None:
    with pytest.raises(TypeError) as raised:
        Guard().accepts("text/csv")(Blueprint("uploads", __name__))
    assert str(raised.value) == "@guard.accepts applies to views, not to a whole blueprint"


def test_a_wider_accepts_stacked_on_a_narrower_one_lets_the_wider_list_in() -> None:
    api = Api()

    @api.app.post("/imports")
    @api.guard.accepts("text/csv", "application/json")
    @api.guard.accepts("text/csv")
    def imports() -> str:
        return "ok"

    token = api.issue()
    response = api.client.post("/imports", headers=api.bearer(token), json={"a": 1})
    assert response.status_code == 200
    csv = api.client.post(
        "/imports", headers=api.bearer(token), data="a,b", content_type="text/csv"
    )
    assert csv.status_code == 200
