"""One variable of a ``.env`` file, read and rewritten safely: the file behind ``env://``
when the ``guard`` command is given ``--env-file``.

- A line is ``NAME='value'``. :func:`env_line` refuses a value that a shell (``set -a;
  . ./.env``) and python-dotenv (what ``flask run`` loads) would not both read back
  exactly as written, so nothing in a key's name or metadata can run code or break the
  file; :func:`stores.env.render_records` only ever produces values it accepts.
- :func:`locked` holds an exclusive ``fcntl.flock`` on a lock file beside the ``.env``
  (``.env.lock``) for a whole read-modify-write, so two writers never lose each other's
  change. The lock file, not the ``.env``: the rewrite renames a new file over the old.
- :func:`write_variable` replaces the line atomically (temporary file in the same
  directory, mode 0600, fsync, rename): a crash leaves the old file or the new one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
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
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("export "):
            stripped = stripped[len("export ") :].lstrip()
        if not stripped.startswith(f"{name}="):
            continue
        match = re.fullmatch(re.escape(name) + r"='([^']*)'", stripped)
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
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = []
    ours = [i for i, text in enumerate(lines) if _assigns(text, name)]
    if ours:
        lines[ours[0]] = line
        lines = [text for i, text in enumerate(lines) if i not in ours[1:]]
    else:
        lines.append(line)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _assigns(line: str, name: str) -> bool:
    stripped = line.strip()
    if stripped.startswith("export "):
        stripped = stripped[len("export ") :].lstrip()
    return stripped.startswith(f"{name}=")


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the exclusive lock of the ``.env`` file at ``path`` (blocking until free)."""
    lock_path = path.with_name(path.name + ".lock")
    descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing the descriptor releases the lock
