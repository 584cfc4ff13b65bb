"""One variable of a ``.env`` file, read and rewritten safely: the file behind ``env://``
when the ``guard`` command is given ``--env-file``.

- A line is ``NAME='value'``. :func:`env_line` refuses a value that a shell (``set -a;
  . ./.env``) and python-dotenv (what ``flask run`` loads) would not both read back
  exactly as written, so nothing in a key's name or metadata can run code or break the
  file; :func:`stores.env.render_records` only ever produces values it accepts.
- A line that assigns the variable in any other form bash or python-dotenv reads
  (``export<TAB>NAME=``, ``NAME = ...``, ``declare -x NAME=``...) makes the file refused,
  never skipped: a line the reader missed would shadow every key the guard wrote.
- :func:`locked` holds an exclusive ``fcntl.flock`` on a lock file beside the ``.env``
  (``.env.lock``) for a whole read-modify-write, so two writers never lose each other's
  change. The lock file, not the ``.env``: the rewrite renames a new file over the old.
  It is opened without following a symbolic link, so a planted link cannot make the
  guard create or truncate a file elsewhere.
- :func:`write_variable` replaces the line atomically (temporary file in the same
  directory, fsync, rename): a crash leaves the old file or the new one. A ``.env`` that
  is a symbolic link is written behind the link (the file the service loads), and the
  file keeps its owner, group and mode (0600 for a new file); where the owner cannot be
  kept, the write is refused saying so.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Printable ASCII but the single quote (the only character special inside '...' for a
# shell), the dollar sign (python-dotenv expands ${...} even inside '...') and a
# backslash before a backslash or a quote (python-dotenv's two escapes inside '...'); a
# value may not end in a backslash either, or dotenv would see \' .
_SAFE_VALUE = re.compile(r"(?:[ -#%&(-\[\]-~]|\\[ -#%&(-\[\]-~])*")


class EnvFileError(ValueError):
    """The .env file cannot be read or written as asked; the message says why."""


def env_line(name: str, value: str) -> str:
    """``name='value'``, which bash and python-dotenv both read back as ``value``.

    :raises EnvFileError: for a name that is not a variable name, or a value holding a
        character that one of the two would read differently (``'``, ``$``, ``\\\\``, a
        control character, non-ASCII).
    """
    if _NAME.fullmatch(name) is None:
        raise EnvFileError(f"{name!r} is not an environment variable name")
    if _SAFE_VALUE.fullmatch(value) is None:
        raise EnvFileError(
            f"the value for {name} cannot be single-quoted safely: it must be printable "
            "ASCII without ', $ or backslash escapes"
        )
    return f"{name}='{value}'"


def read_variable(path: Path, name: str) -> str | None:
    """The value of ``name`` in the file at ``path`` (``None`` if the file or the line is
    absent), for a line as :func:`env_line` writes it (``export`` before it is allowed).

    :raises EnvFileError: if the line is there in another form, rather than guess.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    value = None
    ours = re.compile(r"(?:export[ \t]+)?" + re.escape(name) + r"='([^']*)'")
    for line in text.splitlines():
        if not _assigns(line, name):
            continue
        match = ours.fullmatch(line.strip())
        if match is None or _SAFE_VALUE.fullmatch(match.group(1)) is None:
            raise EnvFileError(
                f"{path}: the {name} line is not in the form {name}='...' that the guard "
                "writes: fix it by hand or remove it"
            )
        value = match.group(1)  # the last assignment wins, as when the file is sourced
    return value


def write_variable(path: Path, name: str, value: str) -> None:
    """Set ``name`` to ``value`` in the file at ``path`` (created if absent), keeping every
    other line and the position of the variable's first line; mode 0600, atomic."""
    line = env_line(name, value)
    target = Path(os.path.realpath(path))  # behind a symbolic link: the file loaded
    try:
        lines = target.read_text(encoding="utf-8").splitlines()
        before: os.stat_result | None = target.stat()
    except FileNotFoundError:
        lines, before = [], None
    ours = [i for i, text in enumerate(lines) if _assigns(text, name)]
    if ours:
        lines[ours[0]] = line
        lines = [text for i, text in enumerate(lines) if i not in ours[1:]]
    else:
        lines.append(line)
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
            handle.flush()
            _keep_owner_and_mode(handle.fileno(), target, before)
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _keep_owner_and_mode(descriptor: int, target: Path, before: os.stat_result | None) -> None:
    if before is None:
        os.fchmod(descriptor, 0o600)
        return
    os.fchmod(descriptor, stat.S_IMODE(before.st_mode))
    if (before.st_uid, before.st_gid) == (os.geteuid(), os.getegid()):
        return
    try:
        os.fchown(descriptor, before.st_uid, before.st_gid)
    except PermissionError:
        raise EnvFileError(
            f"{target} belongs to uid {before.st_uid}, gid {before.st_gid}: rewritten by "
            "this user it would change hands and the service might no longer read it; "
            "run the command as its owner"
        ) from None


def _assigns(line: str, name: str) -> bool:
    """Whether ``line`` assigns ``name`` in any form bash or python-dotenv reads."""
    stripped = line.strip()
    if stripped.startswith("#"):
        return False
    return re.search(r"(?<![\w$])" + re.escape(name) + r"[ \t]*=", stripped) is not None


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the exclusive lock of the ``.env`` file at ``path`` (blocking until free)."""
    target = Path(os.path.realpath(path))
    lock_path = target.with_name(target.name + ".lock")
    try:
        descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        why = "it is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
        raise EnvFileError(f"{lock_path} cannot be opened as a lock file: {why}") from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing the descriptor releases the lock
