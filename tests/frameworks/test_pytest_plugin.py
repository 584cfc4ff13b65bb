"""The pytest plugin, as a team's test suite meets it: installed with the package."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask

from guard import Guard
from tests.conftest import BASE_CONFIG

PROJECT = Path(__file__).parent.parent / "plugin_project"


def run_pytest(directory: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """pytest in a subprocess, from ``cwd``: no conftest or ini of this suite applies."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(directory), "-p", "no:cacheprovider", "-W", "error"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_conftest_free_project_passes_with_only_the_installed_fixture(tmp_path: Path) -> None:
    shutil.copytree(PROJECT, tmp_path / "project")
    result = run_pytest(tmp_path / "project", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 passed" in result.stdout


def make_app(**config: object) -> Flask:
    app = Flask("plugin")
    app.config.update({**BASE_CONFIG, **config})  # GUARD_FORCE_HTTPS on, the default
    guard = Guard(app)

    @app.get("/orders")
    @guard.require("orders:read")
    def orders() -> object:
        key = guard.current_key
        return {"caller": key.name if key else None, "metadata": dict(key.metadata) if key else {}}

    return app


Tokens = Callable[..., str]


def test_an_app_preferring_https_is_served_to_the_test_client(guard_token: Tokens) -> None:
    app = make_app(PREFERRED_URL_SCHEME="https")
    token = guard_token(app, "orders:read", name="ci", metadata={"team": "payments"})
    response = app.test_client().get("/orders", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json == {"caller": "ci", "metadata": {"team": "payments"}}


@pytest.mark.parametrize("config", [{}, {"TESTING": True}])
def test_plain_http_is_redirected_under_the_plugin_too(
    guard_token: Tokens, config: dict[str, object]
) -> None:
    app = make_app(**config)
    token = guard_token(app, "orders:read")
    response = app.test_client().get("/orders", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 301
    assert response.location == "https://localhost/orders"


def test_the_token_factory_takes_the_options_of_guard_keys_create(guard_token: Tokens) -> None:
    app = make_app(PREFERRED_URL_SCHEME="https")
    client = app.test_client()
    limited = guard_token(app, "orders:read", rate_limit="1/hour;100/day", expires_in=3600)
    headers = {"Authorization": f"Bearer {limited}"}
    assert client.get("/orders", headers=headers).status_code == 200
    assert client.get("/orders", headers=headers).status_code == 429
    expired = guard_token(app, "orders:read", expires_in=-1)
    response = client.get("/orders", headers={"Authorization": f"Bearer {expired}"})
    assert response.status_code == 401


@pytest.mark.parametrize(
    "options", [{"rate_limit": "often"}, {"expires_in": "soon"}, {"colour": "red"}]
)
def test_the_token_factory_refuses_what_guard_keys_create_refuses(
    guard_token: Tokens, options: dict[str, object]
) -> None:
    with pytest.raises((ValueError, TypeError)):
        guard_token(make_app(PREFERRED_URL_SCHEME="https"), **options)


def test_the_token_factory_needs_an_app_with_the_guard(guard_token: Tokens) -> None:
    with pytest.raises(RuntimeError, match="Guard"):
        guard_token(Flask("bare"))
