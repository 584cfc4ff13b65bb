"""The README's sections "OpenAPI and docs pages" and "In development and in tests", run
as written: each block marked ``<!-- file: NAME -->`` is written to NAME and used."""

from __future__ import annotations

import http.client
import os
import re
import runpy
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate

from tests.conftest import BASE_CONFIG
from tests.redis_server import free_port

README = Path(__file__).resolve().parents[2] / "README.md"
_BLOCK = re.compile(r"<!-- file: (\S+) -->\n```\w*\n(.*?)```", re.DOTALL)


def readme_files(section: str) -> dict[str, str]:
    """The marked blocks of the README section titled ``section``, by file name."""
    text = README.read_text()
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    return dict(_BLOCK.findall(text[start:end]))


def get(url: str, token: str | None = None) -> int:
    """The status of a GET, redirects not followed (urllib would follow them)."""
    host, _, path = url.removeprefix("http://").partition("/")
    connection = http.client.HTTPConnection(host, timeout=5)
    try:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        connection.request("GET", f"/{path}", headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without the settings a developer's shell might hold."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("GUARD_", "FLASK_"))}
    return {**kept, **extra}


@pytest.fixture
def dev_project(tmp_path: Path) -> Path:
    for name, text in readme_files("In development and in tests").items():
        (tmp_path / name).write_text(text)
    return tmp_path


def flask(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flask", *args],
        cwd=project,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class FlaskRun:
    """``flask run`` in ``project``, on a free port, until stopped."""

    def __init__(self, project: Path, **env: str) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        port = self.url.rsplit(":", 1)[1]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flask", "run", "--port", port],
            cwd=project,
            env=clean_env(**env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while not self._listening():
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError("flask run did not start")
            time.sleep(0.1)

    def _listening(self) -> bool:
        try:
            get(f"{self.url}/health")
        except OSError:
            return False
        return True

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(15)


@pytest.fixture
def served(dev_project: Path) -> Iterator[tuple[FlaskRun, str]]:
    """The README's commands: a key into .env, then ``flask run``."""
    commands = readme_files("In development and in tests")["commands.sh"].splitlines()
    line = next(line for line in commands if line.startswith("flask guard"))
    create = shlex.split(line, comments=True)
    result = flask(dev_project, *create[1:])
    assert result.returncode == 0, result.stderr
    token = re.search(r"gk_[\w.-]+", result.stdout)
    assert token is not None, result.stdout
    server = FlaskRun(dev_project)
    yield server, token.group()
    server.stop()


def test_flask_run_with_the_readme_env_serves_plain_http(served: tuple[FlaskRun, str]) -> None:
    server, token = served
    assert get(f"{server.url}/health") == 200
    assert get(f"{server.url}/orders") == 401
    assert get(f"{server.url}/orders", token) == 200


def test_flask_run_with_the_defaults_redirects_every_request(dev_project: Path) -> None:
    # What the section starts from: .env ignored, only the secrets set.
    (dev_project / ".env").unlink()
    server = FlaskRun(dev_project, FLASK_APP="app:create_app", **BASE_CONFIG)
    try:
        assert get(f"{server.url}/health") == 301
    finally:
        server.stop()


def test_the_readme_test_file_passes_under_pytest(dev_project: Path) -> None:
    (dev_project / ".env").unlink()  # the tests need none of it
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "test_orders.py", "-p", "no:cacheprovider", "-W", "error"],
        cwd=dev_project,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 passed" in result.stdout


@pytest.fixture
def openapi_examples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    for name, value in {**BASE_CONFIG, "GUARD_STORE_URL": "memory://"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("GUARD_FORCE_HTTPS", "false")
    monkeypatch.setenv("GUARD_ALLOW_PLAIN_HTTP", "true")
    paths = {}
    for name, text in readme_files("OpenAPI and docs pages").items():
        paths[name] = tmp_path / name
        paths[name].write_text(text)
    return paths


@pytest.mark.parametrize(
    ("example", "scopes"),
    [
        ("apiflask_app.py", {"GuardBearer": ["orders:read"]}),
        ("smorest_app.py", {"GuardBearer": []}),  # 3.0: scopes in x-required-scopes
    ],
)
def test_the_readme_openapi_examples_work_as_written(
    openapi_examples: dict[str, Path], example: str, scopes: dict[str, Any]
) -> None:
    app = runpy.run_path(str(openapi_examples[example]))["app"]
    client = app.test_client()
    doc = client.get("/openapi.json").json
    validate(doc)
    assert doc["paths"]["/orders/{order_id}"]["get"]["security"] == [scopes]
    assert client.get("/docs").status_code == 200
    assert client.get("/orders/1").status_code == 401


def test_the_readme_docs_example_serves_swagger_ui_from_the_app(
    openapi_examples: dict[str, Path],
) -> None:
    # In a browser: tests/frameworks/test_docs_in_browser.py drives this same app.
    app = runpy.run_path(str(openapi_examples["docs_app.py"]))["app"]
    client = app.test_client()
    page = client.get("/docs")
    assert page.status_code == 200
    assert b"/swagger-ui/swagger-ui-bundle.js" in page.data  # no CDN
    script_src = page.headers["Content-Security-Policy"].split("script-src ")[1].split(";")[0]
    assert script_src.startswith("'self' 'nonce-")
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"):
        with client.get(f"/swagger-ui/{asset}") as served_file:  # a file: close it
            assert served_file.status_code == 200, asset
    own_page = client.get("/swagger-ui/").headers["Content-Security-Policy"]
    assert "'unsafe-inline'" not in own_page.split("style-src")[0]
    api = client.get("/orders/1")
    assert api.status_code == 401
    assert api.headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
