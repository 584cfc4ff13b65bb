"""The README's examples, run as written: a test fails when an example stops working."""

from __future__ import annotations

import json
import os
import re
import subprocess
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import LOCAL_CONFIG, PEPPER, SECRET, Api
from tests.guard_command import GUARD

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks(section: str, language: str) -> list[str]:
    """The fenced ``language`` blocks under the README heading ``section``."""
    text = README.read_text()
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    body = text[start : end if end != -1 else len(text)]
    return re.findall(rf"```{language}\n(.*?)```", body, flags=re.DOTALL)


def run_block(code: str, **names: object) -> types.SimpleNamespace:
    namespace: dict[str, object] = {"__name__": "readme_example", **names}
    exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 - our own README
    return types.SimpleNamespace(**namespace)


@pytest.fixture
def guard_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in LOCAL_CONFIG.items():
        monkeypatch.setenv(name, str(value))
    yield
    assert "GUARD_SECRET_KEY" in os.environ


def test_using_the_guard_example(guard_environment: None) -> None:
    usage, handler = blocks("Using the guard", "python")
    example = run_block(usage)
    app = example.create_app()
    client = app.test_client()
    guard = example.guard
    with app.app_context():
        reader, _ = guard.keys.create("alice", scopes=["orders:read"])
        admin, _ = guard.keys.create("root", scopes=["admin"])
    assert client.get("/health").status_code == 200
    assert client.get("/orders").status_code == 401
    orders = client.get("/orders", headers=Api.bearer(reader))
    assert orders.status_code == 200 and orders.json == {"orders": [], "caller": "alice"}
    assert client.get("/admin/users", headers=Api.bearer(reader)).status_code == 403
    assert client.get("/admin/users", headers=Api.bearer(admin)).status_code == 200
    assert client.post("/reports", headers=Api.bearer(reader)).status_code == 202

    rendered = example.create_app()
    run_block(handler, app=rendered)
    refused = rendered.test_client().get("/orders")
    assert refused.json == {
        "title": "Unauthorized",
        "status": 401,
        "request_id": refused.headers["X-Request-ID"],
    }
    assert refused.headers["WWW-Authenticate"] == 'Bearer realm="api"'


def test_the_api_key_header_example(guard_environment: None) -> None:
    [example] = blocks("Settings", "python")
    run_block(example)  # its asserts are the client's view


def test_the_address_allowlist_example(guard_environment: None) -> None:
    [example] = blocks("Operating keys: the `guard` command", "python")
    run_block(example)  # its asserts are the client's view


def test_the_settings_table_gives_the_defaults_the_guard_has() -> None:
    text = README.read_text()
    start = text.index("\n## Settings\n")
    table = text[start : text.index("\n## ", start + 1)]
    rows = re.findall(r"^\| `(GUARD_\w+)` \| ([^|]+) \|", table, flags=re.MULTILINE)
    example = dict(
        re.findall(r"^(GUARD_\w+)=(.*)$", (README.parent / ".env.example").read_text(), re.M)
    )
    assert len(rows) >= 10
    for name, default in rows:
        stated = default.strip().strip("`")
        expected = example[name] or (
            "(required)" if "SECRET" in name or "PEPPER" in name else "(none)"
        )
        assert stated == expected, name


def shell(store_url: str, cwd: Path) -> Callable[[str], subprocess.CompletedProcess[str]]:
    """Runs a README sh block's lines with bash as written (``set -euo pipefail``), the
    installed ``guard`` on the PATH, the secrets and ``GUARD_STORE_URL`` set."""
    env = {
        "PATH": f"{GUARD.parent}:/usr/bin:/bin",
        "GUARD_SECRET_KEY": SECRET,
        "GUARD_PEPPER": PEPPER,
        "GUARD_STORE_URL": store_url,
    }

    def run(script: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            env=env,
            cwd=cwd,
            text=True,
            capture_output=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done

    return run


def test_the_usage_quotas_example(guard_environment: None) -> None:
    [example] = blocks("Usage quotas", "python")
    run_block(example)  # its asserts are the client's view


def test_the_usage_quotas_commands_run_as_written(sqlite_url: str, tmp_path: Path) -> None:
    [commands] = blocks("Usage quotas", "sh")
    bash = shell(sqlite_url, tmp_path)
    create, update = commands.split("\nguard keys update ", 1)
    bash(create)
    listed = json.loads(bash("guard keys list --json").stdout)
    acme = next(row["id"] for row in listed if row["name"] == "acme")
    shown = {row["name"]: row["quota"] for row in listed}
    assert shown["acme"].startswith("10000 monthly since ")
    assert shown["trial"].startswith("500 lifetime since ")
    bash("guard keys update " + update.replace("0123456789abcdef", acme))
    assert json.loads(bash(f"guard keys show {acme} --json").stdout)["quota"] is None


def test_the_owners_example(guard_environment: None) -> None:
    [example] = blocks("Owners", "python")
    run_block(example)  # its asserts are the client's view


def test_the_owners_commands_run_as_written(sqlite_url: str, tmp_path: Path) -> None:
    [commands] = blocks("Owners", "sh")
    bash = shell(sqlite_url, tmp_path)
    setup, rest = commands.split("\nguard owners unset ", 1)
    done = bash(setup)
    assert "acme-ci" in done.stdout and "acme-web" in done.stdout  # keys list --owner
    assert "keys         2" in done.stdout  # owners show
    assert (tmp_path / "ci-token.txt").read_text().startswith("gk_")
    assert "unset owner acme" in bash("guard owners unset " + rest).stderr
