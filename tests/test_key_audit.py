"""Key operations audited (issue 24, item 7): every change to a key writes one entry on
``guard.audit``, shown by the `guard` command on stderr and sent to the Redis audit
stream when one is configured; never a token, secret or digest."""

from __future__ import annotations

import getpass
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from guard import Keys, TokenCodec, WriteUnconfirmed
from stores import from_url
from tests.conftest import PEPPER, SECRET, Api, Clock
from tests.test_key_writes import LossyStore

GUARD = Path(sys.executable).with_name("guard")  # the console script pip installed
ROOT = Path(__file__).resolve().parents[1]


def run(
    command: list[str], stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        env={"PATH": "/usr/bin:/bin", "GUARD_SECRET_KEY": SECRET, "GUARD_PEPPER": PEPPER, **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def guard(url: str, *args: str, stdin: str | None = None, **env: str) -> Any:
    done = run([str(GUARD), "--store", url, *args], stdin, **env)
    assert done.returncode == 0, done.stderr
    return done


def entries(stderr: str) -> list[dict[str, Any]]:
    """The audit entries among a command's stderr lines."""
    return [json.loads(line) for line in stderr.splitlines() if line.startswith('{"ts":')]


def notices(stderr: str) -> str:
    """A command's stderr without its audit entries: its own notices, as before."""
    return "".join(
        line for line in stderr.splitlines(keepends=True) if not line.startswith('{"ts":')
    )


def test_every_operation_writes_one_entry_naming_the_actor_and_what_changed(
    sqlite_url: str,
) -> None:
    outputs: list[str] = []
    logged: list[dict[str, Any]] = []

    def entry(*args: str, stdin: str | None = None) -> tuple[dict[str, Any], str]:
        done = guard(sqlite_url, "--actor", "ops-alice", "keys", *args, stdin=stdin)
        outputs.extend([done.stdout, done.stderr])
        [found] = entries(done.stderr)
        assert found["actor"] == "ops-alice"
        logged.append(found)
        return found, done.stdout

    created, out = entry("create", "--name", "ci", "--scopes", "a", "--json")
    token, key_id = json.loads(out)["token"], json.loads(out)["id"]
    assert (created["event"], created["key_id"], created["key_name"]) == (
        "key.created",
        key_id,
        "ci",
    )
    assert created["values"]["scopes"] == ["a"] and "digest" in created["changed"]

    updated, _ = entry("update", key_id, "--scopes", "a,b", "--allow-from", "10.0.0.0/8")
    assert updated["event"] == "key.updated"
    assert updated["changed"] == ["allow_from", "scopes"]
    assert updated["values"] == {"allow_from": ["10.0.0.0/8"], "scopes": ["a", "b"]}

    disabled, _ = entry("disable", key_id)
    enabled, _ = entry("enable", key_id)
    assert (disabled["event"], disabled["values"]) == ("key.disabled", {"disabled": True})
    assert (enabled["event"], enabled["values"]) == ("key.enabled", {"disabled": False})

    rotated, out = entry("rotate", key_id, "--grace", "1h", "--json")
    successor = json.loads(out)
    assert (rotated["event"], rotated["key_id"]) == ("key.rotated", key_id)
    assert rotated["values"]["replaced_by"] == successor["id"]
    assert rotated["changed"] == ["grace_until", "replaced_by"]

    revoked, _ = entry("revoke", successor["id"])
    assert (revoked["event"], revoked["key_id"], revoked["changed"]) == (
        "key.revoked",
        successor["id"],
        ["revoked_at"],
    )

    imported, _ = entry("import", "--name", "legacy", stdin="legacy-secret-2019\n")
    assert imported["event"] == "key.imported" and imported["values"]["imported"] is True

    # Never a token, a secret or a digest, in any entry or anything else printed.
    digests = [record.digest for record in from_url(sqlite_url).records()]
    secrets = [token, token.split(".")[1], successor["token"].split(".")[1], "legacy-secret-2019"]
    printed = "".join(outputs).replace(token, "").replace(successor["token"], "")
    for value in [*digests, *secrets]:
        assert value not in printed
    assert all("digest" not in found["values"] for found in logged)


def test_without_actor_the_os_user_is_named(sqlite_url: str) -> None:
    done = guard(sqlite_url, "keys", "create", "--name", "ci")
    [found] = entries(done.stderr)
    assert found["actor"] == getpass.getuser()


def test_a_failed_command_writes_no_entry(sqlite_url: str) -> None:
    done = run([str(GUARD), "--store", sqlite_url, "keys", "revoke", "ffffffffffffffff"])
    assert done.returncode == 1 and entries(done.stderr) == []


def test_the_rotation_script_writes_the_entries_too(sqlite_url: str, tmp_path: Path) -> None:
    key_id = json.loads(guard(sqlite_url, "keys", "create", "--name", "svc", "--json").stdout)["id"]
    output = tmp_path / "tokens.jsonl"
    done = run(
        [sys.executable, "scripts/rotate_keys.py", "--name", "svc", "--output", str(output)],
        GUARD_STORE_URL=sqlite_url,
    )
    assert done.returncode == 0, done.stderr
    [found] = entries(done.stderr)
    assert (found["event"], found["key_id"]) == ("key.rotated", key_id)
    assert json.loads(output.read_text())["token"].split(".")[1] not in done.stderr


def test_update_mid_rotation_writes_one_entry_per_key_changed(
    keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="guard.audit")
    _, old = keys.create("ci", scopes=["a"])
    _, new = keys.rotate(old.key_id, grace=3600)
    caplog.clear()
    keys.update(new.key_id, scopes=["b"])
    changed = [(r.key_id, r.event, r.values) for r in caplog.records]  # type: ignore[attr-defined]
    assert sorted(changed) == sorted(
        [
            (new.key_id, "key.updated", {"scopes": ["b"]}),
            (old.key_id, "key.updated", {"scopes": ["b"]}),
        ]
    )


def test_the_entry_has_the_request_entries_shape(
    keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="guard.audit")
    keys.actor = "deploy-bot"
    keys.create("ci", rate_limit="5/minute")
    [logged] = caplog.records
    line = json.loads(logged.getMessage())
    # On the trail's child logger: the trail's handlers get it, by propagation.
    assert logged.name == "guard.audit.keys" and logged.levelno == logging.INFO
    # Every field is an attribute of the record, for JSON formatters, and the message
    # is the same entry as one compact JSON line.
    assert {name: getattr(logged, name) for name in line} == line
    assert logged.getMessage() == json.dumps(line, separators=(",", ":"))
    assert line["actor"] == "deploy-bot" and line["values"]["rate_limit"] == "5/minute"
    fields = ["ts", "event", "key_id", "key_name", "owner", "actor", "changed", "values"]
    assert list(line) == [*fields, "confirmed"]
    assert line["confirmed"] is True


def test_an_apps_own_key_operations_are_audited(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="guard.audit")
    api = Api()
    api.issue("partner")
    [logged] = [r for r in caplog.records if r.getMessage().startswith('{"ts"')]
    assert json.loads(logged.getMessage())["event"] == "key.created"


@pytest.mark.redis
def test_the_redis_audit_stream_receives_the_entry(redis_url: str, sqlite_url: str) -> None:
    stream = {"GUARD_AUDIT_STREAM_URL": redis_url, "GUARD_AUDIT_STREAM_KEY": "ops:audit"}
    done = guard(sqlite_url, "--actor", "ops-bob", "keys", "create", "--name", "ci", **stream)
    [shown] = entries(done.stderr)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        # Read at once: the command sends its entries before it exits.
        [(_, fields)] = client.xrange("ops:audit")
    finally:
        client.close()
    assert json.loads(fields["entry"]) == shown
    assert shown["actor"] == "ops-bob" and shown["event"] == "key.created"


def test_a_write_the_store_did_not_confirm_is_audited_as_unconfirmed(
    codec: TokenCodec, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="guard.audit")
    store = LossyStore()
    keys = Keys(store, codec, clock=clock)
    store.losses = 2  # applied, but neither the write nor its check answered
    with pytest.raises(WriteUnconfirmed) as raised:
        keys.create("alice")
    # Its token may work: the trail says the key may exist, and that it is unsure.
    [entry] = [json.loads(r.getMessage()) for r in caplog.records]
    assert (entry["event"], entry["confirmed"]) == ("key.created", False)
    assert raised.value.record is not None and entry["key_id"] == raised.value.record.key_id


def test_owner_changes_and_owned_keys_are_audited_with_the_owner(sqlite_url: str) -> None:
    made = guard(
        sqlite_url,
        "--actor",
        "ops-carol",
        "owners",
        "set",
        "acme",
        "--rate-limit",
        "100/minute",
        "--quota",
        "1000",
        "--quota-refill",
        "monthly",
    )
    [set_entry] = entries(made.stderr)
    assert (set_entry["event"], set_entry["owner"], set_entry["actor"]) == (
        "owner.set",
        "acme",
        "ops-carol",
    )
    assert set_entry["changed"] == ["quota", "rate_limit"]
    assert set_entry["values"]["quota"]["allowance"] == 1000
    changed = guard(sqlite_url, "owners", "set", "acme", "--rate-limit", "200/minute")
    assert [e["changed"] for e in entries(changed.stderr)] == [["rate_limit"]]
    created = guard(sqlite_url, "keys", "create", "--name", "ci", "--owner", "acme", "--json")
    [key_entry] = entries(created.stderr)
    assert (key_entry["event"], key_entry["owner"]) == ("key.created", "acme")
    removed = guard(sqlite_url, "owners", "unset", "acme")
    [unset_entry] = entries(removed.stderr)
    assert (unset_entry["event"], unset_entry["owner"]) == ("owner.unset", "acme")
