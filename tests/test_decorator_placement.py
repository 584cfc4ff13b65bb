"""The guard's decorators hold wherever a user writes them: above the route decorator,
under a decorator written without ``functools.wraps``, on a MethodView's method, in an
app factory. One place decides every request, before its view runs, and a requirement it
could not see is a refusal, never a pass-through."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar

import pytest
from flask import Blueprint, Flask
from flask.views import MethodView

from guard import Guard
from tests.conftest import LOCAL_CONFIG, Api


def logged(view: Callable[..., Any]) -> Callable[..., Any]:
    """A decorator as users write them, without functools.wraps."""

    def inner(*args: Any, **kwargs: Any) -> Any:
        return view(*args, **kwargs)

    return inner


def make_app() -> tuple[Flask, Guard]:
    app, guard = unstarted_app()
    guard.init_app(app)
    return app, guard


def unstarted_app() -> tuple[Flask, Guard]:
    """An app and a guard not installed on it yet, as an app factory holds them."""
    app = Flask("app")
    app.config.update(LOCAL_CONFIG)
    return app, Guard()


def bearer(app: Flask, guard: Guard, *scopes: str) -> dict[str, str]:
    with app.app_context():
        token, _ = guard.keys.create("k", scopes=scopes)
    return Api.bearer(token)


def test_require_written_above_the_route_decorator_is_enforced() -> None:
    app, guard = make_app()

    @guard.require("admin")
    @app.get("/admin")
    def admin() -> str:
        return "secret"

    client = app.test_client()
    refused = client.get("/admin", headers=bearer(app, guard, "read"))
    assert refused.status_code == 403
    assert 'error="insufficient_scope", scope="admin"' in refused.headers["WWW-Authenticate"]
    assert client.get("/admin", headers=bearer(app, guard, "admin")).status_code == 200
    assert client.get("/admin").status_code == 401


def test_one_function_registered_twice_requires_at_each_url_only_what_was_asked_there() -> None:
    app, guard = make_app()

    def items() -> str:
        return "items"

    app.add_url_rule("/orders", "orders", guard.require("orders:read")(items))
    app.add_url_rule("/invoices", "invoices", guard.require("invoices:read")(items))
    client, orders = app.test_client(), bearer(app, guard, "orders:read")
    assert client.get("/orders", headers=orders).status_code == 200
    assert client.get("/invoices", headers=orders).status_code == 403


# A module of views, as an app factory project writes it: the guard and the blueprint at
# import, the app made later.
guard = Guard()
reports = Blueprint("reports", __name__)


@guard.require("reports:read")
@reports.get("/reports")
def list_reports() -> str:
    return "reports"


@reports.post("/reports", endpoint="upload_report")  # `logged` names every view "inner"
@logged
@guard.accepts("text/csv")
def upload_report() -> str:
    return "stored"


@reports.get("/reports/health", endpoint="reports_health")
@logged
@guard.exempt
def reports_health() -> str:
    return "ok"


@pytest.mark.parametrize("guard_first", [True, False])
def test_an_app_factory_enforces_a_blueprints_views_however_their_decorators_are_ordered(
    guard_first: bool,
) -> None:
    def create_app() -> Flask:
        app = Flask("factory")
        app.config.update(LOCAL_CONFIG)
        if guard_first:
            guard.init_app(app)
        app.register_blueprint(reports)
        if not guard_first:
            guard.init_app(app)
        return app

    app = create_app()
    client = app.test_client()
    reader, other = bearer(app, guard, "reports:read"), bearer(app, guard, "orders:read")
    assert client.get("/reports", headers=other).status_code == 403
    assert client.get("/reports", headers=reader).status_code == 200
    csv = {"data": "a,b", "content_type": "text/csv"}
    assert client.post("/reports", headers=other, **csv).status_code == 200
    assert client.post("/reports", headers=other, json={"a": 1}).status_code == 415
    # Exempt under a decorator that hides it: never taken for exempt.
    assert client.get("/reports/health").status_code == 401
    assert client.get("/reports/health", headers=other).status_code == 200


def test_require_under_decorators_without_wraps_is_enforced_before_the_view_runs() -> None:
    app, guard = make_app()
    calls: list[str] = []

    @app.get("/admin")
    @logged
    @logged
    @guard.require("admin")
    def admin() -> str:
        calls.append("view")
        return "secret"

    client = app.test_client()
    assert client.get("/admin", headers=bearer(app, guard, "read")).status_code == 403
    assert calls == []
    assert client.get("/admin", headers=bearer(app, guard, "admin")).status_code == 200
    assert calls == ["view"]


def test_exempt_under_a_decorator_without_wraps_is_never_taken_for_exempt() -> None:
    app, guard = make_app()

    @app.get("/health")
    @logged
    @guard.exempt
    def health() -> str:
        return "ok"

    client = app.test_client()
    assert client.get("/health").status_code == 401
    assert client.get("/health", headers=bearer(app, guard)).status_code == 200


def test_a_requirement_the_guard_cannot_see_before_the_view_runs_is_refused_with_503(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, guard = make_app()
    views: dict[str, Callable[..., Any]] = {}

    def by_name(view: Callable[..., Any]) -> Callable[..., Any]:
        """A decorator that keeps the view in a table, out of the guard's sight."""
        views[view.__name__] = view

        def inner() -> Any:
            return views["admin"]()

        return inner

    @app.get("/admin")
    @by_name
    @guard.require("admin")
    def admin() -> str:
        return "secret"

    caplog.set_level(logging.INFO)
    response = app.test_client().get("/admin", headers=bearer(app, guard, "read"))
    assert response.status_code == 503
    assert b"secret" not in response.data
    [entry] = [r for r in caplog.records if r.name == "guard.audit"]
    assert entry.reason == "policy_not_seen"  # type: ignore[attr-defined]
    [error] = [r for r in caplog.records if r.name == "guard.errors"]
    assert "functools.wraps" in error.getMessage()


