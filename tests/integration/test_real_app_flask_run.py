"""The realistic app (tests/realapp) under `flask run`, as its developers run it: settings
in a .env that python-dotenv loads, keys written there by the guard command."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import PEPPER, SECRET, Api
from tests.gunicorn import ROOT, get
from tests.redis_server import free_port


def test_the_app_under_flask_run_with_a_dotenv_and_keys_written_by_the_guard_command(
    tmp_path: Path,
) -> None:
    # The development flow: settings in .env (flask run loads it through python-dotenv),
    # keys kept in it by `guard keys create --env-file .env`, werkzeug's threaded server.
    secrets = {"GUARD_SECRET_KEY": SECRET, "GUARD_PEPPER": PEPPER}
    settings = {**secrets, "GUARD_FORCE_HTTPS": "false", "GUARD_ALLOW_PLAIN_HTTP": "true"}
    dotenv = tmp_path / ".env"
    dotenv.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GUARD_")}
    created = subprocess.run(
        [
            str(Path(sys.executable).parent / "guard"),
            "--store",
            "env://GUARD_KEYS",
            "keys",
            "create",
            "--name",
            "dev",
            "--scopes",
            "catalog:read",
            "--env-file",
            str(dotenv),
        ],
        env={**environ, **secrets},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    bearer = Api.bearer(created.stdout.strip())
    with dotenv.open("a") as handle:
        handle.write("GUARD_STORE_URL=env://GUARD_KEYS\n")
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flask",
            "--app",
            "tests.realapp:create_app",
            "run",
            "--port",
            str(port),
            "--no-reload",
        ],
        cwd=tmp_path,
        env={**environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                assert get(f"{url}/ops/health") == 200
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.1)
        assert get(f"{url}/catalog/items") == 401
        assert get(f"{url}/catalog/items", bearer["Authorization"].split()[1]) == 200
        assert get(f"{url}/admin/stats", bearer["Authorization"].split()[1]) == 403
    finally:
        server.terminate()
        server.wait(15)
