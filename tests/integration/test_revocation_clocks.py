"""A revocation holds whatever the clocks of the revoking host and the service say.

Review round 3, item 2: ``revoked_at`` was judged as a schedule, so a key revoked from a
host whose clock ran 10 minutes ahead kept working for 10 minutes, ``show`` said
"active", and revoking again from a correct host kept the future time.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import Api
from tests.test_cli import Shell

AHEAD = 600.0

#: The `guard` command on a host whose clock runs ``AHEAD`` seconds fast: time.time is
#: skewed before the guard is imported, as the host's own clock would be.
SKEWED_GUARD = f"""
import sys, time
real = time.time
time.time = lambda: real() + {AHEAD}
from guard.cli.commands import main
main()
"""


def skewed_guard(shell: Shell, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SKEWED_GUARD, *args],
        env=shell.exported,
        cwd=shell.directory,
        capture_output=True,
        text=True,
        timeout=60,
    )


def epoch(iso: str) -> float:
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def orders(redis_url: str, token: str) -> int:
    """The status a freshly started service (its own, correct clock) answers."""
    api = Api(GUARD_STORE_URL=redis_url)
    try:
        return api.client.get("/orders", headers=api.bearer(token)).status_code
    finally:
        api.close()


def test_a_revocation_from_a_host_whose_clock_is_ahead_holds_at_once(
    tmp_path: Path, redis_url: str
) -> None:
    shell = Shell(tmp_path, GUARD_STORE_URL=redis_url)
    created = json.loads(
        shell.ok("keys", "create", "--name", "ci", "--scopes", "orders:read", "--json").stdout
    )
    assert orders(redis_url, created["token"]) == 200
    revoked = skewed_guard(shell, "keys", "revoke", created["id"], "--json")
    assert revoked.returncode == 0, revoked.stderr
    assert epoch(json.loads(revoked.stdout)["revoked"]) > time.time() + AHEAD / 2  # its clock

    assert orders(redis_url, created["token"]) == 401
    shown = json.loads(shell.ok("keys", "show", created["id"], "--json").stdout)
    assert shown["state"] == "revoked"
    assert json.loads(shell.ok("keys", "list", "--state", "revoked", "--json").stdout)

    again = json.loads(shell.ok("keys", "revoke", created["id"], "--json").stdout)
    assert epoch(again["revoked"]) <= time.time()  # the future time is not kept
    assert orders(redis_url, created["token"]) == 401
