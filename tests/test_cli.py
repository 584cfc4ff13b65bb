"""The `guard` command, driven through click's runner and as a real process."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import dotenv
import pytest
from click.testing import CliRunner, Result

from guard import Keys, Reason, TokenCodec
from guard.cli.commands import cli
from stores import KeyRecord, MemoryStore, RedisStore
from stores.env import render_records
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
    env_file.chmod(0o600)
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
        # Published on pub/sub: the worker drops its cached record within the second
        # the guard promises (on a loaded machine, not always before the next line).
        deadline = time.monotonic() + 1.0
        while worker.verify(created["token"]).ok and time.monotonic() < deadline:
            time.sleep(0.01)
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


# -- The installed `guard` command, run as an operator runs it ---------------------------

GUARD = Path(sys.executable).with_name("guard")  # the console script pip installed
SECRETS = {"GUARD_SECRET_KEY": SECRET, "GUARD_PEPPER": PEPPER}


class Shell:
    """An operator's shell: a working directory with a .env, and exported variables."""

    def __init__(self, directory: Path, **exported: str) -> None:
        self.directory = directory
        self.env_file = directory / ".env"
        self.exported = {"PATH": os.environ["PATH"], **SECRETS, **exported}

    def guard(self, *args: str, stdin: str = "", **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(GUARD), *args],
            input=stdin,
            env={**self.exported, **extra},
            cwd=self.directory,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def ok(self, *args: str, stdin: str = "", **extra: str) -> subprocess.CompletedProcess[str]:
        done = self.guard(*args, stdin=stdin, **extra)
        assert done.returncode == 0, done.stderr
        return done

    def sourced(self) -> dict[str, str]:
        """GUARD_KEYS as the service loads it from the .env (python-dotenv, as `flask run`)."""
        return {"GUARD_KEYS": dotenv.dotenv_values(self.env_file)["GUARD_KEYS"] or ""}

    def names(self) -> list[str]:
        listed = self.ok("keys", "list", "--json", **self.sourced())
        return [row["name"] for row in json.loads(listed.stdout)]


@pytest.fixture
def shell(tmp_path: Path) -> Shell:
    return Shell(tmp_path, GUARD_STORE_URL="env://GUARD_KEYS")


def test_env_file_writes_read_the_records_from_the_file_not_the_shell(shell: Shell) -> None:
    for name in ("alice", "bob"):
        shell.ok("keys", "create", "--name", name, "--env-file", ".env")
    assert shell.names() == ["alice", "bob"]


def test_a_revocation_in_the_env_file_survives_a_write_from_a_stale_shell(shell: Shell) -> None:
    alice = json.loads(
        shell.ok("keys", "create", "--name", "alice", "--json", "--env-file", ".env").stdout
    )
    stale = shell.sourced()  # the shell sourced .env here, and keeps this value
    shell.ok("keys", "revoke", alice["id"], "--env-file", ".env", **stale)
    created = shell.ok("keys", "create", "--name", "bob", "--env-file", ".env", **stale)
    assert "differs from .env; using .env" in created.stderr
    assert shell.names() == ["alice", "bob"]
    refused = shell.guard("keys", "verify", stdin=alice["token"], **shell.sourced())
    assert refused.returncode == 1 and refused.stderr.strip() == "Error: invalid: revoked"


