"""What the write commands save, the readers read: the installed ``guard`` command refuses
a record the stores would refuse, and one unreadable record hides no other key.

Review round 3, item 1: a name over 256 characters or with a control character, or a
metadata value over 1,024 characters, was saved; on Redis its token never worked and
``keys list`` / ``rotate-due`` failed for every key, on ``env://`` every later write and
the service's start-up failed.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import redis

from guard import Keys, TokenCodec
from stores import EnvStore, RedisStore
from tests.conftest import PEPPER, SECRET
from tests.test_cli import Shell

BAD_SETTINGS = {
    "a name over 256 characters": ["--name", "n" * 257],
    "a name with a control character": ["--name", "ops\x1b[2Jteam"],
    "a name with a line break": ["--name", "ops\nteam"],
    "a metadata value over 1,024 characters": ["--name", "ops", "--metadata", "n=" + "v" * 1025],
    "a metadata key with a control character": ["--name", "ops", "--metadata", "a\x07=v"],
}


@pytest.fixture
def redis_shell(tmp_path: Path, redis_url: str) -> Shell:
    return Shell(tmp_path, GUARD_STORE_URL=redis_url)


def listed(shell: Shell) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = json.loads(shell.ok("keys", "list", "--json").stdout)
    return rows


def assert_usage_error(done: subprocess.CompletedProcess[str], field: str) -> None:
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr  # one line
    assert done.stderr.startswith(f"Error: not saved: field {field!r} has an invalid value: ")


@pytest.mark.parametrize("settings", BAD_SETTINGS.values(), ids=BAD_SETTINGS.keys())
def test_create_refuses_a_record_redis_would_not_read_back(
    redis_shell: Shell, settings: list[str]
) -> None:
    done = redis_shell.guard("keys", "create", *settings)
    assert_usage_error(done, "metadata" if "--metadata" in settings else "name")
    assert done.stdout == ""  # no token that could never work
    assert listed(redis_shell) == []


def test_update_and_import_refuse_what_no_reader_reads(redis_shell: Shell) -> None:
    created = json.loads(redis_shell.ok("keys", "create", "--name", "ops", "--json").stdout)
    update = redis_shell.guard("keys", "update", created["id"], "--metadata", "n=" + "v" * 1025)
    assert_usage_error(update, "metadata")
    imported = redis_shell.guard("keys", "import", "--name", "x" * 300, stdin="legacy-secret\n")
    assert_usage_error(imported, "name")
    [row] = listed(redis_shell)
    assert row["id"] == created["id"] and row["metadata"] == {}
    assert redis_shell.ok("keys", "verify", stdin=created["token"] + "\n").returncode == 0


def test_an_env_file_keeps_only_records_the_service_starts_with(tmp_path: Path) -> None:
    shell = Shell(tmp_path, GUARD_STORE_URL="env://GUARD_KEYS")
    kept = json.loads(
        shell.ok("keys", "create", "--name", "ci", "--json", "--env-file", ".env").stdout
    )
    before = shell.env_file.read_text()
    done = shell.guard("keys", "create", "--name", "n" * 257, "--env-file", ".env")
    assert_usage_error(done, "name")
    assert shell.env_file.read_text() == before
    shell.ok("keys", "revoke", kept["id"], "--env-file", ".env")  # later writes still work
    assert EnvStore(environ=shell.sourced()).require(kept["id"]).revoked_at is not None


def plant_unreadable(url: str, key_id: str) -> None:
    """A record as an earlier version wrote it: a name the readers refuse."""
    record = {"id": key_id, "name": "n" * 300, "digest": "a" * 64, "pepper": "p", "created": 1}
    with redis.Redis.from_url(url) as raw:
        raw.set(f"guard:key:{key_id}", json.dumps(record))
        raw.sadd("guard:ids", key_id)


def test_list_and_rotate_due_name_an_unreadable_record_and_go_on(
    redis_shell: Shell, redis_url: str
) -> None:
    created = json.loads(redis_shell.ok("keys", "create", "--name", "ci", "--json").stdout)
    plant_unreadable(redis_url, "badbadbadbadbad0")
    listing = redis_shell.guard("keys", "list")
    assert listing.returncode == 1
    assert created["id"] in listing.stdout
    assert "unreadable: redis: unreadable record for key 'badbadbadbadbad0'" in listing.stderr
    assert listing.stderr.endswith(
        "Error: 1 record could not be read (named above): fix or delete them in the store\n"
    )
    as_json = redis_shell.guard("keys", "list", "--json")
    assert as_json.returncode == 1 and [r["id"] for r in json.loads(as_json.stdout)] == [
        created["id"]
    ]
    due = redis_shell.guard("keys", "rotate-due", "--name", "*", "--grace", "1h")
    assert due.returncode == 1 and "rotated 1 key" in due.stderr
    assert "unreadable: redis: unreadable record for key 'badbadbadbadbad0'" in due.stderr
    [rotation] = [json.loads(line) for line in due.stdout.splitlines()]
    assert rotation["old_id"] == created["id"]
    store = RedisStore(redis_url)
    try:
        assert Keys(store, TokenCodec([SECRET], [PEPPER])).verify(rotation["token"]).ok
    finally:
        store.close()
