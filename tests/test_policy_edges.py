"""The corners of how a view's policy is found, each as an app meets it: a MethodView's
``dispatch_request`` and its ``head``, a whole resource's OPTIONS, endpoints named like a
blueprint's that no blueprint registered, blueprints whose setup functions are not plain
closures, and what the operator is told when a requirement was not seen."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import pytest
from flask import Blueprint
from flask.views import MethodView

from tests.conftest import Api
from tests.test_decorator_placement import bearer, logged, make_app


def test_a_requirement_on_dispatch_request_holds_for_every_method() -> None:
    app, guard = make_app()

    class Audit(MethodView):
        @guard.require("admin")
        def dispatch_request(self, **kwargs: Any) -> Any:
            return super().dispatch_request(**kwargs)

        def get(self) -> str:
            return "log"

        def post(self) -> str:
            return "appended"

    app.add_url_rule("/audit", view_func=Audit.as_view("audit"))
    client = app.test_client()
    reader = bearer(app, guard, "read")
    assert client.get("/audit", headers=reader).status_code == 403
    assert client.post("/audit", headers=reader).status_code == 403
    admin = bearer(app, guard, "admin")
    assert client.get("/audit", headers=admin).get_data(as_text=True) == "log"


def test_accepts_on_dispatch_request_or_on_the_whole_view_holds_for_its_methods() -> None:
    app, guard = make_app()

    class Imports(MethodView):
        @guard.accepts("text/csv")
        def dispatch_request(self, **kwargs: Any) -> Any:
            return super().dispatch_request(**kwargs)

        def post(self) -> str:
            return "imported"

    class Exports(MethodView):
        def post(self) -> str:
            return "exported"

        @guard.require("admin")
        def delete(self) -> str:
            return "deleted"

    app.add_url_rule("/imports", view_func=Imports.as_view("imports"))
    app.add_url_rule("/exports", view_func=guard.accepts("text/csv")(Exports.as_view("exports")))
    client = app.test_client()
    key = bearer(app, guard)
    for path in ("/imports", "/exports"):
        assert client.post(path, json={"a": 1}, headers=key).status_code == 415
        csv = client.post(path, data="a,b", content_type="text/csv", headers=key)
        assert csv.status_code == 200


def test_a_method_views_own_head_is_decided_by_its_own_policy() -> None:
    app, guard = make_app()

    class Report(MethodView):
        @guard.require("reports:read")
        def get(self) -> str:
            return "the report"

        @guard.exempt
        def head(self) -> str:
            return ""

    class Upload(MethodView):
        def post(self) -> str:
            return "stored"

    app.add_url_rule("/report", view_func=Report.as_view("report"))
    app.add_url_rule("/upload", view_func=Upload.as_view("upload"))
    client = app.test_client()
    assert client.head("/report").status_code == 200
    assert client.get("/report").status_code == 401
    # No get and no head: HEAD is not a method of the view, whatever the guard says.
    assert client.head("/upload", headers=bearer(app, guard)).status_code == 405


def test_options_is_open_when_every_method_of_the_view_is_exempt() -> None:
    app, guard = make_app()

    class Status(MethodView):
        @guard.exempt
        def get(self) -> str:
            return "up"

        @guard.exempt
        def post(self) -> str:
            return "pinged"

    app.add_url_rule("/status", view_func=Status.as_view("status"))
    answer = app.test_client().options("/status")
    assert answer.status_code == 200
    assert "POST" in answer.headers["Allow"]


def test_an_endpoint_named_under_a_missing_blueprint_of_an_exempt_one_stays_protected() -> None:
    app, guard = make_app()
    public = Blueprint("public", __name__)

    @public.get("/status")
    def status() -> str:
        return "up"

    guard.exempt(public)
    app.register_blueprint(public, url_prefix="/public")
    # "public.sub" is no blueprint: the endpoint is the app's own.
    app.add_url_rule("/orders", "public.sub.orders", lambda: "every order")
    client = app.test_client()
    assert client.get("/public/status").status_code == 200
    assert client.get("/orders").status_code == 401
    assert client.get("/orders", headers=bearer(app, guard)).status_code == 200


def unfilled_cell_setup() -> Any:
    """A setup function whose closure holds a variable not assigned yet."""

    def setup(state: Any) -> Any:
        return later if state is None else None  # never read

    return setup
    later = None  # unreachable: makes ``later`` a cell that stays empty


def test_blueprints_recording_partials_and_unfinished_closures_keep_their_policy() -> None:
    # An extension may hand Blueprint.record any callable: a partial has no closure, and
    # a closure may hold a cell not filled yet.
    app, guard = make_app()
    public = Blueprint("public", __name__)
    public.record(functools.partial(lambda state, name: None, name="public"))
    public.record(unfilled_cell_setup())

    @public.get("/status")
    def status() -> str:
        return "up"

    guard.exempt(public)
    app.register_blueprint(public)
    assert app.test_client().get("/status").get_data(as_text=True) == "up"


class Report:
    """A view that is an object, as some frameworks register them (no ``__qualname__``)."""

    def __call__(self) -> str:
        return "the report"

    def __repr__(self) -> str:
        return "<the report view>"


@pytest.mark.parametrize("view", ["function", "object"])
def test_the_log_of_an_unseen_requirement_names_the_view_its_needs_and_the_request(
    caplog: pytest.LogCaptureFixture, view: str
) -> None:
    app, guard = make_app()
    report = guard.require("admin", "audit")(
        Report() if view == "object" else (lambda: "the report")
    )
    checked = guard.require("admin")(guard.accepts("text/csv", "text/plain")(lambda: "imported"))
    # Kept in a table, out of the guard's sight: the exempt views below are all it sees.
    views: dict[str, Callable[[], str]] = {"report": report, "checked": checked}

    @app.get("/summary")
    @guard.exempt
    def summary() -> str:
        return views["report"]()

    @app.post("/mixed")
    @guard.exempt
    def mixed() -> str:
        return views["checked"]()

    caplog.set_level(logging.INFO)
    client = app.test_client()
    refused = client.get("/summary")
    assert refused.status_code == 503
    assert int(refused.headers["Retry-After"]) > 0
    [error] = [r for r in caplog.records if r.name == "guard.errors"]
    name = "<the report view>" if view == "object" else "test_the_log_of_an_unseen_requirement"
    message = error.getMessage()
    assert message.startswith(f"guard: {name}")
    assert message.endswith(
        " requires scopes admin audit, which the guard did not see before the view ran "
        "(a decorator above the guard's hides them, or a view requiring less called it): "
        f"request {refused.headers['X-Request-ID']} refused with 503. Write the guard's "
        "decorators right under the route decorator, or use functools.wraps in the "
        "decorators above them"
    )
    caplog.clear()
    assert client.post("/mixed", data="a,b", content_type="text/csv").status_code == 503
    [error] = [r for r in caplog.records if r.name == "guard.errors"]
    assert (
        " requires scopes admin and content types text/csv text/plain, which " in error.getMessage()
    )


def test_every_require_stacked_above_the_route_decorator_holds() -> None:
    # Found by mutation testing: of two @guard.require above the route, only the
    # innermost was enforced.
    app, guard = make_app()

    @guard.require("reports:read")
    @guard.require("audit")
    @app.get("/report")
    def report() -> str:
        return "the report"

    @guard.require("imports")
    @app.post("/import")
    @guard.accepts("text/csv")
    def import_rows() -> str:
        return "imported"

    client = app.test_client()
    for scopes in (["audit"], ["reports:read"]):
        refused = client.get("/report", headers=bearer(app, guard, *scopes))
        assert refused.status_code == 403
        assert 'scope="audit reports:read"' in refused.headers["WWW-Authenticate"]
    both = bearer(app, guard, "audit", "reports:read")
    assert client.get("/report", headers=both).status_code == 200
    csv = {"data": "a,b", "content_type": "text/csv"}
    assert client.post("/import", **csv, headers=bearer(app, guard)).status_code == 403
    assert client.post("/import", **csv, headers=bearer(app, guard, "imports")).status_code == 200


def test_require_given_the_registered_function_twice_holds_both_times() -> None:
    app, guard = make_app()

    @app.get("/report")
    def report() -> str:
        return "the report"

    guard.require("reports:read")(report)
    guard.require("audit")(report)
    client = app.test_client()
    assert client.get("/report", headers=bearer(app, guard, "audit")).status_code == 403
    both = bearer(app, guard, "audit", "reports:read")
    assert client.get("/report", headers=both).status_code == 200


def test_what_require_asked_above_one_route_is_not_asked_of_another_wrapper() -> None:
    app, guard = make_app()

    def report() -> str:
        return "the report"

    app.add_url_rule("/report", "report", report)
    guard.require("admin")(report)  # above the route: /report requires admin
    app.add_url_rule("/public", "public", guard.exempt(report))
    client = app.test_client()
    assert client.get("/report").status_code == 401
    assert client.get("/public").get_data(as_text=True) == "the report"


class Reports:
    def __init__(self, guard: Any) -> None:
        self.guard = guard

    def latest(self) -> str:
        return "the latest report"


def test_require_takes_a_bound_method() -> None:
    app, guard = make_app()
    app.add_url_rule("/latest", "latest", guard.require("reports:read")(Reports(guard).latest))
    client = app.test_client()
    assert client.get("/latest", headers=bearer(app, guard)).status_code == 403
    allowed = client.get("/latest", headers=bearer(app, guard, "reports:read"))
    assert allowed.get_data(as_text=True) == "the latest report"


def test_the_outermost_accepts_wins_through_a_decorator_without_wraps() -> None:
    app, guard = make_app()

    @app.post("/import")
    @guard.accepts("text/csv")
    @logged
    @guard.accepts("application/json")
    def import_rows() -> str:
        return "imported"

    client = app.test_client()
    key = bearer(app, guard)
    assert client.post("/import", json={"a": 1}, headers=key).status_code == 415
    csv = client.post("/import", data="a,b", content_type="text/csv", headers=key)
    assert csv.status_code == 200


def test_a_requirement_buried_deeper_than_the_guard_looks_is_refused_never_served() -> None:
    app, guard = make_app()
    view: Callable[..., Any] = guard.require("admin")(lambda: "secret")
    for _ in range(63):
        view = logged(view)  # 63 wrappers without wraps: the 64th object is the guard's
    app.add_url_rule("/near", "near", view)
    app.add_url_rule("/deep", "deep", logged(view))  # the guard's is the 65th: not looked at
    client = app.test_client()
    assert client.get("/near", headers=bearer(app, guard)).status_code == 403
    deep = client.get("/deep", headers=bearer(app, guard))
    assert deep.status_code == 503 and b"secret" not in deep.data


def test_a_content_type_the_guard_could_not_see_is_refused_with_503() -> None:
    app, guard = make_app()
    views: dict[str, Callable[[], str]] = {"store": guard.accepts("text/csv")(lambda: "stored")}

    @app.post("/upload")
    @guard.exempt
    def upload() -> str:
        return views["store"]()

    answer = app.test_client().post("/upload", data="a,b", content_type="text/csv")
    assert answer.status_code == 503 and b"stored" not in answer.data


def test_the_outermost_cost_wins_through_a_decorator_without_wraps() -> None:
    api = Api()

    @api.app.get("/report")
    @api.guard.cost(5)
    @logged
    @api.guard.cost(2)
    def report() -> str:
        return "the report"

    token = api.issue(quota=20)
    answer = api.client.get("/report", headers=api.bearer(token))
    assert answer.status_code == 200
    assert answer.headers["RateLimit"].endswith('"quota";r=15')


class Wrapping:
    """A decorator written as a class: it keeps its helpers and the view in attributes,
    one helper under two names."""

    def __init__(self, view: Callable[..., Any]) -> None:
        self.notify = self.record = print
        self.view = view

    def __call__(self) -> Any:
        return self.view()


def updated_only(view: Callable[..., Any]) -> Callable[..., Any]:
    """A decorator that names the view in ``__wrapped__`` but copies none of its
    attributes (``functools.wraps(view, updated=())`` leaves ``__dict__`` alone too)."""

    def inner() -> Any:
        return views[0]()

    views = [view]
    inner.__wrapped__ = view  # type: ignore[attr-defined]
    return inner


def with_an_unfilled_cell(view: Callable[..., Any]) -> Callable[..., Any]:
    def inner() -> Any:
        return view() if view else later  # never reads ``later``

    return inner
    later = None  # unreachable: makes ``later`` a cell that stays empty


@pytest.mark.parametrize(
    "hide",
    [
        Wrapping,
        updated_only,
        functools.partial,
        with_an_unfilled_cell,
    ],
)
def test_a_requirement_is_found_wherever_a_decorator_keeps_the_view(hide: Any) -> None:
    app, guard = make_app()
    app.add_url_rule("/report", "report", hide(guard.require("reports:read")(lambda: "report")))
    client = app.test_client()
    refused = client.get("/report", headers=bearer(app, guard))
    assert refused.status_code == 403  # found before the view ran: not a 503 after
    allowed = client.get("/report", headers=bearer(app, guard, "reports:read"))
    assert allowed.get_data(as_text=True) == "report"
