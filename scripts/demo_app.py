"""A small internal API protected by the guard, on the embedded defaults.

Run through ``scripts/demo``; prints a freshly issued key and a ``curl`` line that works.
"""

from __future__ import annotations

import os
import secrets

from flask import Flask, Response, jsonify, request

from guard import GuardConfig, Keys

HOST, PORT = "127.0.0.1", int(os.environ.get("PORT", "5000"))


def create_app() -> tuple[Flask, str]:
    """The demo app and a token for it. Demo secrets are fresh each run unless set."""
    settings = {
        "GUARD_SECRET_KEY": secrets.token_urlsafe(32),
        "GUARD_PEPPER": secrets.token_urlsafe(32),
        **{k: v for k, v in os.environ.items() if k.startswith("GUARD_")},
    }
    keys = Keys.from_config(GuardConfig.from_mapping(settings, strict=False))
    token, _ = keys.create("demo", scopes=["orders:read"])
    app = Flask(__name__)

    @app.before_request
    def authenticate() -> Response | None:
        header = request.headers.get("Authorization", "")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "bearer" and keys.verify(credentials).ok:
            return None
        response = jsonify(error="invalid_token", message="a valid API key is required")
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Bearer realm="demo"'
        return response

    @app.get("/orders")
    def orders() -> Response:
        return jsonify(orders=[{"id": 1, "total": "12.50"}])

    return app, token


if __name__ == "__main__":
    app, token = create_app()
    print(f"Demo key (shown once): {token}")
    print(f"Try:  curl -H 'Authorization: Bearer {token}' http://{HOST}:{PORT}/orders")
    print(f"A 401: curl -i http://{HOST}:{PORT}/orders")
    app.run(host=HOST, port=PORT)
