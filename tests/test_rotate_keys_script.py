"""``scripts/rotate_keys.py --help`` prints a usage line that works when typed.

Review round 3, item 24 (in part): the usage read ``rotate_keys.py keys rotate-due
[OPTIONS]``, a command line that fails however it is typed.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PEPPER, SECRET

ROOT = Path(__file__).resolve().parents[1]
WITH_VENV = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])


@pytest.mark.parametrize("path", [WITH_VENV, os.environ["PATH"]], ids=["venv on PATH", "not"])
def test_the_printed_usage_runs_when_typed(path: str) -> None:
    env = {
        **os.environ,
        "PATH": path,
        "GUARD_SECRET_KEY": SECRET,
        "GUARD_PEPPER": PEPPER,
        "GUARD_STORE_URL": "env://GUARD_KEYS",
    }
    env.pop("GUARD_KEYS", None)
    helped = subprocess.run(
        [sys.executable, "scripts/rotate_keys.py", "--help"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    usage = " ".join(helped.stdout.split("\n\n", 1)[0].split())
    assert usage.startswith("Usage: ") and usage.endswith(" [OPTIONS]")
    typed = usage.removeprefix("Usage: ").replace("[OPTIONS]", "--name 'partner-*' --dry-run")
    # Through a shell, as an operator types it: that is what the usage line is for.
    done = subprocess.run(  # noqa: S602
        typed, shell=True, cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "0 keys due; nothing changed (dry run)\n"
    assert "keys rotate-due" not in usage and "scripts/rotate_keys.py" in shlex.split(typed)
