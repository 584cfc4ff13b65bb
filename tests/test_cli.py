"""The `guard` command, driven through click's runner and as a real process."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from guard import Keys, Reason, TokenCodec
from guard.cli import cli
from stores import KeyRecord, MemoryStore, RedisStore
from tests.conftest import PEPPER, SECRET, Clock

HOUR = 3600.0


@pytest.fixture
def keys(clock: Clock) -> Keys:
    return Keys(MemoryStore(), TokenCodec([SECRET], [PEPPER]), clock=clock)


def run(keys: Keys, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["keys", *args], obj=keys, input=stdin)


def create(keys: Keys, *args: str) -> dict[str, str]:
    result = run(keys, "create", "--name", "alice", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_create_prints_the_token_once_and_stores_only_its_digest(keys: Keys) -> None:
    created = create(keys, "--scopes", "orders:read,orders:write", "--rate-limit", "5/second")
    record = keys.store.require(created["id"])
    assert record.scopes == ("orders:read", "orders:write") and record.rate_limit == "5/second"
    assert keys.verify(created["token"]).ok
    plain = run(keys, "create", "--name", "bob")
    assert plain.stdout.strip().startswith("gk_") and "shown only once" in plain.stderr


def test_list_and_show_never_print_a_token_or_digest(keys: Keys) -> None:
    created = create(keys, "--expires-in", "90d")
    record = keys.store.require(created["id"])
    secret = created["token"].split(".")[1]
    outputs = [
        run(keys, "list").output,
        run(keys, "list", "--json").output,
        run(keys, "show", created["id"]).output,
        run(keys, "show", created["id"], "--json").output,
    ]
    for output in outputs:
        assert created["id"] in output
        assert secret not in output and record.digest not in output and "gk_" not in output
    assert json.loads(outputs[1])[0]["state"] == "active"


def test_rotation_keeps_the_old_key_through_grace_then_refuses_it_as_rotated(
    keys: Keys, clock: Clock
) -> None:
    old = create(keys, "--scopes", "a", "--rate-limit", "9/minute")
    rotated = run(keys, "rotate", old["id"], "--grace", "24h", "--json")
    assert rotated.exit_code == 0
    new = json.loads(rotated.stdout)
    successor = keys.store.require(new["id"])
    assert (successor.name, successor.scopes, successor.rate_limit) == ("alice", ("a",), "9/minute")
    clock.advance(24 * HOUR - 1)
    assert keys.verify(old["token"]).ok and keys.verify(new["token"]).ok
    clock.advance(1)
    assert keys.verify(old["token"]).reason is Reason.ROTATED
    assert (
        run(keys, "verify", stdin=old["token"] + "\n").stderr.strip() == "Error: invalid: rotated"
    )


def test_show_tells_when_a_key_in_grace_was_last_used(keys: Keys, clock: Clock) -> None:
    old = create(keys)
    run(keys, "rotate", old["id"], "--grace", "1h")
    keys.store.touch({old["id"]: clock.now})
    shown = json.loads(run(keys, "show", old["id"], "--json").stdout)
    assert shown["state"] == "in grace period"
    assert shown["last_used"] is not None and shown["valid_until"] is not None


def test_revoke_takes_effect_at_once(keys: Keys) -> None:
    created = create(keys)
    assert run(keys, "revoke", created["id"]).exit_code == 0
    assert keys.verify(created["token"]).reason is Reason.REVOKED


def test_verify_reads_standard_input_and_says_why_not(keys: Keys) -> None:
    created = create(keys)
    valid = run(keys, "verify", stdin=created["token"] + "\n")
    assert valid.exit_code == 0 and "valid: key" in valid.stdout
    bad = run(keys, "verify", stdin="gk_nope\n")
    assert bad.exit_code == 1 and "malformed" in bad.stderr
    assert run(keys, "verify", stdin="").exit_code == 2


def test_import_hashes_a_secret_from_standard_input(keys: Keys) -> None:
    result = run(keys, "import", "--name", "legacy", stdin="old-plain-secret\n")
    assert result.exit_code == 0 and "GUARD_ACCEPT_IMPORTED_KEYS" in result.stderr
    assert "old-plain-secret" not in result.output
    accepting = Keys(keys.store, keys.codec, accept_imported=True)
    assert accepting.verify("old-plain-secret").ok


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("revoke", "ffffffffffffffff"), 1, "no key with id ffffffffffffffff"),
        (("show", "ffffffffffffffff"), 1, "no key with id"),
        (("create", "--name", "x", "--expires-in", "soon"), 2, "not a duration"),
        (("create", "--name", "x", "--rate-limit", "lots"), 2, "not a rate limit"),
        (("rotate-due",), 2, "give --max-age, --name, or both"),
    ],
)
def test_failures_exit_non_zero_with_one_clear_line(
    keys: Keys, args: tuple[str, ...], code: int, message: str
) -> None:
    result = run(keys, *args)
    assert result.exit_code == code
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_rotating_a_revoked_or_rotated_key_is_refused(keys: Keys) -> None:
    created = create(keys)
    run(keys, "rotate", created["id"])
    again = run(keys, "rotate", created["id"])
    assert again.exit_code == 1 and "already rotated" in again.stderr


def test_env_store_writes_print_the_new_value_or_update_the_env_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("OTHER=1\n")
    monkeypatch.setenv("GUARD_SECRET_KEY", SECRET)
    monkeypatch.setenv("GUARD_PEPPER", PEPPER)
    monkeypatch.setenv("GUARD_STORE_URL", "env://GUARD_KEYS")
    runner = CliRunner()
    printed = runner.invoke(cli, ["keys", "create", "--name", "ci"])
    assert printed.exit_code == 0
    assert "GUARD_KEYS='[" in printed.stdout
    written = runner.invoke(cli, ["keys", "create", "--name", "cd", "--env-file", str(env_file)])
    assert written.exit_code == 0
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    lines = env_file.read_text().splitlines()
    assert lines[0] == "OTHER=1" and lines[1].startswith("GUARD_KEYS='[")
    monkeypatch.setenv("GUARD_KEYS", lines[1].split("=", 1)[1].strip("'"))
    listed = runner.invoke(cli, ["keys", "list", "--json"])
    assert [row["name"] for row in json.loads(listed.stdout)] == ["cd"]
    token = written.stdout.strip().splitlines()[0]
    assert runner.invoke(cli, ["keys", "verify"], input=token).exit_code == 0


def test_rotate_due_rotates_old_keys_once_and_writes_tokens_with_mode_0600(
    keys: Keys, clock: Clock, tmp_path: Path
) -> None:
    old = create(keys)
    clock.advance(100 * 86_400)
    young = create(keys)
    output = tmp_path / "tokens.jsonl"
    dry = run(keys, "rotate-due", "--max-age", "90d", "--dry-run")
    assert f"would rotate {old['id']}" in dry.stdout and young["id"] not in dry.stdout
    done = run(keys, "rotate-due", "--max-age", "90d", "--output", str(output))
    assert done.exit_code == 0 and "rotated 1 key;" in done.stderr
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    [row] = [json.loads(line) for line in output.read_text().splitlines()]
    assert row["old_id"] == old["id"] and keys.verify(row["token"]).ok
    rerun = run(keys, "rotate-due", "--max-age", "90d", "--output", str(tmp_path / "again"))
    assert "rotated 0 keys" in rerun.stderr  # the successor is young, the old one rotated
    assert run(keys, "rotate-due", "--max-age", "1d", "--output", str(output)).exit_code == 1


class CrashingStore(MemoryStore):
    """Dies on the second write, like a job killed halfway through."""

    def __init__(self) -> None:
        super().__init__()
        self.writes_left: int | None = None

    def save(
        self, *records: KeyRecord, expected: Mapping[str, KeyRecord | None] | None = None
    ) -> None:
        if self.writes_left is not None:
            if self.writes_left == 0:
                raise KeyboardInterrupt("killed")
            self.writes_left -= 1
        super().save(*records, expected=expected)


def test_rotate_due_after_a_crash_halfway_rotates_no_key_twice_and_loses_none(
    clock: Clock, tmp_path: Path
) -> None:
    store = CrashingStore()
    keys = Keys(store, TokenCodec([SECRET], [PEPPER]), clock=clock)
    originals = [create(keys, "--name", f"svc-{n}") for n in range(3)]
    store.writes_left = 1
    first = tmp_path / "first.jsonl"
    crashed = run(keys, "rotate-due", "--name", "svc-*", "--output", str(first))
    assert crashed.exit_code != 0
    store.writes_left = None
    second = tmp_path / "second.jsonl"
    assert run(keys, "rotate-due", "--name", "svc-*", "--output", str(second)).exit_code == 0
    rows = [json.loads(line) for f in (first, second) for line in f.read_text().splitlines()]
    saved = {row["old_id"]: row for row in rows if store.get(row["id"]) is not None}
    # Every original was rotated exactly once, and its successor's token is on disk.
    assert sorted(saved) == sorted(o["id"] for o in originals)
    assert all(keys.verify(row["token"]).ok for row in saved.values())
    assert all(store.require(o["id"]).replaced_by == saved[o["id"]]["id"] for o in originals)


@pytest.mark.redis
def test_cli_against_a_real_redis_store(redis_url: str, keys: Keys) -> None:
    store = RedisStore(redis_url)
    shared = Keys(store, keys.codec)
    try:
        created = create(shared)
        worker = Keys(RedisStore(redis_url), keys.codec)
        assert worker.verify(created["token"]).ok
        assert run(shared, "revoke", created["id"]).exit_code == 0
        assert worker.verify(created["token"]).reason is Reason.REVOKED
        worker.close()
    finally:
        shared.close()


@pytest.fixture
def guard_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    yield {
        **os.environ,
        "GUARD_SECRET_KEY": SECRET,
        "GUARD_PEPPER": PEPPER,
        "GUARD_STORE_URL": "env://GUARD_KEYS",
    }


def test_the_installed_guard_command_runs_as_a_process(
    guard_env: dict[str, str], tmp_path: Path
) -> None:
    command = [sys.executable, "-m", "guard.cli", "keys"]
    env_file = tmp_path / ".env"
    created = subprocess.run(
        [*command, "create", "--name", "cron", "--json", "--env-file", str(env_file)],
        env=guard_env,
        capture_output=True,
        text=True,
        check=True,
    )
    token = json.loads(created.stdout)["token"]
    guard_env["GUARD_KEYS"] = env_file.read_text().split("=", 1)[1].strip().strip("'")
    verified = subprocess.run(
        [*command, "verify"], input=token, env=guard_env, capture_output=True, text=True
    )
    assert verified.returncode == 0 and "valid: key" in verified.stdout
    missing = subprocess.run(
        [*command, "revoke", "ffffffffffffffff"], env=guard_env, capture_output=True, text=True
    )
    assert missing.returncode == 1
    assert missing.stderr.strip() == "Error: no key with id ffffffffffffffff"


def test_flask_guard_uses_the_apps_own_store(guard_env: dict[str, str]) -> None:
    scripts = Path(__file__).resolve().parents[1] / "scripts"
    env = {**guard_env, "FLASK_APP": "demo_app:create_app", "GUARD_STORE_URL": "memory://"}
    listed = subprocess.run(
        [sys.executable, "-m", "flask", "guard", "keys", "list", "--json"],
        env=env,
        cwd=scripts,
        capture_output=True,
        text=True,
    )
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []


def test_the_rotation_script_is_a_thin_wrapper_over_rotate_due(guard_env: dict[str, str]) -> None:
    script = Path(__file__).resolve().parents[1] / "scripts" / "rotate_keys.py"
    dry = subprocess.run(
        [sys.executable, str(script), "--max-age", "1d", "--dry-run"],
        env=guard_env,
        capture_output=True,
        text=True,
    )
    assert dry.returncode == 0 and "0 keys due; nothing changed" in dry.stderr
    usage = subprocess.run(
        [sys.executable, str(script)], env=guard_env, capture_output=True, text=True
    )
    assert usage.returncode == 2 and "give --max-age, --name, or both" in usage.stderr
