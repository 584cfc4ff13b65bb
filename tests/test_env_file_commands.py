"""The write commands on an ``env://`` store with ``--env-file``: the change is made on
the file's records, under the caller's clock, and the operator is told when the shell's
variable is stale."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from guard import Keys, TokenCodec
from guard.cli.commands import cli
from stores import EnvStore, KeyRecord
from stores.env import parse_records, render_records
from stores.envfile import read_variable, write_variable
from stores.testing import ALICE
from tests.conftest import PEPPER, SECRET, Clock

BOB = KeyRecord(
    key_id="fedcba9876543210", name="bob", digest="b" * 64, pepper_id="p1", created_at=2
)


def create(env_file: Path, environment: str | None, clock: Clock | None = None) -> Result:
    """``guard keys create --env-file`` with ``GUARD_KEYS`` set to ``environment`` in
    the shell (unset if ``None``), on the store the service would load from it."""
    store = EnvStore(environ={} if environment is None else {"GUARD_KEYS": environment})
    keys = Keys(store, TokenCodec([SECRET], [PEPPER]), clock=clock or Clock())
    return CliRunner().invoke(
        cli,
        ["keys", "create", "--name", "carol", "--env-file", str(env_file)],
        obj=keys,
        env={"GUARD_KEYS": environment},
    )


def in_file(env_file: Path) -> dict[str, KeyRecord]:
    return parse_records(read_variable(env_file, "GUARD_KEYS") or "", "GUARD_KEYS")


@pytest.fixture
def env_file(tmp_path: Path) -> Path:
    path = tmp_path / ".env"
    write_variable(path, "GUARD_KEYS", render_records([ALICE]))
    return path


def test_a_stale_shell_variable_is_named_and_the_file_wins(env_file: Path) -> None:
    result = create(env_file, render_records([BOB]))
    assert result.exit_code == 0, result.output
    warning = (
        f"warning: GUARD_KEYS in the environment differs from {env_file}; using {env_file}, "
        "the file this command rewrites (the environment is stale: load the file again "
        "after this command)"
    )
    assert warning in result.stderr and warning not in result.stdout
    assert set(in_file(env_file)) - {ALICE.key_id} and BOB.key_id not in in_file(env_file)


@pytest.mark.parametrize("environment", [None, render_records([ALICE])])
def test_no_warning_when_the_shell_has_no_variable_or_the_files_value(
    env_file: Path, environment: str | None
) -> None:
    result = create(env_file, environment)
    assert result.exit_code == 0, result.output
    assert "differs from" not in result.output
    assert len(in_file(env_file)) == 2


def test_a_key_written_to_the_file_is_created_at_the_callers_time(env_file: Path) -> None:
    clock = Clock(1_900_000_000.0)
    assert create(env_file, None, clock).exit_code == 0
    [created] = [r for r in in_file(env_file).values() if r.name == "carol"]
    assert created.created_at == clock.now


@pytest.mark.parametrize("accept_imported", [False, True])
def test_importing_into_the_file_hints_at_the_setting_only_when_it_is_off(
    env_file: Path, accept_imported: bool
) -> None:
    store = EnvStore(environ={})
    codec = TokenCodec([SECRET], [PEPPER])
    keys = Keys(store, codec, accept_imported=accept_imported, clock=Clock())
    result = CliRunner().invoke(
        cli,
        ["keys", "import", "--name", "legacy", "--env-file", str(env_file)],
        obj=keys,
        input="legacy-secret\n",
        env={"GUARD_KEYS": None},
    )
    assert result.exit_code == 0, result.output
    hint = "the service accepts imported secrets only with GUARD_ACCEPT_IMPORTED_KEYS=true"
    assert (hint in result.stderr) is not accept_imported
    assert [r.name for r in in_file(env_file).values() if r.imported] == ["legacy"]
