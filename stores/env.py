"""``env://VARNAME``: read-only keys from one environment variable.

The variable holds a JSON array of key records (as printed by ``guard keys create`` for
an ``env://`` store): digests only, never plain secrets. It is parsed once, when the
store is built, so a malformed entry stops start-up instead of failing a request.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

from .base import InProcessStore, KeyRecord, OwnerRecord
from .errors import InvalidRecord, InvalidStoreURL, ReadOnlyStore

#: The variable read by a bare ``env://``.
DEFAULT_VARIABLE = "GUARD_KEYS"


def parse_records(text: str, source: str) -> dict[str, KeyRecord]:
    """Parse a JSON array of records; errors name ``source`` and the entry.

    :raises InvalidRecord: on anything but a well-formed array of distinct records.
    """
    try:
        entries = json.loads(text) if text.strip() else []
    except json.JSONDecodeError as exc:
        raise InvalidRecord(f"{source}: not valid JSON ({exc.msg})") from None
    if not isinstance(entries, list):
        raise InvalidRecord(f"{source}: must be a JSON array of key records")
    records: dict[str, KeyRecord] = {}
    for number, entry in enumerate(entries, 1):
        label = f"{source} entry {number}"
        if isinstance(entry, dict) and isinstance(entry.get("id"), str):
            label += f" (id {entry['id']!r})"
        try:
            record = KeyRecord.from_dict(entry)
        except InvalidRecord as exc:
            raise InvalidRecord(f"{label}: {exc}") from None
        if record.key_id in records:
            raise InvalidRecord(f"{label}: duplicate key id")
        records[record.key_id] = record
    return records


def render_records(records: Sequence[KeyRecord]) -> str:
    """The variable's value holding ``records``: the inverse of :func:`parse_records`.

    The text is printable ASCII with no ``'``, no ``$`` and no ``\\`` pair (each written
    as a JSON ``\\u`` escape), so single-quoted it reads back unchanged in a shell and in
    python-dotenv (which expands ``${...}`` even there), whatever the names and metadata
    hold (see :mod:`stores.envfile`).
    """
    text = json.dumps([record.to_dict() for record in records], separators=(",", ":"))
    text = text.replace("'", "\\u0027").replace("$", "\\u0024")
    return _UNSAFE_ESCAPE.sub(_unicode_escape, text)


# A JSON escape (backslash and the next character), read left to right; of these only
# an escaped backslash needs rewriting (python-dotenv reads \\ inside '...' as one \).
_UNSAFE_ESCAPE = re.compile(r"\\(.)")


def _unicode_escape(match: re.Match[str]) -> str:
    return "\\u005c" if match.group(1) == "\\" else match.group(0)


class EnvStore(InProcessStore):
    """Keys from an environment variable, fixed for the life of the process."""

    schemes = ("env",)
    read_only = True

    def __init__(self, url: str = "env://", environ: Mapping[str, str] | None = None) -> None:
        self.variable = self.variable_name(url)
        source = os.environ if environ is None else environ
        super().__init__(parse_records(source.get(self.variable, ""), self.variable).values())

    @staticmethod
    def variable_name(url: str) -> str:
        """The environment variable an ``env://`` URL names (``GUARD_KEYS`` if none)."""
        parts = urlsplit(url)
        name = parts.netloc or parts.path.lstrip("/") or DEFAULT_VARIABLE
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise InvalidStoreURL(f"{url!r}: {name!r} is not an environment variable name")
        return name

    def save(
        self, *records: KeyRecord, expected: Mapping[str, KeyRecord | None] | None = None
    ) -> None:
        raise self._read_only()

    # No owner records: its keys may name owners, which share no limits here.

    def save_owner(self, owner: OwnerRecord) -> None:
        raise self._read_only()

    def delete_owner(self, name: str) -> bool:
        raise self._read_only()

    def _read_only(self) -> ReadOnlyStore:
        return ReadOnlyStore(
            f"env://{self.variable} is read-only at run time: "
            f"change the {self.variable} variable and restart"
        )
