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


def blueprints(outer_policy: Any, inner_policy: Any) -> tuple[Flask, Guard]:
    """``/outer/inner/deep`` in a blueprint nested in another, each given a policy."""
    app = Flask("app")
    app.config.update(LOCAL_CONFIG)
    guard = Guard()
    outer = Blueprint("outer", __name__)
    inner = Blueprint("inner", __name__)
    outer_policy(guard)(outer)
    inner_policy(guard)(inner)

    @inner.get("/deep")
    def deep() -> str:
        return "deep"

    @outer.get("/shallow")
    def shallow() -> str:
        return "shallow"

    outer.register_blueprint(inner, url_prefix="/inner")
    app.register_blueprint(outer, url_prefix="/outer")
    guard.init_app(app)
    return app, guard


def test_a_blueprint_nested_in_an_exempt_one_is_exempt() -> None:
    app, _ = blueprints(lambda g: g.exempt, lambda g: g.headers(csp="default-src 'self'"))
    assert app.test_client().get("/outer/inner/deep").status_code == 200


def test_an_exempt_blueprint_nested_in_a_protected_one_is_exempt_alone() -> None:
    app, _ = blueprints(lambda g: g.headers(csp="default-src 'self'"), lambda g: g.exempt)
    client = app.test_client()
    assert client.get("/outer/inner/deep").status_code == 200
    assert client.get("/outer/shallow").status_code == 401


def test_the_nearest_blueprints_content_security_policy_wins() -> None:
    app, guard = blueprints(
        lambda g: g.headers(csp="default-src 'self'"),
        lambda g: g.headers(csp="img-src 'self'"),
    )
    client = app.test_client()
    with app.app_context():
        token, _ = guard.keys.create("k", scopes=[])
    deep = client.get("/outer/inner/deep", headers=Api.bearer(token))
    shallow = client.get("/outer/shallow", headers=Api.bearer(token))
    assert deep.headers["Content-Security-Policy"] == "img-src 'self'"
    assert shallow.headers["Content-Security-Policy"] == "default-src 'self'"


def test_an_unrelated_guard_policy_attribute_on_a_view_leaves_it_protected() -> None:
    api = Api()

    def legacy() -> str:
        return "legacy"

    legacy.guard_policy = "public"  # type: ignore[attr-defined]  # another library's marker
    api.app.add_url_rule("/legacy", "legacy", legacy)
    assert api.client.get("/legacy").status_code == 401
    assert api.client.get("/legacy", headers=api.bearer(api.issue())).status_code == 200


def test_exempt_and_require_together_are_refused_with_the_reason() -> None:
    guard = Guard()

    def view() -> str:
        return "view"

    with pytest.raises(TypeError) as raised:
        guard.exempt(guard.require("admin")(view))
    assert str(raised.value) == "a view or blueprint cannot be both exempt and require scopes"


@pytest.mark.parametrize("target", [42, Flask])
def test_a_decorator_given_neither_a_view_nor_a_blueprint_names_it(target: Any) -> None:
    with pytest.raises(TypeError) as raised:
        Guard().exempt(target)
    assert str(raised.value) == (
        f"the guard's decorators take a view function or a Blueprint, not {target!r}"
    )


def test_accepts_under_a_decorator_that_hides_it_is_enforced() -> None:
    api = Api(GUARD_CONTENT_TYPES="")  # no API-wide list: only the view's own list applies

    def plain(view: Any) -> Any:
        """A decorator written without functools.wraps: the view's policy is not on it."""

        def inner(*args: Any, **kwargs: Any) -> Any:
            return view(*args, **kwargs)

        return inner

    @api.app.post("/imports")
    @plain
    @api.guard.accepts("text/csv")
    def imports() -> str:
        return "ok"

    token = api.issue()
    json_body = api.client.post("/imports", headers=api.bearer(token), json={"a": 1})
    assert json_body.status_code == 415
    csv = api.client.post(
        "/imports", headers=api.bearer(token), data="a,b", content_type="text/csv"
    )
    assert csv.status_code == 200


def bearer(app: Flask, guard: Guard, *scopes: str) -> dict[str, str]:
    with app.app_context():
        token, _ = guard.keys.create("k", scopes=scopes)
    return Api.bearer(token)


def test_a_view_swapped_in_after_the_first_request_is_decided_by_its_own_policy() -> None:
    # Review round 3, item 12: the policy cached for an endpoint outlived its view, so a
    # protected view put in place of an exempt one after the first request was served
    # to anyone.
    app = Flask("app")
    app.config.update(LOCAL_CONFIG)
    guard = Guard(app)

    @app.get("/report")
    @guard.exempt
    def report() -> str:
        return "public summary"

    client = app.test_client()
    assert client.get("/report").status_code == 200

    def full_report() -> str:
        return "every order"

    app.view_functions["report"] = full_report  # no decorator: protected
    assert client.get("/report").status_code == 401
    app.view_functions["report"] = guard.require("reports:read")(full_report)
    refused = client.get("/report", headers=bearer(app, guard, "orders:read"))
    assert refused.status_code == 403
    assert 'scope="reports:read"' in refused.headers["WWW-Authenticate"]
    allowed = client.get("/report", headers=bearer(app, guard, "reports:read"))
    assert allowed.get_data(as_text=True) == "every order"
    app.view_functions["report"] = report
    assert client.get("/report").status_code == 200


def test_an_app_endpoint_named_like_an_exempt_blueprints_views_stays_protected() -> None:
    # Review round 3, item 17: Flask names an app's own endpoint "public.x" as it names
    # the public blueprint's views, and the endpoint inherited the blueprint's exemption.
    app = Flask("app", static_folder=None)
    app.config.update(LOCAL_CONFIG)
    guard = Guard(app)
    public = Blueprint("public", __name__, static_folder="static", static_url_path="/files")

    @public.get("/status")
    def status() -> str:
        return "up"

    guard.exempt(public)
    guard.headers(csp="default-src 'self'")(public)
    app.register_blueprint(public, url_prefix="/public")

    def orders() -> str:
        return "every order"

    app.add_url_rule("/orders", "public.orders", orders)
    client = app.test_client()
    assert client.get("/public/status").status_code == 200
    assert client.get("/public/files/missing.css").status_code == 404  # its static files: open
    refused = client.get("/orders")
    assert refused.status_code == 401
    assert refused.headers["Content-Security-Policy"].startswith("default-src 'none'")
    allowed = client.get("/orders", headers=bearer(app, guard))
    assert allowed.get_data(as_text=True) == "every order"
    assert allowed.headers["Content-Security-Policy"].startswith("default-src 'none'")
