"""How the guard reads and rewrites its variable in a ``.env`` file (``stores.envfile``)
and names the variable of an ``env://`` store (``stores.env``): the forms it accepts,
the forms it refuses with a reason, and a rewrite that never leaves a partial file."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from stores import EnvStore, InvalidStoreURL
from stores.env import parse_records, render_records
from stores.envfile import EnvFileError, env_line, read_variable, write_variable
from stores.testing import ALICE


@pytest.mark.parametrize(
    "text",
    [
        "GUARD_KEYS='[1]'",
        "export GUARD_KEYS='[1]'",
        "  export   GUARD_KEYS='[1]'  ",
        "A=1\nB='two'\nGUARD_KEYS='[1]'\nC=3",
        "GUARD_KEYS='[0]'\nGUARD_KEYS='[1]'",  # the last assignment wins, as in a shell
    ],
)
def test_the_variable_is_read_in_every_form_the_guard_writes_or_a_shell_exports(
    tmp_path: Path, text: str
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(text + "\n")
    assert read_variable(env_file, "GUARD_KEYS") == "[1]"


def test_an_exported_line_with_extra_spaces_is_rewritten_in_place(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("A=1\nexport   GUARD_KEYS='[]'\nB=2\n")
    write_variable(env_file, "GUARD_KEYS", "[1]")
    assert env_file.read_text() == "A=1\nGUARD_KEYS='[1]'\nB=2\n"


def test_refusals_say_what_is_wrong_and_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(EnvFileError) as info:
        env_line("GUARD_KEYS", "it's")
    assert str(info.value) == (
        "the value for GUARD_KEYS cannot be single-quoted safely: it must be printable "
        "ASCII without ', $ or backslash escapes"
    )
    env_file = tmp_path / ".env"
    env_file.write_text('GUARD_KEYS="[]"\n')
    with pytest.raises(EnvFileError) as info:
        read_variable(env_file, "GUARD_KEYS")
    assert str(info.value) == (
        f"{env_file}: the GUARD_KEYS line is not in the form GUARD_KEYS='...' that the "
        "guard writes: fix it by hand or remove it"
    )


@pytest.fixture
def temporary_directory_elsewhere(tmp_path: Path) -> Iterator[Path]:
    """The process's temporary directory on another file system than ``tmp_path``."""
    other = Path("/dev/shm")  # noqa: S108 - a private directory is made inside it
    if not other.is_dir() or other.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on a file system of its own")
    with tempfile.TemporaryDirectory(dir=other) as directory:
        saved, tempfile.tempdir = tempfile.tempdir, directory
        try:
            yield Path(directory)
        finally:
            tempfile.tempdir = saved


def test_the_new_file_is_written_beside_the_old_one_then_renamed_over_it(
    tmp_path: Path, temporary_directory_elsewhere: Path
) -> None:
    # A rename is atomic only within one file system: the temporary file must be made in
    # the .env file's own directory, wherever the process keeps temporary files.
    env_file = tmp_path / ".env"
    env_file.write_text("A=1\n")
    write_variable(env_file, "GUARD_KEYS", "[1]")
    assert env_file.read_text() == "A=1\nGUARD_KEYS='[1]'\n"
    assert sorted(os.listdir(tmp_path)) == [".env"]
    assert os.listdir(temporary_directory_elsewhere) == []


@pytest.fixture
def immutable_env_file(tmp_path: Path) -> Iterator[Path]:
    """A .env file that not even root may replace (``chattr +i``), so a rewrite fails at
    its last step, the rename."""
    env_file = tmp_path / ".env"
    env_file.write_text("A=1\nGUARD_KEYS='[]'\n")
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(env_file)], check=False).returncode:
        pytest.skip("needs chattr and a file system that keeps the immutable attribute")
    try:
        yield env_file
    finally:
        subprocess.run([chattr, "-i", str(env_file)], check=True)


def test_a_rewrite_that_fails_leaves_the_old_file_and_nothing_else(
    immutable_env_file: Path,
) -> None:
    with pytest.raises(PermissionError):
        write_variable(immutable_env_file, "GUARD_KEYS", "[1]")
    assert immutable_env_file.read_text() == "A=1\nGUARD_KEYS='[]'\n"
    assert os.listdir(immutable_env_file.parent) == [".env"]


def test_the_rendered_value_is_compact_json(tmp_path: Path) -> None:
    value = render_records([ALICE])
    assert ": " not in value and ", " not in value
    assert parse_records(value, "GUARD_KEYS") == {ALICE.key_id: ALICE}


@pytest.mark.parametrize(
    ("url", "variable"),
    [
        ("env://API_KEYS", "API_KEYS"),
        ("env:///API_KEYS", "API_KEYS"),
        ("env:///XDG_KEYS", "XDG_KEYS"),
        ("env://api_keys", "api_keys"),
        ("env://", "GUARD_KEYS"),
    ],
)
def test_an_env_url_names_its_variable(url: str, variable: str) -> None:
    assert EnvStore.variable_name(url) == variable


def test_an_env_store_reads_guard_keys_by_default() -> None:
    store = EnvStore(environ={"GUARD_KEYS": render_records([ALICE])})
    assert (store.variable, store.records()) == ("GUARD_KEYS", [ALICE])


def test_a_url_naming_no_variable_is_refused_naming_both() -> None:
    with pytest.raises(InvalidStoreURL) as info:
        EnvStore.variable_name("env://not-a-name")
    assert str(info.value) == "'env://not-a-name': 'not-a-name' is not an environment variable name"
