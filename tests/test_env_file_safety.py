"""``--env-file`` as an operator meets it on a real host: the installed ``guard`` command
writes the file the service loads, as the service needs it, and nothing else.

Review round 3, items 4 and 10: a symbolic link, the file's owner and mode, a planted
``.env.lock`` link, and lines that bash or python-dotenv read but the guard did not.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from stores.env import parse_records, render_records
from stores.envfile import EnvFileError, read_variable, write_variable
from stores.testing import ALICE
from tests.conftest import PEPPER, SECRET

GUARD = str(Path(sys.executable).with_name("guard"))
NOBODY = 65534


def guard(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "GUARD_SECRET_KEY": SECRET,
        "GUARD_PEPPER": PEPPER,
        "GUARD_STORE_URL": "env://GUARD_KEYS",
    }
    env.pop("GUARD_KEYS", None)
    return subprocess.run(
        [GUARD, "keys", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def names_in(path: Path) -> set[str]:
    records = parse_records(read_variable(path, "GUARD_KEYS") or "", "GUARD_KEYS")
    return {record.name for record in records.values()}


def test_a_symlinked_env_file_is_written_behind_the_link(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    real = tmp_path / "conf" / "service.env"
    real.write_text("OTHER=1\n")
    (tmp_path / ".env").symlink_to(real)
    done = guard(tmp_path, "create", "--name", "ci", "--env-file", ".env")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / ".env").is_symlink() and (tmp_path / ".env").resolve() == real
    assert names_in(real) == {"ci"}
    assert real.read_text().startswith("OTHER=1\n")


@pytest.mark.skipif(os.geteuid() != 0, reason="giving the file to another user needs root")
def test_the_file_keeps_its_owner_group_and_mode(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("OTHER=1\n")
    os.chown(env_file, NOBODY, NOBODY)
    env_file.chmod(0o640)  # the service's user reads it through its group
    done = guard(tmp_path, "create", "--name", "ci", "--env-file", str(env_file))
    assert done.returncode == 0, done.stderr
    after = env_file.stat()
    assert (after.st_uid, after.st_gid, after.st_mode & 0o777) == (NOBODY, NOBODY, 0o640)


def test_a_planted_lock_link_is_refused_and_creates_nothing(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("OTHER=1\n")
    victim = tmp_path / "elsewhere" / "victim"
    victim.parent.mkdir()
    (tmp_path / ".env.lock").symlink_to(victim)
    done = guard(tmp_path, "create", "--name", "ci", "--env-file", str(env_file))
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"Error: {tmp_path}/.env.lock cannot be opened as a lock file: it is a symbolic link"
    )
    assert not victim.exists()
    assert env_file.read_text() == "OTHER=1\n"


@pytest.mark.parametrize("separator", ["\t", "  ", " \t "])
def test_an_export_line_with_any_blank_is_read_and_rewritten_in_place(
    tmp_path: Path, separator: str
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(f"export{separator}GUARD_KEYS='{render_records([ALICE])}'\n")
    done = guard(tmp_path, "create", "--name", "ci", "--env-file", str(env_file))
    assert done.returncode == 0, done.stderr
    lines = env_file.read_text().splitlines()
    assert len(lines) == 1  # the old line rewritten, no second one shadowing it
    assert names_in(env_file) == {ALICE.name, "ci"}


@pytest.mark.parametrize(
    "line",
    [
        "GUARD_KEYS = '[]'",  # python-dotenv reads it; the guard would not
        "declare -x GUARD_KEYS='[]'",  # bash reads it
        "OTHER=1 GUARD_KEYS='[]'",
    ],
)
def test_a_line_in_another_form_is_refused_not_shadowed(tmp_path: Path, line: str) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(line + "\n")
    done = guard(tmp_path, "create", "--name", "ci", "--env-file", str(env_file))
    assert done.returncode == 1
    assert "GUARD_KEYS line is not in the form" in done.stderr
    assert env_file.read_text() == line + "\n"


def test_a_commented_line_is_left_alone(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("# GUARD_KEYS = 'old, kept for the record'\n")
    done = guard(tmp_path, "create", "--name", "ci", "--env-file", str(env_file))
    assert done.returncode == 0, done.stderr
    assert env_file.read_text().startswith("# GUARD_KEYS = 'old, kept for the record'\n")
    assert names_in(env_file) == {"ci"}


def test_a_missing_directory_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    done = guard(tmp_path, "create", "--name", "ci", "--env-file", "missing/.env")
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"Error: {tmp_path}/missing/.env.lock cannot be opened as a lock file: "
        "No such file or directory"
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="acting as another user needs root")
def test_an_operator_who_does_not_own_the_file_is_told_whose_it_is_and_it_is_kept() -> None:
    # The operator here is ``nobody``, in a process of its own; the file is another user's
    # (group-writable, say), and rewriting it as nobody would hand it to nobody.
    with tempfile.TemporaryDirectory(dir="/tmp") as directory:
        os.chmod(directory, 0o777)  # noqa: S103 - nobody writes its temporary file here
        env_file = Path(directory) / ".env"
        env_file.write_text("OTHER=1\n")
        os.chown(env_file, 1234, 1234)
        env_file.chmod(0o666)
        told, tell = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover - the forked operator
            try:
                os.setgid(NOBODY)
                os.setuid(NOBODY)
                write_variable(env_file, "GUARD_KEYS", "{}")
            except EnvFileError as exc:
                os.write(tell, str(exc).encode())
            finally:
                os._exit(0)
        os.close(tell)
        os.waitpid(child, 0)
        message = os.read(told, 4096).decode()
        os.close(told)
        assert message == (
            f"{env_file} belongs to uid 1234, gid 1234: rewritten by this user it would "
            "change hands and the service might no longer read it; run the command as its "
            "owner"
        )
        assert env_file.read_text() == "OTHER=1\n"
        assert env_file.stat().st_uid == 1234
        assert sorted(os.listdir(directory)) == [".env"]  # no temporary file left
