"""The guard in an app's OpenAPI document: ``Guard.openapi(target)``.

One apispec plugin (:class:`GuardPlugin`, apispec's documented extension point) serves
all three ways an app builds its document: APIFlask builds a fresh ``APISpec`` with
``app.spec_plugins`` on every generation; flask-smorest's ``Api.spec`` and a hand-built
``APISpec`` take the plugin before their paths are added. For each operation it finds the
Flask endpoint the path and method route to and documents what the guard does there:

- ``components.securitySchemes`` gets the guard's bearer scheme (``type: http``) and,
  with ``GUARD_API_KEY_HEADER`` set, its API key scheme (``type: apiKey`` in that header);
- a protected operation requires one of them, with the scopes its view requires: in OpenAPI 3.1
  as the requirement's role list; in 3.0, where that list must be empty for ``http``
  schemes, in an ``x-required-scopes`` extension; and it documents the guard's refusals
  (400, 401, 403, 413 and 415 where a body may come, 429, 503) with
  their JSON body and protocol headers. A 400 is also the app's own answer to a body it
  cannot parse (or, with some settings, to one that fails validation), in the app's
  shape: there the guard's body is documented as one of the possible ones (``anyOf``),
  beside the app's own 400 where the operation documents one, never in its place;
- an exempt operation gets ``security: []``.

An operation whose path matches no endpoint is documented as protected, as the guard
treats a request that matches no view: the document never promises open access that the
guard would refuse. The documentation pages the framework registers are exempted (no key
needed to read them) unless ``exempt_docs=False``; its HTML pages (not the JSON document,
which keeps the API's ``default-src 'none'``) are sent under
:data:`guard.integrations.docs_pages.DOCS_CSP`, with a nonce per request that only the
``<script>`` tags of the page's own templates carry (see :mod:`guard.integrations.docs_pages`
for why, and not hashes of what the page sends).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from apispec import APISpec, BasePlugin
from flask import Flask, current_app, has_app_context
from werkzeug.wrappers import Response as WerkzeugResponse

from guard import errors
from guard._request import policy as scopes
from guard._request.pipeline import GuardState
from guard._request.state import Policy
from guard.errors import ConfigurationError, RequestRejected
from guard.integrations import docs_pages
from guard.integrations.docs_pages import DOCS_CSP

__all__ = ["DOCS_CSP", "GuardPlugin", "document", "endpoint_for", "view_policy"]

#: Names under ``components``; prefixed so they cannot collide with the app's own.
SCHEME = "GuardBearer"
API_KEY_SCHEME = "GuardApiKey"
ERROR_SCHEMA = "GuardError"

#: The framework endpoints that serve the OpenAPI document itself (APIFlask's
#: ``openapi.spec``, flask-smorest's ``api-docs.openapi_json``): JSON, kept under the
#: API's ``default-src 'none'``.
_DOCUMENT_ENDPOINTS = frozenset({"spec", "openapi_json"})

#: HTTP methods a path item may hold (its other keys are parameters, summaries...).
_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
#: Methods that may carry a body, hence meet the body-size and content-type checks.
_BODY_METHODS = frozenset({"post", "put", "patch"})
#: A Flask rule's ``<converter(args):name>`` as OpenAPI writes it, ``{name}``.
_RULE_VARIABLE = re.compile(r"<(?:[^<>:]+:)?([^<>:]+)>")

# Response headers the guard sends: name, header object.
_HEADERS: dict[str, tuple[str, dict[str, Any]]] = {
    "GuardWWWAuthenticate": (
        "WWW-Authenticate",
        {
            "description": "The RFC 6750 challenge, e.g. "
            '`Bearer realm="api", error="invalid_token"`.',
            "schema": {"type": "string"},
        },
    ),
    "GuardRetryAfter": (
        "Retry-After",
        {
            "description": "Seconds to wait before retrying.",
            "schema": {"type": "integer", "minimum": 0},
        },
    ),
    "GuardRateLimit": (
        "RateLimit",
        {
            "description": "The key's remaining requests and seconds to reset (IETF draft), "
            'e.g. `"key";r=0;t=42`, and what is left of a quota, e.g. `"quota";r=9321;t=86400`.',
            "schema": {"type": "string"},
        },
    ),
    "GuardRateLimitPolicy": (
        "RateLimit-Policy",
        {
            "description": 'The key\'s limit (IETF draft), e.g. `"key";q=600;w=60`.',
            "schema": {"type": "string"},
        },
    ),
}

# Each refusal: its component name, the errors it is rendered from, its headers (a
# required header is sent on every such answer).
_RESPONSES: dict[str, tuple[str, tuple[type[RequestRejected], ...], dict[str, bool]]] = {
    "400": (
        "GuardInvalidRequest",
        (errors.InvalidRequest,),
        {"GuardWWWAuthenticate": False},  # not on the app's own 400s
    ),
    "401": (
        "GuardUnauthorized",
        (errors.AuthenticationRequired, errors.InvalidToken),
        {"GuardWWWAuthenticate": True},
    ),
    # Named for the scopes it first documented; a key fenced to networks (--allow-from)
    # is refused 403 too, without a challenge, from anywhere else.
    "403": (
        "GuardInsufficientScope",
        (errors.InsufficientScope, errors.AddressNotAllowed),
        {"GuardWWWAuthenticate": False},
    ),
    "413": ("GuardPayloadTooLarge", (errors.PayloadTooLarge,), {}),
    "415": ("GuardUnsupportedMediaType", (errors.UnsupportedMediaType,), {}),
    # A spent lifetime quota is the one 429 without Retry-After: waiting never helps.
    "429": (
        "GuardRateLimited",
        (errors.RateLimited, errors.QuotaExceeded),
        {"GuardRetryAfter": False, "GuardRateLimit": False, "GuardRateLimitPolicy": False},
    ),
    "503": ("GuardUnavailable", (errors.GuardUnavailable,), {"GuardRetryAfter": True}),
}


def document(target: object, *, app: Flask | None, exempt_docs: bool) -> None:
    """Install the guard's documentation on ``target`` (see :meth:`Guard.openapi`)."""
    if isinstance(target, APISpec):
        app = _app(app)
        _attach(target, GuardPlugin(app))
        return
    # Not target.spec first: on APIFlask that property generates (and caches) the document.
    plugins = getattr(target, "spec_plugins", None)
    if isinstance(target, Flask) and isinstance(plugins, list):
        # APIFlask: a fresh APISpec with these plugins on every generation, so the order
        # of this call and the app's routes does not matter.
        if not any(isinstance(plugin, GuardPlugin) for plugin in plugins):
            plugins.append(GuardPlugin(target))
        docs = _endpoints(target, lambda endpoint, _: endpoint.startswith("openapi."))
        app = target
    elif isinstance(spec := getattr(target, "spec", None), APISpec):  # flask-smorest's Api
        app = _app(app)
        _attach(spec, GuardPlugin(app))
        # Its documentation views (JSON, ReDoc, Swagger UI, RapiDoc) are its own methods.
        docs = _endpoints(app, lambda _, view: getattr(view, "__self__", None) is target)
    else:
        raise TypeError(
            "guard.openapi() takes an APIFlask app, a flask-smorest Api (after init_app) "
            f"or an apispec APISpec, not {type(target).__name__}"
        )
    _answer_as_documented(app)
    docs_pages.install(app)
    for endpoint in docs:
        # A new wrapper for this registration (a bound method, for flask-smorest).
        view = app.view_functions[endpoint]
        if endpoint.rpartition(".")[2] not in _DOCUMENT_ENDPOINTS:
            # An HTML page: let it run, with its own inline scripts only.
            view = scopes.mark(docs_pages.pinned_view(view), csp=DOCS_CSP)
        if exempt_docs:
            view = scopes.mark(view, exempt=True)
        app.view_functions[endpoint] = view


