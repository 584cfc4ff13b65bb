"""@guard.exempt, @guard.require, @guard.accepts and @guard.headers, on views and
blueprints, in whatever order an app stacks its decorators."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest
from flask import Blueprint, Flask

from guard import Guard
from tests.conftest import LOCAL_CONFIG, Api


def unwrapped(view: Callable[..., Any]) -> Callable[..., Any]:
    """A decorator written without functools.wraps, as many are."""

    def inner(*args: Any, **kwargs: Any) -> Any:
        return view(*args, **kwargs)

    inner.__name__ = view.__name__
    return inner


def wrapped(view: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(view)
    def inner(*args: Any, **kwargs: Any) -> Any:
        return view(*args, **kwargs)

    return inner


def make_app() -> tuple[Flask, Guard]:
    app = Flask("app")
    app.config.update(LOCAL_CONFIG)
    return app, Guard(app)


def token_for(app: Flask, guard: Guard, *scopes: str) -> dict[str, str]:
    with app.app_context():
        token, _ = guard.keys.create("k", scopes=scopes)
    return Api.bearer(token)


@pytest.mark.parametrize("decorator", [unwrapped, wrapped])
def test_a_scope_is_enforced_whatever_decorator_sits_above_require(
    decorator: Callable[..., Any],
) -> None:
    # Review finding: a decorator without functools.wraps above @guard.require hid the
    # policy, and a key without the scope got 200.
    app, guard = make_app()

    @app.get("/admin")
    @decorator
    @guard.require("admin")
    def admin() -> str:
        return "secret"

    assert app.test_client().get("/admin", headers=token_for(app, guard, "read")).status_code == 403
    assert (
        app.test_client().get("/admin", headers=token_for(app, guard, "admin")).status_code == 200
    )
    assert app.test_client().get("/admin").status_code == 401


def test_require_wraps_the_view_so_wrapping_it_later_cannot_skip_the_check() -> None:
    app, guard = make_app()

    @guard.require("admin")
    def admin() -> str:
        return "secret"

    app.add_url_rule("/admin", "admin", unwrapped(admin))
    response = app.test_client().get("/admin", headers=token_for(app, guard))
    assert response.status_code == 403
    assert 'error="insufficient_scope", scope="admin"' in response.headers["WWW-Authenticate"]


@pytest.mark.parametrize("decorator", [unwrapped, wrapped])
def test_accepts_is_enforced_whatever_decorator_sits_above_it(
    decorator: Callable[..., Any],
) -> None:
    app, guard = make_app()

    @app.post("/csv")
    @decorator
    @guard.accepts("text/csv")
    def csv() -> str:
        return "ok"

    client, headers = app.test_client(), token_for(app, guard)
    assert (
        client.post("/csv", headers=headers, data="<x/>", content_type="text/xml").status_code
        == 415
    )
    # Review finding: under a decorator without functools.wraps, the CSV was refused too.
    assert (
        client.post("/csv", headers=headers, data="a,b", content_type="text/csv").status_code == 200
    )


def test_exempt_marks_one_registration_not_the_function_everywhere() -> None:
    # Review finding: exempt set an attribute on the function, so the same function
    # registered at a second URL was exempt there too.
    app, guard = make_app()

    def status() -> str:
        return "ok"

    app.add_url_rule("/public", "public", guard.exempt(status))
    app.add_url_rule("/private", "private", status)
    client = app.test_client()
    assert client.get("/public").status_code == 200
    assert client.get("/private").status_code == 401


def test_decorators_stack_in_any_order_and_merge() -> None:
    app, guard = make_app()

    @app.post("/upload")
    @guard.require("a")
    @wrapped
    @guard.require("b")
    @guard.accepts("text/csv")
    def upload() -> str:
        return "ok"

    client = app.test_client()
    csv = {"data": "a,b", "content_type": "text/csv"}
    assert client.post("/upload", headers=token_for(app, guard, "a"), **csv).status_code == 403
    assert client.post("/upload", headers=token_for(app, guard, "b"), **csv).status_code == 403
    assert client.post("/upload", headers=token_for(app, guard, "a", "b"), **csv).status_code == 200


def test_an_async_view_keeps_working_under_the_decorators() -> None:
    pytest.importorskip("asgiref")
    app, guard = make_app()

    @app.get("/async")
    @guard.require("read")
    async def view() -> str:
        return "ok"

    assert app.test_client().get("/async", headers=token_for(app, guard, "read")).status_code == 200
    assert app.test_client().get("/async", headers=token_for(app, guard)).status_code == 403


def test_a_whole_blueprint_can_be_exempt_or_require_scopes() -> None:
    app = Flask("app")
    app.config.update(LOCAL_CONFIG)
    guard = Guard()
    public = Blueprint("public", __name__)
    admin = Blueprint("admin", __name__)
    nested = Blueprint("nested", __name__)
    guard.exempt(public)
    guard.require("admin")(admin)

    @public.get("/status")
    def status() -> str:
        return "ok"

    @public.get("/internal")
    @guard.require("ops")  # a view that requires a scope is never exempt
    def internal() -> str:
        return "internal"

    @admin.get("/users")
    @unwrapped
    def users() -> str:
        return "users"

    @nested.get("/deep")
    def deep() -> str:
        return "deep"

    admin.register_blueprint(nested, url_prefix="/nested")
    app.register_blueprint(public)
    app.register_blueprint(admin, url_prefix="/admin")
    guard.init_app(app)
    client = app.test_client()
    assert client.get("/status").status_code == 200
    assert client.get("/internal").status_code == 401
    assert client.get("/internal", headers=token_for(app, guard, "x")).status_code == 403
    assert client.get("/internal", headers=token_for(app, guard, "ops")).status_code == 200
    assert client.get("/admin/users").status_code == 401
    assert client.get("/admin/users", headers=token_for(app, guard, "x")).status_code == 403
    assert client.get("/admin/users", headers=token_for(app, guard, "admin")).status_code == 200
    assert client.get("/admin/nested/deep", headers=token_for(app, guard, "x")).status_code == 403


@pytest.mark.parametrize(
    "misuse",
    [
        lambda guard: guard.exempt(42),
        lambda guard: guard.exempt(Flask),
        lambda guard: guard.require(lambda: "view"),
        lambda guard: guard.require(),
        lambda guard: guard.accepts()(lambda: "view"),
        lambda guard: guard.accepts("text/csv")(Blueprint("bp", __name__)),
        lambda guard: guard.require("a")(guard.exempt(lambda: "view")),
        lambda guard: guard.exempt(guard.require("a")(Blueprint("bp2", __name__))),
    ],
)
def test_what_the_decorators_cannot_handle_is_a_type_error_at_decoration(
    misuse: Callable[[Guard], object],
) -> None:
    with pytest.raises(TypeError):
        misuse(Guard())


def test_a_protected_view_on_an_app_without_the_guard_is_never_served() -> None:
    guard = Guard()
    app = Flask("bare")

    @app.get("/admin")
    @guard.require("admin")
    def admin() -> str:
        return "secret"

    assert app.test_client().get("/admin").status_code == 500


def test_headers_gives_one_view_its_own_content_security_policy() -> None:
    app, guard = make_app()
    page_csp = "default-src 'self'"

    @app.get("/docs")
    @guard.exempt
    @guard.headers(csp=page_csp)
    def docs() -> str:
        return "<html></html>"

    @app.get("/api")
    @guard.exempt
    def api() -> dict[str, bool]:
        return {"ok": True}

    client = app.test_client()
    page = client.get("/docs")
    assert page.headers["Content-Security-Policy"] == page_csp
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert client.get("/api").headers["Content-Security-Policy"] == (
        "default-src 'none'; frame-ancestors 'none'"
    )
