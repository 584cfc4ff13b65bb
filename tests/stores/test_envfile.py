"""The .env line the guard writes reads back exactly, through a shell and python-dotenv,
whatever a key's name and metadata hold; and nothing in them can run code."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import dotenv
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stores import KeyRecord
from stores.env import parse_records, render_records
from stores.envfile import EnvFileError, env_line, locked, read_variable, write_variable
from stores.testing import ALICE

HOSTILE = [
    "x' ;touch pwned; '",
    "O'Brien",
    "$(touch pwned)",
    "`touch pwned`",
    "${HOME}",
    "back\\slash",
    "\\'",
    "ends in \\",
    'double "quotes"',
    "# not a comment",
    "line\nbreak",
    "tab\there",
    "naïve ☃ 名前",
    "\\\\'\\",
]


def read_back_by_bash(env_file: Path, name: str) -> str:
    script = f'set -a; . "./{env_file.name}"; printf %s "${name}"'
    done = subprocess.run(
        ["bash", "-c", script], cwd=env_file.parent, capture_output=True, text=True, check=True
    )
    assert done.stderr == ""
    return done.stdout


def assert_reads_back(tmp_path: Path, record: KeyRecord) -> None:
    env_file = tmp_path / ".env"
    value = render_records([record])
    write_variable(env_file, "GUARD_KEYS", value)
    assert read_back_by_bash(env_file, "GUARD_KEYS") == value
    assert dotenv.dotenv_values(env_file)["GUARD_KEYS"] == value
    assert read_variable(env_file, "GUARD_KEYS") == value
    assert parse_records(value, "GUARD_KEYS") == {record.key_id: record}
    assert sorted(os.listdir(tmp_path)) == [".env"]  # nothing ran, nothing was created


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_names_and_metadata_read_back_exactly_and_run_nothing(
    tmp_path: Path, text: str
) -> None:
    record = KeyRecord(
        key_id=ALICE.key_id,
        name=text.replace("\n", " ").replace("\t", " "),
        digest=ALICE.digest,
        pepper_id="p1",
        created_at=1.0,
        metadata={text.replace("\n", " ").replace("\t", " "): text},
    )
    assert_reads_back(tmp_path, record)


printable = st.text(st.characters(codec="utf-8", categories=["L", "N", "P", "S", "Zs"]))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=printable.filter(lambda t: 0 < len(t) <= 256 and t.isprintable()),
    value=st.text(max_size=200),
)
def test_any_name_and_metadata_read_back_exactly(tmp_path: Path, name: str, value: str) -> None:
    for leftover in tmp_path.iterdir():
        leftover.unlink()
    record = KeyRecord(
        key_id=ALICE.key_id,
        name=name,
        digest=ALICE.digest,
        pepper_id="p1",
        created_at=1.0,
        metadata={"note": value},
    )
    assert_reads_back(tmp_path, record)


@pytest.mark.parametrize("value", ["it's", "${HOME}", "a\\\\b", "a\\'", "end\\", "new\nline", "é"])
def test_a_value_that_would_not_read_back_is_refused(value: str) -> None:
    with pytest.raises(EnvFileError, match="cannot be single-quoted safely"):
        env_line("GUARD_KEYS", value)


def test_a_bad_variable_name_is_refused() -> None:
    with pytest.raises(EnvFileError, match="not an environment variable name"):
        env_line("GUARD-KEYS; rm", "[]")


def test_other_lines_are_kept_and_the_variable_keeps_its_place(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("A=1\nexport GUARD_KEYS='[]'\nB=2\nGUARD_KEYS='[]'\n")
    env_file.chmod(0o640)
    write_variable(env_file, "GUARD_KEYS", "[1]")
    assert env_file.read_text() == "A=1\nGUARD_KEYS='[1]'\nB=2\n"
    assert oct(env_file.stat().st_mode & 0o777) == "0o640"  # the service's mode, kept


def test_a_new_file_is_readable_by_its_writer_only(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    write_variable(env_file, "GUARD_KEYS", "[1]")
    assert oct(env_file.stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("line", ['GUARD_KEYS="[]"', "GUARD_KEYS=[]", "GUARD_KEYS='it'\\''s'"])
def test_a_line_in_another_form_is_refused_rather_than_guessed(tmp_path: Path, line: str) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(line + "\n")
    with pytest.raises(EnvFileError, match="not in the form"):
        read_variable(env_file, "GUARD_KEYS")


def test_a_missing_file_or_line_has_no_value(tmp_path: Path) -> None:
    assert read_variable(tmp_path / ".env", "GUARD_KEYS") is None
    (tmp_path / ".env").write_text("OTHER=1\n")
    assert read_variable(tmp_path / ".env", "GUARD_KEYS") is None


# -- the file the service loads, as the service needs it (review round 3, item 4) ------


def test_a_symlinked_file_is_written_behind_the_link(tmp_path: Path) -> None:
    real = tmp_path / "conf" / "service.env"
    real.parent.mkdir()
    real.write_text("A=1\n")
    link = tmp_path / ".env"
    link.symlink_to(real)
    with locked(link):
        write_variable(link, "GUARD_KEYS", "[1]")
    assert link.is_symlink() and real.read_text() == "A=1\nGUARD_KEYS='[1]'\n"
    assert read_variable(link, "GUARD_KEYS") == "[1]"
    assert (real.parent / "service.env.lock").exists()  # beside the file, for every path


@pytest.mark.skipif(os.geteuid() != 0, reason="giving the file to another user needs root")
def test_a_rewritten_file_keeps_its_owner_and_group(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("A=1\n")
    os.chown(env_file, 65534, 65534)
    write_variable(env_file, "GUARD_KEYS", "[1]")
    after = env_file.stat()
    assert (after.st_uid, after.st_gid) == (65534, 65534)
    assert env_file.read_text() == "A=1\nGUARD_KEYS='[1]'\n"


def test_a_file_of_this_user_keeps_its_owner(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("A=1\n")
    write_variable(env_file, "GUARD_KEYS", "[1]")
    after = env_file.stat()
    assert (after.st_uid, after.st_gid) == (os.geteuid(), os.getegid())


def test_a_planted_lock_link_is_refused_and_its_target_not_created(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    (tmp_path / ".env.lock").symlink_to(victim)
    with (
        pytest.raises(
            EnvFileError, match=r"\.env\.lock cannot be opened .*: it is a symbolic link"
        ),
        locked(tmp_path / ".env"),
    ):
        pass
    assert not victim.exists()


def test_a_lock_in_a_missing_directory_says_so(tmp_path: Path) -> None:
    with (
        pytest.raises(EnvFileError, match="No such file or directory"),
        locked(tmp_path / "missing" / ".env"),
    ):
        pass


def test_non_ascii_lines_of_other_variables_are_kept(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_bytes("GREETING='grüß dich'\n".encode())
    write_variable(env_file, "GUARD_KEYS", "[1]")
    assert env_file.read_bytes() == "GREETING='grüß dich'\nGUARD_KEYS='[1]'\n".encode()
    assert read_variable(env_file, "GUARD_KEYS") == "[1]"


@pytest.mark.parametrize("blank", ["\t", "  "])
def test_an_export_line_with_any_blank_is_read(tmp_path: Path, blank: str) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(f"export{blank}GUARD_KEYS='[1]'\n")
    assert read_variable(env_file, "GUARD_KEYS") == "[1]"


@pytest.mark.parametrize("line", ["GUARD_KEYS = '[]'", "declare -x GUARD_KEYS='[]'"])
def test_a_line_in_another_form_is_refused(tmp_path: Path, line: str) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(line + "\n")
    with pytest.raises(EnvFileError, match="GUARD_KEYS line is not in the form"):
        read_variable(env_file, "GUARD_KEYS")
