"""CORS answers as Flask-CORS gives them, plus ``Vary: Origin`` on every response.

The guard answers CORS from Flask-CORS's own header logic without its per-response hook;
each kind of question below is also put to an app with Flask-CORS installed the public
way, ``CORS(app, ...)``, and the two answers must agree header for header. A Flask-CORS
release that changes its rules (or the functions the guard calls) fails here.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask_cors import CORS

from guard import Guard
from tests.conftest import LOCAL_CONFIG

ORIGIN = "https://app.example"
EXPOSED = ["RateLimit", "RateLimit-Policy", "Retry-After", "X-Request-ID", "WWW-Authenticate"]

SETTINGS = [
    {"origins": [ORIGIN], "credentials": False},
    {"origins": [ORIGIN], "credentials": True},
    {"origins": [ORIGIN, "https://admin.example"], "credentials": False},
    {"origins": ["*"], "credentials": False},
]
QUESTIONS: list[tuple[str, dict[str, str]]] = [
    ("GET", {"Origin": ORIGIN}),
    ("GET", {"Origin": "https://admin.example"}),
    ("GET", {"Origin": "https://evil.example"}),
    ("OPTIONS", {"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}),
    (
        "OPTIONS",
        {
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "authorization, content-type, x-other",
        },
    ),
    (
        "OPTIONS",
        {
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Private-Network": "true",
        },
    ),
]


def guarded(origins: list[str], credentials: bool) -> Flask:
    app = Flask("guarded")
    app.config.update(
        LOCAL_CONFIG,
        GUARD_CORS_ORIGINS=",".join(origins),
        GUARD_CORS_ALLOW_CREDENTIALS=credentials,
    )
    guard = Guard(app)

    @app.route("/health", methods=["GET", "POST", "PUT"])
    @guard.exempt
    def health() -> object:
        return {"status": "ok"}

    return app


def with_flask_cors(origins: list[str], credentials: bool) -> Flask:
    app = Flask("reference")
    CORS(
        app,
        origins=origins,
        supports_credentials=credentials,
        allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
        expose_headers=EXPOSED,
        max_age=600,
    )

    @app.route("/health", methods=["GET", "POST", "PUT"])
    def health() -> object:
        return {"status": "ok"}

    return app


def cors_headers(app: Flask, method: str, headers: dict[str, str]) -> dict[str, str]:
    response = app.test_client().open("/health", method=method, headers=headers)
    return {
        name.lower(): value
        for name, value in response.headers.items()
        if name.lower().startswith("access-control-")
    }


@pytest.mark.parametrize("settings", SETTINGS)
@pytest.mark.parametrize(("method", "headers"), QUESTIONS)
def test_the_guard_answers_cors_as_flask_cors_does(
    settings: dict[str, Any], method: str, headers: dict[str, str]
) -> None:
    ours = cors_headers(guarded(**settings), method, headers)
    theirs = cors_headers(with_flask_cors(**settings), method, headers)
    assert ours == theirs


@pytest.mark.parametrize("origin", [ORIGIN, "https://evil.example", None])
def test_every_response_varies_on_origin_with_one_origin_configured(origin: str | None) -> None:
    # A shared cache keyed without Origin would serve one origin's CORS answer to another.
    app = guarded([ORIGIN], credentials=False)
    headers = {"Origin": origin} if origin else {}
    for path in ("/health", "/orders"):  # a view's answer and a refusal
        response = app.test_client().get(path, headers=headers)
        assert "Origin" in response.headers.getlist("Vary"), (path, origin)


def test_without_cors_configured_nothing_varies_on_origin() -> None:
    app = Flask("plain")
    app.config.update(LOCAL_CONFIG)
    Guard(app)
    response = app.test_client().get("/orders", headers={"Origin": ORIGIN})
    assert "Vary" not in response.headers