def _answer_as_documented(app: Flask) -> None:
    """Make the guard's refusals answer with the body this document describes.

    APIFlask and flask-smorest render every ``HTTPException`` in their own error shape,
    the guard's refusals included, which would make the document wrong. A handler for
    each refusal class (Flask picks the most specific one, before an ``HTTPException``
    catch-all) answers with the refusal's own JSON. An app that wants another shape
    registers its own handlers for these classes after this call, and documents it.
    """
    for _, kinds, _ in _RESPONSES.values():
        for kind in kinds:
            app.register_error_handler(kind, _own_answer)


def _own_answer(refusal: errors.RequestRejected) -> WerkzeugResponse:
    return refusal.get_response()


def _app(app: Flask | None) -> Flask:
    if app is not None:
        return app
    if has_app_context():
        # The app itself, not the proxy: the plugin outlives this context.
        return current_app._get_current_object()  # type: ignore[attr-defined,no-any-return]
    raise TypeError("guard.openapi() needs the Flask app: pass app=app")


def _attach(spec: APISpec, plugin: GuardPlugin) -> None:
    if any(isinstance(p, GuardPlugin) for p in spec.plugins):
        return
    if spec.to_dict().get("paths"):
        # apispec runs plugins as each path is added: earlier paths would stay undocumented.
        raise ConfigurationError(
            "guard.openapi() must be called before paths are added to the spec "
            "(with flask-smorest: before api.register_blueprint)"
        )
    spec.plugins = [*spec.plugins, plugin]
    plugin.init_spec(spec)


