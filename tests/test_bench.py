"""The README's "Measuring" commands run as written (tiny sizes: no timing is judged)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.redis_server import require_binary

ROOT = Path(__file__).resolve().parents[1]


def bench(module: str, *arguments: str) -> str:
    require_binary("redis-server")
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_bench_run_prints_every_app_with_ratios_and_round_trips() -> None:
    pytest.importorskip("flask_httpauth")
    table = bench("run", "--rounds", "1", "--calls", "20").splitlines()
    assert table[0].split() == [
        "app",
        "µs/req",
        "x",
        "bare",
        "x",
        "limit",
        "x",
        "floor",
        "round",
        "trips",
        "commands",
    ]
    end = next(n for n, line in enumerate(table) if line.startswith("("))
    rows = {line.split()[0]: line.split() for line in table[1:end]}
    assert set(rows) >= {
        *("bare", "limit", "floor", "peer", "peer_redis", "guard", "guard_redis", "guard_sql")
    }
    assert rows["guard_sql"][6] == "0.00"  # no Redis: its store is a SQLite file
    assert rows["guard_redis"][5] == "0.00"  # the key's lease is spent in process
    assert rows["guard"][5] == "0.00"
    goals = [line for line in table[end + 1 :] if "(goal <=" in line]
    assert [line.split(":")[0] for line in goals] == [
        "guard / bare",
        "guard / bare",
        "guard / limit",
        "guard_redis / limit",
        "guard_redis / floor",
        "guard_metrics / guard",
        "guard_sql / guard",
        "guard_redis / guard",
        "guard_redis round trips per request",
    ]
    assert "0.000 (goal <= 0.05, met)" in goals[-1]


def test_bench_verify_and_timing_run() -> None:
    table = bench("verify", "--calls", "50")
    assert "memory" in table and "sqlite store, cache warm" in table
    if os.environ.get("CI"):  # scripts/test installs PostgreSQL
        assert "postgresql store, cache warm" in table
    assert bench("timing", "--calls", "50", "--rounds", "2")


def test_bench_http_runs_under_gunicorn_and_wrk() -> None:
    if shutil.which("wrk") is None and not os.environ.get("CI"):
        pytest.skip("wrk is not installed (scripts/test installs it)")
    pytest.importorskip("flask_httpauth")
    table = bench("http", "--rounds", "1", "--duration", "1", "--only", "bare,guard")
    assert table.splitlines()[0].split()[:2] == ["app", "req/s"]