def test_concurrent_writers_to_one_env_file_lose_nothing(shell: Shell) -> None:
    names = [f"worker-{n}" for n in range(8)]
    running = [
        subprocess.Popen(
            [str(GUARD), "keys", "create", "--name", name, "--env-file", ".env"],
            env=shell.exported,
            cwd=shell.directory,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name in names
    ]
    assert [process.wait(60) for process in running] == [0] * len(names)
    assert sorted(shell.names()) == names


@pytest.mark.parametrize(
    "name", ["x' ;touch pwned; '", "O'Brien", "$(touch pwned)", "a\\'b${HOME}"]
)
def test_a_hostile_key_name_in_the_env_file_runs_nothing_and_reads_back(
    shell: Shell, name: str
) -> None:
    shell.ok("keys", "create", "--name", name, "--env-file", ".env")
    by_bash = subprocess.run(
        ["bash", "-c", 'set -a; . ./.env; printf %s "$GUARD_KEYS"'],
        cwd=shell.directory,
        capture_output=True,
        text=True,
        check=True,
    )
    assert not (shell.directory / "pwned").exists() and by_bash.stderr == ""
    assert by_bash.stdout == shell.sourced()["GUARD_KEYS"]
    assert shell.names() == [name]


def test_writes_to_a_store_that_ends_with_the_command_are_refused(shell: Shell) -> None:
    refused = shell.guard("--store", "memory://", "keys", "create", "--name", "x")
    assert refused.returncode == 1
    assert "keeps keys only inside this process" in refused.stderr
    assert "redis://" in refused.stderr and "env:// with --env-file" in refused.stderr
    assert "gk_" not in refused.stdout
    assert shell.guard("--store", "memory://", "keys", "list").returncode == 0


@pytest.mark.parametrize("store", ["memory://", "redis://127.0.0.1:1/0"])
def test_env_file_with_a_store_other_than_env_is_refused(shell: Shell, store: str) -> None:
    refused = shell.guard("--store", store, "keys", "create", "--name", "x", "--env-file", ".env")
    assert refused.returncode == 2
    assert "--env-file applies only to an env:// store" in refused.stderr
    assert not shell.env_file.exists()


@pytest.mark.parametrize(
    "args",
    [("--help",), ("keys", "--help"), ("keys", "create", "--help"), ("keys", "update", "--help")],
)
def test_help_needs_no_secret(tmp_path: Path, args: tuple[str, ...]) -> None:
    done = subprocess.run(
        [str(GUARD), *args], env={"PATH": os.environ["PATH"]}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "Usage: guard" in done.stdout


def test_help_states_the_store_rule_and_every_grace_option_says_what_it_does(shell: Shell) -> None:
    top = shell.ok("--help").stdout
    assert "under `flask guard`, the" in top and "GUARD_STORE_URL" in top
    for command in ("rotate", "rotate-due"):
        assert "How long the old key stays valid" in shell.ok("keys", command, "--help").stdout


def test_a_command_that_uses_keys_still_needs_the_secrets(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(GUARD), "keys", "list"],
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and "GUARD_SECRET_KEY is required" in done.stderr


FLASK_APP = """
from flask import Flask
from guard import Guard

def create_app():
    app = Flask(__name__)
    app.config.update(GUARD_SECRET_KEY="{secret}", GUARD_PEPPER="{pepper}",
                      GUARD_STORE_URL="env://APP_KEYS")
    Guard(app)
    return app
"""


def test_flask_guard_uses_the_apps_store_over_the_environment_and_store_over_both(
    shell: Shell,
) -> None:
    (shell.directory / "keysapp.py").write_text(FLASK_APP.format(secret=SECRET, pepper=PEPPER))
    app_keys = render_records([KeyRecord("0123456789abcdef", "apps", "a" * 64, "p", 1.0)])
    other = render_records([KeyRecord("fedcba9876543210", "other", "b" * 64, "p", 1.0)])
    env = {"FLASK_APP": "keysapp:create_app", "APP_KEYS": app_keys, "OTHER_KEYS": other}
    flask = [str(GUARD.with_name("flask")), "guard"]

    def listed(*args: str) -> list[str]:
        done = subprocess.run(
            [*flask, *args, "keys", "list", "--json"],
            env={**shell.exported, "GUARD_STORE_URL": "memory://", **env},
            cwd=shell.directory,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        return [row["name"] for row in json.loads(done.stdout)]

    assert listed() == ["apps"]  # the app's store, not GUARD_STORE_URL=memory://
    assert listed("--store", "env://OTHER_KEYS") == ["other"]


def test_update_changes_a_key_without_rotating_it(shell: Shell) -> None:
    created = json.loads(
        shell.ok(
            "keys", "create", "--name", "a", "--scopes", "x", "--json", "--env-file", ".env"
        ).stdout
    )
    updated = shell.ok(
        "keys",
        "update",
        created["id"],
        "--scopes",
        "y,z",
        "--rate-limit",
        "5/minute;1/day",
        "--metadata",
        "team=payments",
        "--json",
        "--env-file",
        ".env",
        **shell.sourced(),
    )
    row = json.loads(updated.stdout)
    assert (row["scopes"], row["rate_limit"], row["metadata"]) == (
        ["y", "z"],
        "5/minute;1/day",
        {"team": "payments"},
    )
    shown = json.loads(shell.ok("keys", "show", created["id"], "--json", **shell.sourced()).stdout)
    assert shown["scopes"] == ["y", "z"] and shown["rate_limit"] == "5/minute;1/day"
    assert shell.ok("keys", "verify", stdin=created["token"], **shell.sourced()).returncode == 0
    nothing = shell.guard("keys", "update", created["id"], **shell.sourced())
    assert nothing.returncode == 2
    assert "Error: give --scopes, --rate-limit, --metadata, --allow-from, " in nothing.stderr


def test_list_filters_by_state_name_and_scope(shell: Shell) -> None:
    ids = {}
    for name, scopes in (("alpha", "read"), ("beta", "write"), ("bravo", "read,write")):
        made = shell.ok(
            "keys", "create", "--name", name, "--scopes", scopes, "--json", "--env-file", ".env"
        )
        ids[name] = json.loads(made.stdout)["id"]
    shell.ok("keys", "revoke", ids["alpha"], "--env-file", ".env")

    def names(*filters: str) -> list[str]:
        done = shell.ok("keys", "list", "--json", *filters, **shell.sourced())
        return [row["name"] for row in json.loads(done.stdout)]

    assert names("--state", "revoked") == ["alpha"]
    assert names("--state", "active") == ["beta", "bravo"]
    assert names("--scope", "write") == ["beta", "bravo"]
    assert names("--name", "b*", "--scope", "read") == ["bravo"]


def test_every_command_that_prints_a_result_prints_json_on_request(shell: Shell) -> None:
    made = json.loads(
        shell.ok("keys", "create", "--name", "a", "--json", "--env-file", ".env").stdout
    )
    verified = json.loads(
        shell.ok("keys", "verify", "--json", stdin=made["token"], **shell.sourced()).stdout
    )
    assert verified == {"valid": True, "reason": "valid", "id": made["id"], "name": "a"}
    imported = shell.ok(
        "keys",
        "import",
        "--name",
        "legacy",
        "--json",
        "--env-file",
        ".env",
        stdin="legacy-secret-1",
    )
    assert json.loads(imported.stdout)["name"] == "legacy"
    revoked = shell.ok("keys", "revoke", made["id"], "--json", "--env-file", ".env")
    assert json.loads(revoked.stdout)["id"] == made["id"]
    refused = shell.guard("keys", "verify", "--json", stdin=made["token"], **shell.sourced())
    assert refused.returncode == 1 and json.loads(refused.stdout)["reason"] == "revoked"


def test_verify_says_imported_secrets_are_not_accepted_by_this_configuration(shell: Shell) -> None:
    shell.ok("keys", "import", "--name", "legacy", "--env-file", ".env", stdin="legacy-secret-1")
    refused = shell.guard("keys", "verify", stdin="legacy-secret-1", **shell.sourced())
    assert refused.returncode == 1
    assert "imported secrets are not accepted by this configuration" in refused.stderr
    accepted = shell.guard(
        "keys",
        "verify",
        stdin="legacy-secret-1",
        GUARD_ACCEPT_IMPORTED_KEYS="true",
        **shell.sourced(),
    )
    assert accepted.returncode == 0 and "valid: key" in accepted.stdout


@pytest.mark.parametrize("secret", ["has space", "user@host", "wow!", 'quo"te', "é-secret"])
def test_import_refuses_a_secret_no_bearer_header_can_carry(shell: Shell, secret: str) -> None:
    refused = shell.guard("keys", "import", "--name", "x", "--env-file", ".env", stdin=secret)
    assert refused.returncode == 1
    [line] = refused.stderr.splitlines()
    assert "RFC 6750" in line and secret not in line
    assert not shell.env_file.exists()


def test_several_rate_limits_in_one_string_are_accepted_as_given(shell: Shell) -> None:
    made = shell.ok(
        "keys",
        "create",
        "--name",
        "a",
        "--rate-limit",
        "5/minute;1/day",
        "--json",
        "--env-file",
        ".env",
    )
    shown = shell.ok("keys", "show", json.loads(made.stdout)["id"], "--json", **shell.sourced())
    assert json.loads(shown.stdout)["rate_limit"] == "5/minute;1/day"
    bad = shell.guard(
        "keys", "create", "--name", "b", "--rate-limit", "5/minute;lots", "--env-file", ".env"
    )
    assert bad.returncode == 2 and "not a rate limit" in bad.stderr


README = Path(__file__).resolve().parents[1] / "README.md"


def readme_cli_example() -> str:
    """The sh block of the README's section on the guard command, as written."""
    section = README.read_text().split("## Operating keys: the `guard` command", 1)[1]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


@pytest.mark.redis
def test_the_readme_cli_example_runs_as_written(redis_url: str, tmp_path: Path) -> None:
    shell = Shell(tmp_path, GUARD_STORE_URL=redis_url)
    (tmp_path / "secret.txt").write_text("legacy-secret-2019\n")
    first, rest = readme_cli_example().split("\nguard keys list ", 1)
    bash = ["bash", "-euo", "pipefail", "-c"]
    env = {**shell.exported, "PATH": f"{GUARD.parent}:{os.environ['PATH']}"}
    subprocess.run([*bash, first], env=env, cwd=tmp_path, check=True)
    [billing] = json.loads(shell.ok("keys", "list", "--json").stdout)
    script = ("guard keys list " + rest).replace("0123456789abcdef", billing["id"])
    done = subprocess.run([*bash, script], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"valid: key {billing['id']} (billing)" in done.stdout
    rows = {row["id"]: row for row in json.loads(shell.ok("keys", "list", "--json").stdout)}
    old = rows.pop(billing["id"])
    assert old["state"] == "revoked" and old["replaced_by"] in rows
    successor = rows[old["replaced_by"]]
    assert successor["scopes"] == ["invoices:read", "invoices:write"]
    assert successor["rate_limit"] == "100/minute;5000/day"
    assert successor["metadata"] == {"team": "billing"}
    assert successor["allow_from"] == ["10.0.0.0/8", "2001:db8::/32"]
    assert [row["name"] for row in rows.values() if row["imported"]] == ["legacy"]
    assert "ci" in Shell(tmp_path, GUARD_STORE_URL="env://GUARD_KEYS").names()


class RevokedMeanwhile(MemoryStore):
    """Another operator revokes ``victim`` just before this process's next write."""

    victim: str | None = None

    def save(
        self, *records: KeyRecord, expected: Mapping[str, KeyRecord | None] | None = None
    ) -> None:
        victim, self.victim = self.victim, None
        if victim is not None:
            Keys(self, TokenCodec([SECRET], [PEPPER])).revoke(victim)
        super().save(*records, expected=expected)


def test_rotate_due_leaves_a_key_revoked_while_it_runs_revoked(
    clock: Clock, tmp_path: Path
) -> None:
    store = RevokedMeanwhile()
    keys = Keys(store, TokenCodec([SECRET], [PEPPER]), clock=clock)
    created = create(keys, "--name", "svc")
    store.victim = created["id"]
    done = run(keys, "rotate-due", "--name", "svc", "--output", str(tmp_path / "t.jsonl"))
    assert done.exit_code == 0
    assert f"skipped {created['id']}: changed during the rotation" in done.stderr
    assert "rotated 0 keys" in done.stderr
    assert keys.verify(created["token"]).reason is Reason.REVOKED
    assert [r.key_id for r in store.records()] == [created["id"]]
