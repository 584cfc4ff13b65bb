"""A user's test file: its own app factory, no conftest, only the installed plugin's fixture.

Run by tests/frameworks/test_pytest_plugin.py with pytest in a subprocess, from a copy of
this directory, so nothing of the guard's own test suite is in reach.
"""

from flask import Flask, jsonify

from guard import Guard

guard = Guard()


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.update(
        # GUARD_FORCE_HTTPS stays on, as in production; the test client sends HTTPS.
        PREFERRED_URL_SCHEME="https",
        GUARD_SECRET_KEY="k" * 32,
        GUARD_PEPPER="p" * 32,
    )
    guard.init_app(app)

    @app.get("/orders")
    @guard.require("orders:read")
    def orders() -> object:
        key = guard.current_key
        return jsonify(caller=key.name if key else None)

    @app.get("/health")
    @guard.exempt
    def health() -> object:
        return jsonify(status="ok")

    return app


def test_a_token_with_the_scope_is_served(guard_token) -> None:
    app = create_app()
    token = guard_token(app, "orders:read", name="ci")
    response = app.test_client().get("/orders", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json == {"caller": "ci"}


def test_a_token_without_the_scope_is_refused(guard_token) -> None:
    app = create_app()
    token = guard_token(app)
    response = app.test_client().get("/orders", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403


def test_the_key_limit_applies(guard_token) -> None:
    app = create_app()
    token = guard_token(app, "orders:read", rate_limit="1/hour")
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/orders", headers=headers).status_code == 200
    assert client.get("/orders", headers=headers).status_code == 429


def test_no_redirect_and_no_key_needed_on_exempt_views() -> None:
    assert create_app().test_client().get("/health").status_code == 200


# Tests run in file order: the second sees what the fixture left after the first.
shared_app = create_app()
issued: list[str] = []


def test_a_token_issued_for_one_test(guard_token) -> None:
    issued.append(guard_token(shared_app, "orders:read", expires_in="1h"))
    headers = {"Authorization": f"Bearer {issued[0]}"}
    assert shared_app.test_client().get("/orders", headers=headers).status_code == 200


def test_is_refused_after_it() -> None:
    headers = {"Authorization": f"Bearer {issued[0]}"}
    assert shared_app.test_client().get("/orders", headers=headers).status_code == 401