def test_a_method_views_methods_each_require_their_own_scopes() -> None:
    app, guard = make_app()

    class Orders(MethodView):
        @guard.require("orders:read")
        def get(self) -> str:
            return "orders"

        @logged
        @guard.require("orders:write")
        def post(self) -> str:
            return "created"

    app.add_url_rule("/orders", view_func=Orders.as_view("orders"))
    client = app.test_client()
    reader = bearer(app, guard, "orders:read")
    assert client.get("/orders", headers=reader).status_code == 200
    assert client.head("/orders", headers=reader).status_code == 200
    refused = client.post("/orders", headers=reader)
    assert refused.status_code == 403
    assert 'scope="orders:write"' in refused.headers["WWW-Authenticate"]
    assert client.post("/orders", headers=bearer(app, guard, "orders:write")).status_code == 200


def test_a_blueprints_scope_and_its_views_are_required_together_in_one_challenge() -> None:
    app, guard = unstarted_app()
    admin = Blueprint("admin", __name__)

    @admin.delete("/users/<int:user>")
    @guard.require("users:delete")
    def delete_user(user: int) -> str:
        return "deleted"

    app.register_blueprint(admin, url_prefix="/admin")
    guard.require("admin")(admin)  # marked after registration: still every view's
    guard.init_app(app)
    client = app.test_client()
    refused = client.delete("/admin/users/1", headers=bearer(app, guard, "admin"))
    assert refused.status_code == 403
    assert 'scope="admin users:delete"' in refused.headers["WWW-Authenticate"]
    both = bearer(app, guard, "admin", "users:delete")
    assert client.delete("/admin/users/1", headers=both).status_code == 200


def test_an_exempt_view_that_accepts_a_content_type_refuses_the_others() -> None:
    app, guard = make_app()

    @app.post("/hooks")
    @guard.exempt
    @guard.accepts("text/csv")
    def hooks() -> str:
        return "ok"

    client = app.test_client()
    assert client.post("/hooks", data="a,b", content_type="text/csv").status_code == 200
    assert client.post("/hooks", json={"a": 1}).status_code == 415


def test_a_view_that_calls_a_protected_view_requires_what_that_view_requires() -> None:
    app, guard = make_app()

    @guard.require("admin")
    def audit_log() -> str:
        return "log"

    @app.get("/log")
    def log() -> str:
        return audit_log()

    client = app.test_client()
    assert client.get("/log", headers=bearer(app, guard, "read")).status_code == 403
    assert client.get("/log", headers=bearer(app, guard, "admin")).status_code == 200


