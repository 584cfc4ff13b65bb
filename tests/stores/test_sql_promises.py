"""What every store promises, on the SQL store too (issue 25, item 4): the pytest plugin's
``guard_token``, the metrics of store latency, and the batch rotation script, each used
the way a team uses them on an app whose keys live in SQLite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from guard import Guard
from tests.conftest import BASE_CONFIG, LOCAL_CONFIG, Api

ROOT = Path(__file__).resolve().parents[2]


def test_the_plugins_guard_token_issues_keys_on_the_sql_store(
    sqlite_url: str, guard_token: Callable[..., str]
) -> None:
    app = Flask("orders")
    app.config.update(BASE_CONFIG, GUARD_STORE_URL=sqlite_url, PREFERRED_URL_SCHEME="https")
    guard = Guard(app)

    @app.get("/orders")
    @guard.require("orders:read")
    def orders() -> object:
        return {"caller": guard.current_key.name if guard.current_key else None}

    token = guard_token(app, "orders:read", name="ci")
    response = app.test_client().get("/orders", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200 and response.json == {"caller": "ci"}


def test_store_latency_is_measured_on_the_sql_store(sqlite_url: str) -> None:
    api = Api(GUARD_STORE_URL=sqlite_url, GUARD_METRICS=True)
    token = api.issue()
    scraper = api.issue("prometheus", scopes=["metrics:read"])
    assert api.client.get("/orders", headers=api.bearer(token)).status_code == 200
    text = api.client.get("/metrics", headers=api.bearer(scraper)).text
    counts = {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert counts["guard_store_seconds_count"] >= 1


def test_the_batch_rotation_script_rotates_keys_on_the_sql_store(
    sqlite_url: str, tmp_path: Path
) -> None:
    api = Api(**{**LOCAL_CONFIG, "GUARD_STORE_URL": sqlite_url})
    api.issue("old")
    env = {
        **os.environ,
        **{name: str(value) for name, value in BASE_CONFIG.items()},
        "GUARD_STORE_URL": sqlite_url,
    }
    output = tmp_path / "new-tokens.jsonl"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "rotate_keys.py"),
            "--max-age",
            "0s",
            "--grace",
            "1h",
            "--output",
            str(output),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    [line] = output.read_text().splitlines()
    rotated = json.loads(line)
    assert rotated["name"] == "old" and rotated["token"].startswith("gk_")
    response = api.client.get("/orders", headers=api.bearer(rotated["token"]))
    assert response.status_code == 200
