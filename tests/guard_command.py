"""The installed ``guard`` command, run in a subprocess as an operator runs it: only
``PATH`` and the two secrets in its environment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import PEPPER, SECRET

GUARD = Path(sys.executable).with_name("guard")  # the console script pip installed


def guard(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``guard --store URL ARGS...``, its output captured as text."""
    env = {"PATH": "/usr/bin:/bin", "GUARD_SECRET_KEY": SECRET, "GUARD_PEPPER": PEPPER}
    return subprocess.run(
        [str(GUARD), "--store", url, *args], env=env, capture_output=True, text=True, timeout=60
    )


def guard_keys(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``guard --store URL keys ARGS...``."""
    return guard(url, "keys", *args)