def test_a_blueprints_requirement_holds_before_its_own_earlier_hooks() -> None:
    # Review round 3, item 11: a blueprint hook registered before guard.require(...)(bp)
    # ran before the scope check, and its answer reached a key without the scope.
    app, guard = make_app()
    admin = Blueprint("admin", __name__)
    reports = Blueprint("reports", __name__)
    ran: list[str] = []

    @admin.before_request
    def admin_answers() -> str | None:
        ran.append("admin")
        return None

    @reports.before_request
    def reports_answers() -> str:
        ran.append("reports")
        return "answered by the blueprint's hook"

    @reports.get("/daily")
    def daily() -> str:
        return "daily"

    guard.require("admin")(admin)  # after the hooks, as in the finding
    admin.register_blueprint(reports, url_prefix="/reports")
    app.register_blueprint(admin, url_prefix="/admin")
    client = app.test_client()
    refused = client.get("/admin/reports/daily", headers=bearer(app, guard, "reports"))
    assert refused.status_code == 403
    assert 'scope="admin"' in refused.headers["WWW-Authenticate"]
    assert client.get("/admin/reports/daily").status_code == 401
    assert ran == []
    allowed = client.get("/admin/reports/daily", headers=bearer(app, guard, "admin"))
    assert allowed.get_data(as_text=True) == "answered by the blueprint's hook"
    assert ran == ["admin", "reports"]


def options_app() -> tuple[Flask, Guard]:
    """``@guard.require("admin")`` on a view, on a blueprint, and on a MethodView's
    method, with CORS on for one origin."""
    app = Flask("app")
    app.config.update(LOCAL_CONFIG, GUARD_CORS_ORIGINS="https://app.example")
    guard = Guard(app)

    @app.get("/view")
    @guard.require("admin")
    def view() -> str:
        return "view"

    admin = Blueprint("admin", __name__)

    @admin.get("/blueprint")
    def in_blueprint() -> str:
        return "blueprint"

    guard.require("admin")(admin)
    app.register_blueprint(admin)

    class Users(MethodView):
        def get(self) -> str:
            return "users"

        @guard.require("admin")
        def delete(self) -> str:
            return "deleted"

    app.add_url_rule("/method-view", view_func=Users.as_view("users"))
    return app, guard


@pytest.mark.parametrize("path", ["/view", "/blueprint", "/method-view"])
def test_options_asks_what_every_method_of_the_view_asks(path: str) -> None:
    # Review round 3, item 16: OPTIONS on a view requiring a scope answered 200 and its
    # Allow header to a key without the scope, where the blueprint form answered 403.
    app, guard = options_app()
    client = app.test_client()
    refused = client.options(path, headers=bearer(app, guard, "users"))
    assert refused.status_code == 403
    assert 'scope="admin"' in refused.headers["WWW-Authenticate"]
    assert "Allow" not in refused.headers
    assert client.options(path).status_code == 401
    allowed = client.options(path, headers=bearer(app, guard, "admin"))
    assert allowed.status_code == 200
    assert "GET" in allowed.headers["Allow"]
    # A browser's preflight from the allowed origin is answered before authentication.
    preflight = client.options(
        path,
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "GET"},
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example"


def test_a_method_views_methods_may_be_exempt_or_accept_their_own_content_types() -> None:
    # Review round 3, item 17: @guard.exempt and @guard.accepts on a MethodView's
    # method were silently ignored.
    app, guard = make_app()

    class Hooks(MethodView):
        @guard.exempt
        def get(self) -> str:
            return "status"

        @guard.accepts("text/csv")
        def post(self) -> str:
            return "imported"

        @logged
        @guard.exempt
        def delete(self) -> str:  # the exemption is hidden: protected
            return "deleted"

    class Locked(MethodView):
        decorators: ClassVar[list[Callable[..., Any]]] = [guard.require("admin")]

        @guard.exempt
        def get(self) -> str:  # the whole view requires a scope: never exempt
            return "locked"

    app.add_url_rule("/hooks", view_func=Hooks.as_view("hooks"))
    app.add_url_rule("/locked", view_func=Locked.as_view("locked"))
    client = app.test_client()
    assert client.get("/hooks").get_data(as_text=True) == "status"
    assert client.head("/hooks").status_code == 200
    assert client.post("/hooks", data="a,b", content_type="text/csv").status_code == 401
    assert client.delete("/hooks").status_code == 401
    assert client.options("/hooks").status_code == 401  # not every method is exempt
    key = bearer(app, guard)
    csv = client.post("/hooks", data="a,b", content_type="text/csv", headers=key)
    assert csv.status_code == 200
    assert client.post("/hooks", json={"a": 1}, headers=key).status_code == 415
    assert client.delete("/hooks", headers=key).status_code == 200
    assert client.get("/locked").status_code == 401
    assert client.get("/locked", headers=key).status_code == 403
