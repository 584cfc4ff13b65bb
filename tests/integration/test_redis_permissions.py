"""Redis least privilege: every rule of the documented ACL is needed, and a missing one
is named, by the rule to add, wherever it shows: at start-up, by `guard store check`,
and once in the log when a request, the invalidation listener, a last-use write or the
audit stream meets it later."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from guard import ConfigurationError
from guard.cli.commands import cli
from guard.observability import audit
from guard.observability.audit_stream import RedisStreamHandler
from tests.conftest import PEPPER, SECRET, Api
from tests.integration.test_redis_acl import documented_acl

pytestmark = pytest.mark.redis
GUARD = Path(sys.executable).with_name("guard")
PASSWORD = "test-password"


@pytest.fixture
def guard_user(redis_url: str) -> Iterator[tuple[redis.Redis, str]]:
    """The documented ACL's user, and its URL; the admin connection to change it."""
    admin = redis.Redis.from_url(redis_url)
    admin.execute_command("ACL", "SETUSER", "guard", "reset", *documented_acl())
    yield admin, redis_url.replace("redis://", f"redis://guard:{PASSWORD}@")
    admin.execute_command("ACL", "DELUSER", "guard")
    admin.close()


def rules() -> list[str]:
    return [rule for rule in documented_acl() if rule not in ("on", "-@all") and rule[0] != ">"]


def take_away(admin: redis.Redis, rule: str) -> None:
    """Remove ``rule`` from the user, on its live connections too."""
    others = [r for r in rules() if r[0] == rule[0] and r != rule]
    if rule[0] == "+":
        change = ["-" + rule[1:]]
    else:  # key or channel patterns are reset, then the others given back
        change = ["resetkeys" if rule[0] == "~" else "resetchannels", *others]
    admin.execute_command("ACL", "SETUSER", "guard", *change)


def settings(url: str) -> dict[str, str]:
    return {
        "GUARD_STORE_URL": url,
        "GUARD_RATELIMIT_STORAGE_URL": url,
        "GUARD_AUDIT_STREAM_URL": url,
    }


def check(url: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["store", "check"], env=settings(url))
    return result.exit_code, result.output


def test_the_documented_acl_passes_the_check(guard_user: tuple[redis.Redis, str]) -> None:
    _, url = guard_user
    env = {**os.environ, **settings(url)}
    env.pop("GUARD_SECRET_KEY", None)  # the check reads no secret
    result = subprocess.run(
        [str(GUARD), "store", "check"], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("\nok ") + result.stdout.startswith("ok ") == 3
    assert PASSWORD not in result.stdout and "redis://***@" in result.stdout


@pytest.mark.parametrize("rule", rules())
def test_each_rule_is_needed_and_the_check_names_it(
    guard_user: tuple[redis.Redis, str], rule: str
) -> None:
    admin, url = guard_user
    take_away(admin, rule)
    status, output = check(url)
    assert status == 1
    if rule in ("+multi", "+discard"):
        assert "grant +multi +discard" in output
    elif rule.endswith("*"):  # a pattern: the keys under it are named
        assert f" {rule[:-1]}" in output, output
    else:
        assert f"{rule} (" in output, output
    assert PASSWORD not in output


def test_the_app_does_not_start_without_a_permission_it_needs(
    guard_user: tuple[redis.Redis, str],
) -> None:
    admin, url = guard_user
    take_away(admin, "+zadd")
    with pytest.raises(ConfigurationError) as raised:
        Api(**settings(url))
    message = str(raised.value)
    assert "GUARD_STORE_URL (redis://***@" in message
    assert "+zadd (last-use times)" in message and PASSWORD not in message


def test_the_cli_names_the_rule_a_write_lacks(guard_user: tuple[redis.Redis, str]) -> None:
    admin, url = guard_user
    take_away(admin, "+evalsha")
    env = {**os.environ, "GUARD_SECRET_KEY": SECRET, "GUARD_PEPPER": PEPPER}
    result = subprocess.run(
        [str(GUARD), "--store", url, "keys", "create", "--name", "x"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 1
    assert "+evalsha (writing key records)" in result.stderr
    assert PASSWORD not in result.stderr


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "stores.redis_acl" and r.levelno == logging.ERROR
    ]


@pytest.mark.parametrize(
    ("rule", "named"),
    [
        ("+get", "+get (reading key records; reading owner records)"),
        ("~LIMITS:*", "~LIMITS:* (counting rate limits; quota leases)"),
    ],
)
def test_a_request_refused_for_a_permission_is_logged_once_with_its_cause(
    guard_user: tuple[redis.Redis, str], caplog: pytest.LogCaptureFixture, rule: str, named: str
) -> None:
    admin, url = guard_user
    api = Api(GUARD_STORE_URL=url, GUARD_RATELIMIT_STORAGE_URL=url, GUARD_STORE_CACHE_TTL=0)
    try:
        token = api.issue()
        take_away(admin, rule)
        with caplog.at_level(logging.ERROR, logger="stores.redis_acl"):
            statuses = [api.client.get("/orders", headers=api.bearer(token)).status_code]
            statuses.append(api.client.get("/orders", headers=api.bearer(token)).status_code)
        assert statuses == [503, 503]
        [logged] = errors(caplog)
        assert named in logged and PASSWORD not in logged
    finally:
        api.close()


def test_background_work_refused_for_a_permission_is_logged_once(
    guard_user: tuple[redis.Redis, str], caplog: pytest.LogCaptureFixture
) -> None:
    admin, url = guard_user
    api = Api(**settings(url))
    [stream] = [h for h in audit.logger.handlers if isinstance(h, RedisStreamHandler)]
    try:
        token = api.issue()
        assert api.client.get("/orders", headers=api.bearer(token)).status_code == 200
        for rule in ("+zadd", "+xadd", "+subscribe"):
            take_away(admin, rule)
        # The listener is subscribed already: drop its connection, as a restart would.
        admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        with caplog.at_level(logging.WARNING):
            for _ in range(3):
                api.app.extensions["guard"].keys.flush_uses()  # the last-use batch: ZADD
                stream.flush()
            for _ in range(50):  # the listener reconnects every 0.2 s
                if any("'subscribe'" in line for line in errors(caplog)):
                    break
                time.sleep(0.1)
        logged = errors(caplog)
        for command, named in [
            ("zadd", "+zadd (last-use times)"),
            ("xadd", "+xadd (the audit stream)"),
            ("subscribe", "+subscribe (revocations reaching every worker)"),
        ]:
            [line] = [line for line in logged if f"run the '{command}' command" in line]
            assert named in line
        unsent = [r.getMessage() for r in caplog.records if r.name == "guard.unsent_audit"]
        assert any("+xadd (the audit stream)" in line for line in unsent)
    finally:
        audit.logger.removeHandler(stream)
        stream.close()
        api.close()
