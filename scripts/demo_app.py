"""A small internal API protected by the guard, on the embedded defaults.

``scripts/demo`` runs it: memory store, memory limits, plain HTTP on loopback. It prints
a freshly issued key and ``curl`` lines that show a 200, a 401 and a 429. Any ``GUARD_*``
variable in the environment overrides the defaults; served by gunicorn it is
``demo_app:create_app()``.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys

from flask import Flask, jsonify
from flask.typing import ResponseReturnValue

from guard import Guard

HOST, PORT = "127.0.0.1", int(os.environ.get("PORT", "5000"))

guard = Guard()


def create_app() -> Flask:
    app = Flask("demo")
    app.config.update(
        # Fresh secrets each run: tokens from an earlier run stop working, as they should.
        GUARD_SECRET_KEY=secrets.token_urlsafe(32),
        GUARD_PEPPER=secrets.token_urlsafe(32),
        # Loopback only, no TLS: never turn this off in production.
        GUARD_FORCE_HTTPS=False,
        GUARD_ALLOW_PLAIN_HTTP=True,
    )
    app.config.update({k: v for k, v in os.environ.items() if k.startswith("GUARD_")})
    guard.init_app(app)

    @app.get("/orders")
    @guard.require("orders:read")
    def list_orders() -> ResponseReturnValue:
        return jsonify(orders=[{"id": 1, "total": "12.50"}])

    @app.post("/orders")
    @guard.require("orders:write")
    def create_order() -> ResponseReturnValue:
        return jsonify(id=2), 201

    @app.get("/whoami")
    def whoami() -> ResponseReturnValue:
        key = guard.current_key
        assert key is not None
        return jsonify(id=key.key_id, name=key.name, scopes=list(key.scopes))

    @app.get("/health")
    @guard.exempt
    def health() -> ResponseReturnValue:
        return jsonify(status="ok")

    return app


def main() -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
    app = create_app()
    with app.app_context():
        token, _ = guard.keys.create("demo", scopes=["orders:read"], rate_limit="5/minute")
    url = f"http://{HOST}:{PORT}"
    print(
        f"""
Demo API on {url} (audit entries go to stderr, one JSON line per request)

Demo key, shown once:
  {token}

200:  curl -i -H 'Authorization: Bearer {token}' {url}/orders
401:  curl -i {url}/orders
403:  curl -i -X POST -H 'Authorization: Bearer {token}' {url}/orders
429:  for i in 1 2 3 4 5 6; do curl -s -o /dev/null -w '%{{http_code}}\\n' \\
        -H 'Authorization: Bearer {token}' {url}/whoami; done
""",
        flush=True,
    )
    app.run(host=HOST, port=PORT)


if __name__ == "__main__":
    main()
