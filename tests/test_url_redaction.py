"""A Redis password in a store URL is never shown: not by the `guard` command, not in
the exception that stops the app, not in the server's log of it."""

from __future__ import annotations

import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
from flask import Flask

from guard import ConfigurationError, Guard
from stores import InvalidStoreURL
from stores.urls import redact
from tests.conftest import LOCAL_CONFIG, PEPPER, SECRET

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "Sup3rSecretPw"
GUARD = Path(sys.executable).with_name("guard")


def run_guard(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GUARD_SECRET_KEY": SECRET, "GUARD_PEPPER": PEPPER}
    return subprocess.run(
        [str(GUARD), *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


@pytest.mark.parametrize(
    "url",
    [
        f"redsi://guard:{PASSWORD}@127.0.0.1:1/0",  # unknown scheme
        f"redis://guard:{PASSWORD}@127.0.0.1:notaport/0",  # a port redis-py refuses
        f"redis://guard:{PASSWORD[:5]}/{PASSWORD[5:]}@127.0.0.1:1/0",  # '/' not encoded
        f"redis+sentinel://guard:{PASSWORD}@127.0.0.1:1",  # no service named
        f"redis://127.0.0.1:1/0?password={PASSWORD}",  # unreachable, password as option
    ],
)
def test_the_cli_never_prints_the_password_of_a_store_url(url: str) -> None:
    result = run_guard("--store", url, "keys", "list")
    assert result.returncode == 1, result.stderr
    output = result.stdout + result.stderr
    for piece in (PASSWORD, PASSWORD[:5], PASSWORD[5:]):
        assert piece not in output
    assert "Traceback" not in output


def test_a_bad_scheme_is_named_with_the_url_redacted() -> None:
    result = run_guard("--store", f"redsi://guard:{PASSWORD}@h/0", "keys", "list")
    assert "'redsi://***@h/0'" in result.stderr


@pytest.mark.parametrize(
    "setting", ["GUARD_STORE_URL", "GUARD_RATELIMIT_STORAGE_URL", "GUARD_AUDIT_STREAM_URL"]
)
@pytest.mark.parametrize(
    "url",
    [
        f"nosuch://guard:{PASSWORD}@h/0",
        f"redis+sentinel://guard:{PASSWORD}@127.0.0.1:1",
        f"redis://guard:{PASSWORD[:5]}/{PASSWORD[5:]}@127.0.0.1:1/0",
    ],
)
def test_the_exception_that_stops_the_app_shows_no_password(setting: str, url: str) -> None:
    app = Flask("api")
    app.config.update({**LOCAL_CONFIG, setting: url})
    with pytest.raises((ConfigurationError, InvalidStoreURL)) as raised:
        Guard(app)
    assert "***" in str(raised.value)
    # What a server logs of it: the whole traceback, chained exceptions included.
    logged = "".join(traceback.format_exception(raised.value))
    assert PASSWORD not in logged and PASSWORD[5:] not in logged


def test_the_server_log_of_a_failed_start_shows_no_password() -> None:
    env = {
        **os.environ,
        "GUARD_SECRET_KEY": SECRET,
        "GUARD_PEPPER": PEPPER,
        "GUARD_STORE_URL": f"nosuch://guard:{PASSWORD}@h/0",
        "GUARD_RATELIMIT_STORAGE_URL": f"nosuch://guard:{PASSWORD}@h/0",
    }
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--bind", "127.0.0.1:0", "demo_app:create_app()"],
        cwd=ROOT / "scripts",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "nosuch://***@h/0" in result.stderr
    assert PASSWORD not in result.stdout + result.stderr


def test_redact_masks_userinfo_and_password_options() -> None:
    assert redact("rediss://guard:pw@redis:6380/0?ssl_ca_certs=/ca.pem&password=x") == (
        "rediss://***@redis:6380/0?ssl_ca_certs=/ca.pem&password=***"
    )
    assert redact("redis+sentinel://:p@ss@s1:26379,s2:26379/m") == (
        "redis+sentinel://***@s1:26379,s2:26379/m"
    )
    assert redact("memory://") == "memory://"
