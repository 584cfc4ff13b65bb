"""An ordinary Flask app that uses the guard, written the way apps are written.

An app factory, blueprints, logging through ``logging.config.dictConfig`` with a JSON
formatter, an app-wide ``HTTPException`` handler rendering problem details,
Flask-Limiter decorators both on views defined before ``init_app`` (at import, in
blueprints) and after it (inside the factory), settings from ``GUARD_*`` variables (as
``flask run`` loads them from ``.env``). Nothing in it is arranged for the guard's
convenience: the tests in ``tests/test_real_app.py`` drive it as its users would.
"""

from __future__ import annotations

import logging.config
import os
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Flask, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from guard import Guard, RequestRejected

guard = Guard()

LOGGING: dict[str, Any] = {
    "version": 1,
    # dictConfig's default: every logger that exists now and is not named here is
    # disabled, guard.audit included (it exists from `import guard` on).
    "formatters": {
        "json": {"()": "pythonjsonlogger.json.JsonFormatter", "fmt": "%(levelname)s %(name)s"}
    },
    "handlers": {"stdout": {"class": "logging.StreamHandler", "formatter": "json"}},
    "root": {"handlers": ["stdout"], "level": "INFO"},
}

catalog = Blueprint("catalog", __name__, url_prefix="/catalog")
admin = Blueprint("admin", __name__, url_prefix="/admin")
ops = Blueprint("ops", __name__, url_prefix="/ops")
guard.require("admin")(admin)
guard.exempt(ops)


@catalog.get("/items")
@guard.require("catalog:read")
def list_items() -> ResponseReturnValue:
    return jsonify(items=["apple", "pear"], caller=guard.current_key.name)  # type: ignore[union-attr]


@catalog.post("/items")
@guard.limiter.limit("2/minute")  # used before init_app: the blueprint is imported first
@guard.require("catalog:write")
def add_item() -> ResponseReturnValue:
    return jsonify(added=request.get_json()), 201


@admin.get("/stats")
def stats() -> ResponseReturnValue:
    return jsonify(keys="many")


@ops.get("/health")
def health() -> ResponseReturnValue:
    return jsonify(status="ok")


def create_app(settings: Mapping[str, Any] | None = None) -> Flask:
    logging.config.dictConfig(LOGGING)
    app = Flask(__name__)
    app.config.update({k: v for k, v in os.environ.items() if k.startswith("GUARD_")})
    app.config.update(settings or {})
    guard.init_app(app)

    @app.errorhandler(HTTPException)
    def problem(error: HTTPException) -> ResponseReturnValue:
        body: dict[str, Any] = {"title": error.name, "status": error.code}
        if isinstance(error, RequestRejected):
            body["request_id"] = error.request_id
        return body, error.code or 500, {"Content-Type": "application/problem+json"}

    @app.get("/reports")
    @guard.limiter.limit("1/minute")  # used after init_app
    def reports() -> ResponseReturnValue:
        return jsonify(reports=[])

    app.register_blueprint(catalog)
    app.register_blueprint(admin)
    app.register_blueprint(ops)
    return app