def _endpoints(app: Flask, chosen: Callable[[str, Callable[..., Any]], bool]) -> list[str]:
    return [endpoint for endpoint, view in app.view_functions.items() if chosen(endpoint, view)]


def view_policy(app: Flask, endpoint: str | None, method: str) -> Policy:
    """The policy the guard's pipeline decides a ``method`` request to ``endpoint`` by:
    its view's and its blueprints', and a class-based view's method's, wherever the
    decorators are written (under a decorator without ``functools.wraps`` too). The one
    lookup of this module, so the document says what the guard does."""
    state: GuardState = app.extensions["guard"]
    found = state.policy(endpoint, app)
    if found.methods is None:
        return found
    return found.methods.get(method.upper(), found)


def endpoint_for(app: Flask, path: str, method: str) -> str | None:
    """The endpoint a request for the OpenAPI ``path`` and ``method`` routes to."""
    for rule in app.url_map.iter_rules():
        if (
            method.upper() in (rule.methods or ())
            and _RULE_VARIABLE.sub(r"{\1}", rule.rule) == path
        ):
            endpoint: str = rule.endpoint
            return endpoint
    return None


class GuardPlugin(BasePlugin):
    """Documents the guard of ``app`` in every operation added to a spec."""

    def __init__(self, app: Flask) -> None:
        state = app.extensions.get("guard")
        if state is None:
            raise ConfigurationError("guard.openapi(): install the guard on the app first")
        self.app = app
        self.token_prefix: str = state.config.token_prefix
        self.api_key_header: str = state.config.api_key_header
        self.scopes_in_requirement = True

    def init_spec(self, spec: APISpec) -> None:
        version = spec.openapi_version
        if version.major != 3:
            raise ConfigurationError(
                f"guard.openapi() documents OpenAPI 3.0 and 3.1, not {version}: "
                "set the framework's OpenAPI version to 3.1.0 or 3.0.3"
            )
        # OpenAPI 3.0 requires an empty role list for http schemes.
        self.scopes_in_requirement = version.minor >= 1
        components = spec.components
        components.security_scheme(SCHEME, self._scheme())
        if self.api_key_header:
            components.security_scheme(API_KEY_SCHEME, self._api_key_scheme())
        components.schema(ERROR_SCHEMA, _error_schema())
        for code, (name, kinds, headers) in _RESPONSES.items():
            components.response(name, _response(code, kinds, headers))

    def _scheme(self) -> dict[str, Any]:
        prefix = self.token_prefix
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": f"{prefix}<key id>.<secret>.<signature>",
            "description": (
                "An API key issued by the operator (`guard keys create`), sent as "
                "`Authorization: Bearer <token>`. A token reads "
                f"`{prefix}<key id>.<secret>.<signature>`: a public 16-hex-digit key id, "
                "a 256-bit random secret and an HMAC signature. Keys carry scopes; an "
                "operation's required scopes are listed in its security requirement "
                "(OpenAPI 3.1) or its `x-required-scopes` (3.0)."
            ),
        }

    def _api_key_scheme(self) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": self.api_key_header,
            "description": (
                f"The same API key as {SCHEME}, sent alone as `{self.api_key_header}: "
                f"{self.token_prefix}<key id>.<secret>.<signature>`. Send one of the two "
                "headers: a request with both is refused (400)."
            ),
        }

    def operation_helper(
        self,
        path: str | None = None,
        operations: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        for method, operation in (operations or {}).items():
            if method in _METHODS and isinstance(operation, dict) and path is not None:
                rules = view_policy(self.app, endpoint_for(self.app, path, method), method)
                self._document(operation, method, rules)

    def _document(self, operation: dict[str, Any], method: str, rules: Policy) -> None:
        if rules.exempt:
            operation.setdefault("security", [])
            return
        scopes = sorted(rules.scopes)
        roles = scopes if self.scopes_in_requirement else []
        if scopes and not self.scopes_in_requirement:
            operation["x-required-scopes"] = scopes
        # The guard's key, in either of its headers, is required on top of any scheme the
        # app documents itself. The guard's own entries are set afresh, never added to,
        # so that documenting an operation twice changes nothing.
        guards = [SCHEME, API_KEY_SCHEME] if self.api_key_header else [SCHEME]
        apps: list[dict[str, Any]] = []
        for alternative in operation.get("security") or [{}]:
            own = {k: v for k, v in alternative.items() if k not in (SCHEME, API_KEY_SCHEME)}
            if own not in apps:
                apps.append(own)
        operation["security"] = [{**own, scheme: roles} for own in apps for scheme in guards]
        # 403 on every protected operation: any key may be fenced to networks.
        codes = ["400", "401", "403", "429", "503"]
        if method in _BODY_METHODS or "requestBody" in operation:
            codes += ["413", "415"]
        responses = operation.setdefault("responses", {})
        documented = {str(code): code for code in responses}  # the app's own stay
        for code in sorted(set(codes) - set(documented)):
            responses[code] = {"$ref": f"#/components/responses/{_RESPONSES[code][0]}"}
        if "400" in documented:
            _or_the_guards(responses[documented["400"]])


def _or_the_guards(response: dict[str, Any]) -> None:
    # The app documents its own 400 (APIFlask's validation errors, with
    # VALIDATION_ERROR_STATUS_CODE = 400): each body it names may also be the guard's.
    # A response the app shares by reference is left as the app wrote it.
    if "$ref" in response:
        return
    guards = {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}
    content = response.setdefault("content", {})
    for media in content.values():
        if isinstance(media, dict) and "schema" in media:
            media["schema"] = {"anyOf": [media["schema"], guards]}
    content.setdefault("application/json", {"schema": {"anyOf": [{}, guards]}})
    name, header = _HEADERS["GuardWWWAuthenticate"]
    response.setdefault("headers", {}).setdefault(name, {**header, "required": False})
    response["description"] = (
        f"{response.get('description', '')} (or the guard's refusal of a malformed "
        "Authorization header)"
    ).lstrip()


def _error_schema() -> dict[str, Any]:
    kinds: Iterable[type[RequestRejected]] = (k for _, ks, _ in _RESPONSES.values() for k in ks)
    return {
        "type": "object",
        "description": "A refusal by the API guard.",
        "required": ["error", "message", "request_id"],
        "properties": {
            "error": {"type": "string", "enum": sorted({kind.error for kind in kinds})},
            "message": {"type": "string", "description": "For people; may change."},
            "request_id": {
                "type": "string",
                "description": "Also in the X-Request-ID header and the audit trail.",
            },
        },
    }


def _response(
    code: str, kinds: tuple[type[RequestRejected], ...], headers: dict[str, bool]
) -> dict[str, Any]:
    examples = {
        kind.error: {
            "value": {"error": kind.error, "message": kind.message, "request_id": "4bf92f3577b3"}
        }
        for kind in kinds
    }
    description = " or ".join(kind.message for kind in kinds)
    schema: dict[str, Any] = {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}
    if code == "400":
        # The app answers 400 too, in its own shape, which the guard cannot know.
        description = (
            f"The guard's refusal ({description}) or the app's own 400, such as a body "
            "it cannot parse, in the app's error shape"
        )
        schema = {"anyOf": [schema, {}]}
    return {
        "description": description,
        "headers": {
            _HEADERS[name][0]: {**_HEADERS[name][1], "required": required}
            for name, required in headers.items()
        },
        "content": {
            "application/json": {
                "schema": schema,
                "examples": examples,
            }
        },
    }
