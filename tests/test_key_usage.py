"""`guard keys usage ID` and `guard keys reset-limits ID` (issue 24, item 6): an operator
reads a key's windows from the limiter the service counts in, and clears them, from
another process, as on a real deployment (a real redis-server)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from guard._counting.leases import RECHECK
from tests.conftest import PEPPER, SECRET, Api

GUARD = Path(sys.executable).with_name("guard")  # the console script pip installed

pytestmark = pytest.mark.redis


def guard(
    store: str, *args: str, actor: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    named = [] if actor is None else ["--actor", actor]
    return subprocess.run(
        [str(GUARD), "--store", store, *named, "keys", *args],
        env={"PATH": "/usr/bin:/bin", "GUARD_SECRET_KEY": SECRET, "GUARD_PEPPER": PEPPER, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def usage(store: str, key_id: str, limiter: str) -> dict[str, Any]:
    done = guard(store, "usage", key_id, "--json", GUARD_RATELIMIT_STORAGE_URL=limiter)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@pytest.fixture
def api(redis_url: str, sqlite_url: str) -> Any:
    api = Api(GUARD_STORE_URL=sqlite_url, GUARD_RATELIMIT_STORAGE_URL=redis_url)
    yield api
    api.close()


def key_of(api: Api, token: str) -> str:
    return token.split(".")[0].removeprefix("gk_")


def test_usage_shows_each_windows_count_and_reset_without_counting_a_request(
    api: Api, redis_url: str, sqlite_url: str
) -> None:
    token = api.issue(rate_limit="3/minute;100/day")
    key_id = key_of(api, token)
    assert [api.client.get("/orders", headers=api.bearer(token)).status_code for _ in "abc"] == [
        200
    ] * 3
    with api.app.app_context():
        api.guard.keys.flush_uses()
    found = usage(sqlite_url, key_id, redis_url)
    minute, day = found["windows"]
    assert (minute["policy"], minute["limit"], minute["used"], minute["remaining"]) == (
        "key",
        "3 per 1 minute",
        3,
        0,
    )
    assert (day["policy"], day["used"], day["remaining"]) == ("key-2", 3, 97)
    assert 0 < minute["reset_in"] <= 60 and 86_000 < day["reset_in"] <= 86_400
    assert found["last_used"] is not None and found["includes_leased_units"] is True
    # Reading counted nothing: read again, the same counts.
    assert [w["used"] for w in usage(sqlite_url, key_id, redis_url)["windows"]] == [3, 3]

    text = guard(sqlite_url, "usage", key_id, GUARD_RATELIMIT_STORAGE_URL=redis_url)
    assert "key      3 per 1 minute       3 used, 0 left, resets in" in text.stdout
    assert "counts include units leased to workers and not yet spent" in text.stderr


def test_units_leased_to_a_worker_are_counted_before_they_are_spent(
    api: Api, redis_url: str, sqlite_url: str
) -> None:
    token = api.issue(rate_limit="100/minute")
    assert api.client.get("/orders", headers=api.bearer(token)).status_code == 200
    # The worker leased a quarter of the window (lua/lease.lua) and spent one unit.
    [window] = usage(sqlite_url, key_of(api, token), redis_url)["windows"]
    assert window["used"] == 25


def test_reset_limits_lets_a_key_over_its_limit_in_again_up_to_its_limit(
    api: Api, redis_url: str, sqlite_url: str
) -> None:
    token = api.issue(rate_limit="3/minute")
    key_id = key_of(api, token)

    def status() -> int:
        return int(api.client.get("/orders", headers=api.bearer(token)).status_code)

    assert [status() for _ in range(4)] == [200, 200, 200, 429]
    reset = guard(
        sqlite_url, "reset-limits", key_id, actor="oncall", GUARD_RATELIMIT_STORAGE_URL=redis_url
    )
    assert reset.returncode == 0, reset.stderr
    assert f"reset 1 window of {key_id}" in reset.stderr
    [entry] = [json.loads(line) for line in reset.stderr.splitlines() if line.startswith("{")]
    assert (entry["event"], entry["key_id"], entry["actor"]) == (
        "key.limits_reset",
        key_id,
        "oncall",
    )
    assert entry["values"] == {"windows": ["key"]}
    assert usage(sqlite_url, key_id, redis_url)["windows"][0]["used"] == 0

    # This worker found the window full: it asks the limiter again within RECHECK.
    started = time.monotonic()
    while status() == 429:
        assert time.monotonic() - started < RECHECK + 0.5
        time.sleep(0.05)
    assert [status() for _ in range(3)] == [200, 200, 429]  # 3 in all, then the limit


def test_an_in_process_limiter_has_nothing_to_read_and_says_so(api: Api, sqlite_url: str) -> None:
    key_id = key_of(api, api.issue())
    for command in ("usage", "reset-limits"):
        done = guard(sqlite_url, command, key_id)  # GUARD_RATELIMIT_STORAGE_URL: memory://
        assert done.returncode == 1 and done.stdout == ""
        assert "the limiter is memory:// (GUARD_RATELIMIT_STORAGE_URL)" in done.stderr


def test_an_unknown_key_is_one_line_and_exit_1(redis_url: str, sqlite_url: str) -> None:
    done = guard(sqlite_url, "usage", "ffffffffffffffff", GUARD_RATELIMIT_STORAGE_URL=redis_url)
    assert done.returncode == 1 and done.stderr.strip() == "Error: no key with id ffffffffffffffff"


def test_usage_shows_the_quota_and_the_owners_share_and_reset_can_clear_the_quota(
    api: Api, redis_url: str, sqlite_url: str
) -> None:
    with api.app.app_context():
        api.guard.keys.set_owner("acme", rate_limit="50/minute", quota=100)
    token = api.issue(rate_limit="10/minute", quota=5, quota_refill="monthly", owner="acme")
    key_id = key_of(api, token)
    assert [api.client.get("/orders", headers=api.bearer(token)).status_code for _ in "abc"] == [
        200
    ] * 3
    found = usage(sqlite_url, key_id, redis_url)
    assert [(w["policy"], w["used"]) for w in found["windows"]] == [("key", 3)]
    quota = found["quota"]
    assert (quota["allowance"], quota["used"], quota["remaining"], quota["refill"]) == (
        5,
        3,
        2,
        "monthly",
    )
    assert 0 < quota["refills_in"] <= 31 * 86_400
    owner = found["owner"]
    assert (owner["name"], owner["rate_limit"]) == ("acme", "50/minute")
    assert [(w["policy"], w["used"]) for w in owner["windows"]] == [("owner", 3)]
    assert (owner["quota"]["used"], owner["quota"]["refill"], owner["quota"]["refills_in"]) == (
        3,
        None,
        None,
    )
    text = guard(sqlite_url, "usage", key_id, GUARD_RATELIMIT_STORAGE_URL=redis_url).stdout
    assert "  quota    5                    3 used, 2 left, refills monthly, in " in text
    assert "  owner    50 per 1 minute      3 used, 47 left, resets in " in text
    assert "  owner-quota 100                  3 used, 97 left, never refills" in text

    reset = guard(
        sqlite_url, "reset-limits", key_id, "--quota", GUARD_RATELIMIT_STORAGE_URL=redis_url
    )
    assert f"reset 1 window and the quota of {key_id}" in reset.stderr
    after = usage(sqlite_url, key_id, redis_url)
    assert (after["windows"][0]["used"], after["quota"]["used"]) == (0, 0)
    # The owner's share is the owner's other keys' too: left as it was.
    assert (after["owner"]["windows"][0]["used"], after["owner"]["quota"]["used"]) == (3, 3)
