"""guard.openapi(): the guard in the OpenAPI documents of APIFlask, flask-smorest and
apispec, checked operation by operation, validated, and held against the real answers."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from apiflask import APIFlask
from apiflask import Schema as APIFlaskSchema
from apiflask.fields import String as APIFlaskString
from apispec import APISpec
from apispec_webframeworks.flask import FlaskPlugin
from flask import Flask
from flask.views import MethodView
from flask_smorest import Api
from flask_smorest import Blueprint as SmorestBlueprint
from marshmallow import Schema, fields
from openapi_spec_validator import validate

from guard import ConfigurationError, Guard
from tests.conftest import LOCAL_CONFIG

GUARD_CODES = {"400", "401", "403", "413", "415", "429", "503"}


def responses(doc: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    """The operation's responses, each reference to a component resolved."""
    resolved = {}
    for code, response in doc["paths"][path][method]["responses"].items():
        if "$ref" in response:
            response = doc["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
        resolved[code] = response
    return resolved


def guard_codes(doc: dict[str, Any], path: str, method: str) -> set[str]:
    return GUARD_CODES & set(responses(doc, path, method))


def check_scheme(doc: dict[str, Any]) -> None:
    scheme = doc["components"]["securitySchemes"]["GuardBearer"]
    assert scheme["type"] == "http"
    assert scheme["scheme"] == "bearer"
    assert scheme["bearerFormat"].startswith("gk_")
    assert "Authorization: Bearer" in scheme["description"]


Answers = dict[str, Any]


def refusals(
    app: Flask, guard: Guard, read_path: str, write_path: str, read_scopes: list[str]
) -> Answers:
    """The guard's real refusals, by the status each should have."""
    client = app.test_client()
    with app.app_context():
        reader, _ = guard.keys.create("reader", scopes=read_scopes)
        writer, _ = guard.keys.create("writer", scopes=["orders:write"])
        limited, _ = guard.keys.create("limited", scopes=read_scopes, rate_limit="1/hour")

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    answers = {
        "400": client.post(write_path, headers={"Authorization": "Bearer two words"}),
        "401": client.post(write_path, json={"item": "tea"}),
        "403": client.post(write_path, json={"item": "tea"}, headers=bearer(reader)),
        "415": client.post(write_path, data="item=tea", headers=bearer(writer)),
    }
    client.get(read_path, headers=bearer(limited))
    answers["429"] = client.get(read_path, headers=bearer(limited))
    return answers


def check_refusals(doc: dict[str, Any], write_path: str, answers: Answers, *, body: bool) -> None:
    """Each answer has its documented status and required headers (and body schema)."""
    for code, answer in answers.items():
        assert str(answer.status_code) == code
        if body:
            jsonschema.validate(answer.json, doc["components"]["schemas"]["GuardError"])
        documented = responses(doc, write_path, "post")[code]["headers"]
        for name, header in documented.items():
            if header["required"]:
                assert name in answer.headers, (code, name)


# -- APIFlask (OpenAPI 3.1, its default) ------------------------------------------------


def test_a_key_used_outside_its_networks_is_refused_as_documented() -> None:
    app, guard = apiflask_app()
    doc = app.test_client().get("/openapi.json").json
    with app.app_context():
        token, _ = guard.keys.create("fenced", scopes=["orders:read"], allow_from=["10.0.0.0/8"])
    refused = app.test_client().get(
        "/orders/1",
        headers={"Authorization": f"Bearer {token}"},
        environ_base={"REMOTE_ADDR": "192.0.2.1"},
    )
    assert refused.status_code == 403 and refused.json["error"] == "address_not_allowed"
    # The guard's own body, not APIFlask's error shape: what the document promises.
    jsonschema.validate(refused.json, doc["components"]["schemas"]["GuardError"])
    documented = responses(doc, "/orders/{order_id}", "get")["403"]
    assert "address_not_allowed" in documented["content"]["application/json"]["examples"]


class OrderIn(APIFlaskSchema):
    item = APIFlaskString(required=True)


def apiflask_app(
    *, settings: dict[str, Any] | None = None, **openapi: Any
) -> tuple[APIFlask, Guard]:
    app = APIFlask("shop")
    app.config.update(LOCAL_CONFIG, **(settings or {}))
    app.config["OPENAPI_VERSION"] = "3.1.0"  # the default only from APIFlask 3
    guard = Guard(app)

    @app.get("/orders/<int:order_id>")
    @guard.require("orders:read")
    def get_order(order_id: int) -> dict[str, Any]:
        return {"id": order_id}

    @app.post("/orders")
    @app.input(OrderIn)
    @guard.require("orders:write")
    def create_order(json_data: dict[str, Any]) -> dict[str, Any]:
        return json_data

    @app.get("/stock")
    @app.doc(responses={401: "Our own wording"})
    def stock() -> dict[str, Any]:
        return {}

    @app.get("/health")
    @guard.exempt
    def health() -> dict[str, Any]:
        return {"status": "ok"}

    guard.openapi(app, **openapi)
    return app, guard


def test_apiflask_document_validates_and_names_the_bearer_scheme() -> None:
    app, _ = apiflask_app()
    doc = app.test_client().get("/openapi.json").json
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    check_scheme(doc)


def test_apiflask_operations_list_the_scheme_with_their_scopes() -> None:
    doc = apiflask_app()[0].test_client().get("/openapi.json").json
    paths = doc["paths"]
    assert paths["/orders/{order_id}"]["get"]["security"] == [{"GuardBearer": ["orders:read"]}]
    assert paths["/orders"]["post"]["security"] == [{"GuardBearer": ["orders:write"]}]
    assert paths["/stock"]["get"]["security"] == [{"GuardBearer": []}]
    assert paths["/health"]["get"]["security"] == []


def test_apiflask_operations_document_the_guards_refusals_where_they_apply() -> None:
    doc = apiflask_app()[0].test_client().get("/openapi.json").json
    assert guard_codes(doc, "/orders/{order_id}", "get") == {"400", "401", "403", "429", "503"}
    assert guard_codes(doc, "/orders", "post") == GUARD_CODES  # a body: 413 and 415 too
    # No scope, a 403 all the same: a key fenced to networks is refused from elsewhere.
    assert guard_codes(doc, "/stock", "get") == {"400", "401", "403", "429", "503"}
    assert guard_codes(doc, "/health", "get") == set()
    # A response the app documents itself stays as written.
    assert responses(doc, "/stock", "get")["401"]["description"] == "Our own wording"


def test_refusals_are_documented_with_their_body_and_headers() -> None:
    doc = apiflask_app()[0].test_client().get("/openapi.json").json
    documented = responses(doc, "/orders", "post")
    guard_error = {"$ref": "#/components/schemas/GuardError"}
    for code in GUARD_CODES - {"400"}:
        assert documented[code]["content"]["application/json"]["schema"] == guard_error
    # The app answers 400 too, in its own shape: the guard's body is one of the possible.
    assert documented["400"]["content"]["application/json"]["schema"] == {
        "anyOf": [guard_error, {}]
    }
    assert documented["400"]["headers"]["WWW-Authenticate"]["required"] is False
    assert documented["401"]["headers"]["WWW-Authenticate"]["required"] is True
    # Sent with insufficient_scope, not with address_not_allowed.
    assert documented["403"]["headers"]["WWW-Authenticate"]["required"] is False
    # A spent lifetime quota (429 quota_exceeded) has none: waiting would never help.
    assert documented["429"]["headers"]["Retry-After"]["required"] is False
    assert {"RateLimit", "RateLimit-Policy"} <= set(documented["429"]["headers"])
    assert documented["503"]["headers"]["Retry-After"]["required"] is True
    schema = doc["components"]["schemas"]["GuardError"]
    assert schema["required"] == ["error", "message", "request_id"]


def test_apiflask_refusals_keep_the_documented_statuses_and_headers() -> None:
    # APIFlask's error handler renders every HTTPException's body its own way (its
    # HTTPError shape); the guard puts its protocol headers back.
    app, guard = apiflask_app()
    doc = app.test_client().get("/openapi.json").json
    answers = refusals(app, guard, "/orders/1", "/orders", ["orders:read"])
    check_refusals(doc, "/orders", answers, body=True)


def documented_body(doc: dict[str, Any], path: str, method: str, code: str) -> dict[str, Any]:
    """The JSON schema of one documented answer, its references resolvable."""
    schema = responses(doc, path, method)[code]["content"]["application/json"]["schema"]
    return {**schema, "components": doc["components"]}


@pytest.mark.parametrize("validation_status", [422, 400])
def test_apiflask_documents_its_own_400_and_the_guards_as_alternatives(
    validation_status: int,
) -> None:
    # Review round 3, item 20: the document said every 400 was the guard's body with
    # WWW-Authenticate, but APIFlask answers a body it cannot parse (and, with
    # VALIDATION_ERROR_STATUS_CODE = 400, a failed validation) in its own shape.
    app, guard = apiflask_app()
    app.config["VALIDATION_ERROR_STATUS_CODE"] = validation_status
    client = app.test_client()
    doc = client.get("/openapi.json").json
    validate(doc)
    with app.app_context():
        token, _ = guard.keys.create("writer", scopes=["orders:write"])
    key = {"Authorization": f"Bearer {token}"}
    answers = [
        client.post("/orders", data="{not json", content_type="application/json", headers=key),
        client.post("/orders", headers={"Authorization": "Bearer two words"}),
    ]
    if validation_status == 400:
        answers.append(client.post("/orders", json={"wrong": 1}, headers=key))
        app_400 = responses(doc, "/orders", "post")["400"]
        assert app_400["description"].startswith("Validation error")
    schema = documented_body(doc, "/orders", "post", "400")
    for answer in answers:
        assert answer.status_code == 400
        jsonschema.validate(answer.json, schema)
    assert answers[0].json["message"] == "Bad Request"  # APIFlask's shape, not the guard's
    assert "WWW-Authenticate" not in answers[0].headers
    assert answers[1].json["error"] == "invalid_request"


def test_apiflask_docs_pages_need_no_key_and_the_api_still_does() -> None:
    client = apiflask_app()[0].test_client()
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/docs").status_code == 200
    assert client.get("/orders/1").status_code == 401


def test_apiflask_docs_pages_stay_protected_when_the_app_says_so() -> None:
    client = apiflask_app(exempt_docs=False)[0].test_client()
    assert client.get("/openapi.json").status_code == 401
    assert client.get("/docs").status_code == 401


def test_documenting_twice_changes_nothing() -> None:
    app, guard = apiflask_app()
    guard.openapi(app)
    validate(app.test_client().get("/openapi.json").json)


# -- flask-smorest (OpenAPI 3.0) --------------------------------------------------------


class OrderSchema(Schema):
    item = fields.String(required=True)


def smorest_app(*, register_first: bool = False, **openapi: Any) -> tuple[Flask, Api, Guard]:
    app = Flask("shop")
    app.config.update(
        LOCAL_CONFIG,
        API_TITLE="Shop",
        API_VERSION="1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_SWAGGER_UI_PATH="/docs",
        OPENAPI_SWAGGER_UI_URL="/swagger-ui/",  # assets served by the app (not tested here)
        OPENAPI_REDOC_PATH="/redoc",
        OPENAPI_REDOC_URL="/redoc.standalone.js",
    )
    guard = Guard(app)
    api = Api(app)
    blp = SmorestBlueprint("orders", "orders", url_prefix="/orders")

    @blp.route("/")
    class Orders(MethodView):
        @blp.response(200, OrderSchema(many=True))
        @guard.require("orders:read")
        def get(self) -> list[dict[str, str]]:
            return []

        @blp.arguments(OrderSchema)
        @blp.response(201, OrderSchema)
        @guard.require("orders:write")
        def post(self, order: dict[str, str]) -> dict[str, str]:
            return order

    @blp.route("/health")
    @blp.response(200)
    @guard.exempt
    def health() -> dict[str, str]:
        return {"status": "ok"}

    if register_first:
        api.register_blueprint(blp)
    guard.openapi(api, app=app, **openapi)
    if not register_first:
        api.register_blueprint(blp)
    return app, api, guard


def test_smorest_document_validates_and_names_the_bearer_scheme() -> None:
    app, api, _ = smorest_app()
    doc = app.test_client().get("/openapi.json").json
    validate(doc)
    assert doc["openapi"] == "3.0.3"
    check_scheme(doc)
    assert doc == api.spec.to_dict()  # `flask openapi write` gives the same document


def test_smorest_operations_carry_scopes_in_an_extension_on_openapi_30() -> None:
    doc = smorest_app()[0].test_client().get("/openapi.json").json
    orders = doc["paths"]["/orders/"]
    # OpenAPI 3.0: the role list of an http scheme must be empty.
    assert orders["get"]["security"] == [{"GuardBearer": []}]
    assert orders["get"]["x-required-scopes"] == ["orders:read"]
    assert orders["post"]["x-required-scopes"] == ["orders:write"]
    assert doc["paths"]["/orders/health"]["get"]["security"] == []
    assert "x-required-scopes" not in doc["paths"]["/orders/health"]["get"]


def test_smorest_operations_document_the_guards_refusals_where_they_apply() -> None:
    doc = smorest_app()[0].test_client().get("/openapi.json").json
    assert guard_codes(doc, "/orders/", "get") == {"400", "401", "403", "429", "503"}
    assert guard_codes(doc, "/orders/", "post") == GUARD_CODES
    assert guard_codes(doc, "/orders/health", "get") == set()


def test_smorest_refusals_keep_the_documented_statuses_and_headers() -> None:
    # flask-smorest's error handler renders the body ({"code", "status"}) and drops every
    # header; the guard puts its protocol headers back.
    app, _, guard = smorest_app()
    doc = app.test_client().get("/openapi.json").json
    answers = refusals(app, guard, "/orders/", "/orders/", ["orders:read"])
    check_refusals(doc, "/orders/", answers, body=True)


def test_smorest_docs_pages_need_no_key_and_the_api_still_does() -> None:
    client = smorest_app()[0].test_client()
    for page in ("/openapi.json", "/docs", "/redoc"):
        assert client.get(page).status_code == 200, page
    assert client.get("/orders/").status_code == 401


def test_smorest_docs_pages_stay_protected_when_the_app_says_so() -> None:
    client = smorest_app(exempt_docs=False)[0].test_client()
    assert client.get("/openapi.json").status_code == 401


def test_smorest_api_documented_after_its_blueprints_is_refused_loudly() -> None:
    with pytest.raises(ConfigurationError, match=r"before api\.register_blueprint"):
        smorest_app(register_first=True)


# -- a plain Flask app with apispec ------------------------------------------------------


def flask_app(**settings: object) -> tuple[Flask, Guard]:
    app = Flask("plain")
    app.config.update(LOCAL_CONFIG, **settings)
    guard = Guard(app)

    @app.get("/orders")
    @guard.require("orders:read", "orders:list")
    def orders() -> dict[str, Any]:
        """List orders.
        ---
        get:
          responses:
            200:
              description: The orders.
        """
        return {}

    @app.post("/orders")
    @guard.require("orders:write")
    def create_order() -> dict[str, Any]:
        """Place an order.
        ---
        post:
          requestBody:
            content:
              application/json:
                schema: {type: object}
          responses:
            201:
              description: Placed.
        """
        return {}

    @app.delete("/orders/<uuid:order_id>")
    def cancel(order_id: str) -> dict[str, Any]:
        """Cancel an order, with a partner's key or a session.
        ---
        delete:
          security:
            - Session: []
          parameters:
            - {in: path, name: order_id, schema: {type: string, format: uuid}}
          responses:
            204:
              description: Cancelled.
        """
        return {}

    @app.get("/health")
    @guard.exempt
    def health() -> dict[str, Any]:
        """Health.
        ---
        get:
          responses:
            200:
              description: Up.
        """
        return {}

    return app, guard


@pytest.mark.parametrize("version", ["3.0.3", "3.1.0"])
def test_apispec_document_of_a_plain_flask_app_validates(version: str) -> None:
    app, guard = flask_app()
    doc = documented(app, guard, version)
    validate(doc)
    check_scheme(doc)
    scopes = ["orders:list", "orders:read"]
    get = doc["paths"]["/orders"]["get"]
    if version == "3.1.0":
        assert get["security"] == [{"GuardBearer": scopes}]
    else:
        assert get["security"] == [{"GuardBearer": []}]
        assert get["x-required-scopes"] == scopes
    # The guard's key is required on top of the app's own scheme.
    delete = doc["paths"]["/orders/{order_id}"]["delete"]
    assert delete["security"] == [{"Session": [], "GuardBearer": []}]
    assert guard_codes(doc, "/orders/{order_id}", "delete") == {"400", "401", "403", "429", "503"}
    assert doc["paths"]["/health"]["get"]["security"] == []


def documented(app: Flask, guard: Guard, version: str = "3.1.0") -> dict[str, Any]:
    spec = APISpec("Plain", "1", version, plugins=[FlaskPlugin()])
    spec.components.security_scheme("Session", {"type": "apiKey", "in": "cookie", "name": "s"})
    guard.openapi(spec, app=app)
    with app.test_request_context():
        for view in app.view_functions.values():
            if view.__doc__:
                spec.path(view=view)
    return spec.to_dict()


@pytest.mark.parametrize("version", ["3.0.3", "3.1.0"])
def test_an_api_key_header_is_declared_as_an_alternative_apikey_scheme(version: str) -> None:
    app, guard = flask_app(GUARD_API_KEY_HEADER="X-API-Key")
    doc = documented(app, guard, version)
    validate(doc)
    check_scheme(doc)
    scheme = doc["components"]["securitySchemes"]["GuardApiKey"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "X-API-Key")
    roles = ["orders:list", "orders:read"] if version == "3.1.0" else []
    get = doc["paths"]["/orders"]["get"]
    assert get["security"] == [{"GuardBearer": roles}, {"GuardApiKey": roles}]
    # Either header, each on top of the app's own scheme; exempt views still need none.
    delete = doc["paths"]["/orders/{order_id}"]["delete"]
    assert delete["security"] == [
        {"Session": [], "GuardBearer": []},
        {"Session": [], "GuardApiKey": []},
    ]
    assert doc["paths"]["/health"]["get"]["security"] == []
    # The scheme documents what the guard does: the header alone opens the operation.
    with app.app_context():
        token, _ = guard.keys.create("reader", scopes=["orders:read", "orders:list"])
    assert app.test_client().get("/orders", headers={"X-API-Key": token}).status_code == 200


def test_without_an_api_key_header_only_the_bearer_scheme_is_declared() -> None:
    app, guard = flask_app()
    doc = documented(app, guard)
    assert list(doc["components"]["securitySchemes"]) == ["Session", "GuardBearer"]


def test_documenting_twice_with_an_api_key_header_adds_no_alternative() -> None:
    app, guard = apiflask_app(settings={"GUARD_API_KEY_HEADER": "X-API-Key"})
    guard.openapi(app)
    doc = app.test_client().get("/openapi.json").json
    validate(doc)
    get = doc["paths"]["/orders/{order_id}"]["get"]
    assert get["security"] == [{"GuardBearer": ["orders:read"]}, {"GuardApiKey": ["orders:read"]}]


def test_the_guards_real_refusals_match_the_document() -> None:
    # Rendered by the guard itself (no app-wide error handler): body and headers.
    app, guard = flask_app()
    doc = documented(app, guard)
    answers = refusals(app, guard, "/orders", "/orders", ["orders:read", "orders:list"])
    check_refusals(doc, "/orders", answers, body=True)


def test_a_path_that_routes_to_no_view_is_documented_as_protected() -> None:
    app, guard = flask_app()
    spec = APISpec("Plain", "1", "3.1.0")
    with app.app_context():  # the app from the context
        guard.openapi(spec)
    spec.path("/ghost", operations={"get": {"responses": {"200": {"description": "?"}}}})
    doc = spec.to_dict()
    validate(doc)
    assert doc["paths"]["/ghost"]["get"]["security"] == [{"GuardBearer": []}]


def test_openapi_2_is_refused_with_the_versions_supported() -> None:
    app, guard = flask_app()
    with pytest.raises(ConfigurationError, match=r"3\.0 and 3\.1"):
        guard.openapi(APISpec("Plain", "1", "2.0"), app=app)


@pytest.mark.parametrize("target", [Flask("not-apiflask"), object()])
def test_other_targets_are_refused(target: object) -> None:
    app, guard = flask_app()
    with pytest.raises(TypeError, match="APIFlask app, a flask-smorest Api"):
        guard.openapi(target, app=app)


def test_an_app_without_the_guard_is_refused() -> None:
    _, guard = flask_app()
    with pytest.raises(ConfigurationError, match="install the guard"):
        guard.openapi(APISpec("Plain", "1", "3.1.0"), app=Flask("unguarded"))


def test_an_apispec_without_the_app_outside_an_app_context_is_refused() -> None:
    _, guard = flask_app()
    with pytest.raises(TypeError, match="app=app"):
        guard.openapi(APISpec("Plain", "1", "3.1.0"))


def test_a_method_views_methods_are_documented_as_the_guard_decides_them() -> None:
    # The document reads the pipeline's own policy: scopes on a method under a decorator
    # without functools.wraps are documented, and so is a method's exemption.
    app, api, guard = smorest_app()

    def logged(view: Any) -> Any:
        def inner(*args: Any, **kwargs: Any) -> Any:
            return view(*args, **kwargs)

        return inner

    blp = SmorestBlueprint("stock", "stock", url_prefix="/stock")

    @blp.route("/")
    class Stock(MethodView):
        @guard.exempt
        def get(self) -> dict[str, str]:
            return {}

        @logged
        @guard.require("stock:write")
        def put(self) -> dict[str, str]:
            return {}

    api.register_blueprint(blp)
    stock = app.test_client().get("/openapi.json").json["paths"]["/stock/"]
    assert stock["get"]["security"] == []
    assert stock["put"]["x-required-scopes"] == ["stock:write"]
    with app.app_context():
        token, _ = guard.keys.create("writer", scopes=["orders:read"])
    put = app.test_client().put("/stock/", headers={"Authorization": f"Bearer {token}"})
    assert put.status_code == 403
