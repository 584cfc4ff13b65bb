"""``flask guard`` on an app with metrics on does what it does with them off: the
commands see the app's own store, not a timing wrapper around it (issue 21)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stores import KeyRecord
from stores.env import parse_records, render_records
from stores.envfile import read_variable, write_variable
from tests.conftest import PEPPER, SECRET

FLASK = Path(sys.executable).with_name("flask")  # the console script pip installed

APP = """
import os
from flask import Flask
from guard import Guard

def create_app():
    app = Flask(__name__)
    app.config.update(
        GUARD_SECRET_KEY={secret!r},
        GUARD_PEPPER={pepper!r},
        GUARD_STORE_URL=os.environ["APP_STORE_URL"],
        GUARD_METRICS=os.environ["APP_METRICS"] == "true",
        GUARD_ALLOW_PLAIN_HTTP=True,
    )
    Guard(app)
    return app
"""

ALICE = KeyRecord("0123456789abcdef", "alice", "a" * 64, "p1", 1.0)


def flask_guard(
    directory: Path, store_url: str, metrics: bool, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """``flask --app keysapp guard ARGS`` as an operator types it, in ``directory``."""
    return subprocess.run(
        [str(FLASK), "--app", "keysapp:create_app", "guard", *args],
        env={
            "PATH": "/usr/bin:/bin",
            "APP_STORE_URL": store_url,
            "APP_METRICS": "true" if metrics else "false",
            **env,
        },
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    (tmp_path / "keysapp.py").write_text(APP.format(secret=SECRET, pepper=PEPPER))
    return tmp_path


@pytest.mark.parametrize("metrics", [False, True], ids=["metrics-off", "metrics-on"])
def test_create_on_memory_is_refused_as_lost_at_exit(directory: Path, metrics: bool) -> None:
    done = flask_guard(directory, "memory://", metrics, "keys", "create", "--name", "ci")
    assert done.returncode == 1, done.stdout
    assert "MemoryStore keeps keys only inside this process" in done.stderr
    assert "gk_" not in done.stdout + done.stderr  # no token for a key about to be lost


def create_on_env(
    directory: Path, metrics: bool, *options: str
) -> subprocess.CompletedProcess[str]:
    """``flask guard keys create`` on the app's ``env://APP_KEYS``, which holds alice."""
    done = flask_guard(
        directory,
        "env://APP_KEYS",
        metrics,
        *("keys", "create", "--name", "ci", "--json", *options),
        APP_KEYS=render_records([ALICE]),
    )
    assert done.returncode == 0, done.stderr
    return done


def names(path: Path) -> list[str]:
    """The key names ``APP_KEYS`` holds in the .env file at ``path``."""
    records = parse_records(read_variable(path, "APP_KEYS") or "", "APP_KEYS")
    return sorted(record.name for record in records.values())


@pytest.mark.parametrize("metrics", [False, True], ids=["metrics-off", "metrics-on"])
def test_create_on_env_prints_the_variables_new_value(directory: Path, metrics: bool) -> None:
    done = create_on_env(directory, metrics)
    assert "# APP_KEYS is read-only at run time: set it to this value" in done.stdout
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("APP_KEYS=")]
    printed = directory / "printed.env"
    printed.write_text(line + "\n")
    assert names(printed) == ["alice", "ci"]


@pytest.mark.parametrize("metrics", [False, True], ids=["metrics-off", "metrics-on"])
def test_create_on_env_with_env_file_writes_the_file(directory: Path, metrics: bool) -> None:
    env_file = directory / ".env"
    write_variable(env_file, "APP_KEYS", render_records([ALICE]))
    done = create_on_env(directory, metrics, "--env-file", str(env_file))
    assert json.loads(done.stdout)["name"] == "ci"
    assert names(env_file) == ["alice", "ci"]
