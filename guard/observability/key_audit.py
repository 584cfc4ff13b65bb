"""One audit entry per key operation, on the ``guard.audit`` trail beside the request
entries: who created, imported, updated, rotated, revoked, disabled or enabled a key or
reset its limits, and what changed.

The entries are logged on ``guard.audit.keys``, a child of ``guard.audit``: whatever
handles the trail (a ``dictConfig`` naming ``guard.audit``, the Redis audit stream) gets
them, at its level, while a consumer that reads records named ``guard.audit`` keeps
seeing request entries alone, as before key operations were audited.

The entry has the request entries' shape: each field (``ts``, ``event``, ``key_id``,
``key_name``, ``owner``, ``actor``, ``changed``, ``values``, ``confirmed``) is an
attribute of the ``LogRecord``, and the message is the same entry as one line of compact
JSON, ASCII only. ``event`` is ``key.created``, ``key.imported``, ``key.updated``,
``key.rotated``, ``key.revoked``, ``key.disabled``, ``key.enabled`` or
``key.limits_reset`` (with the key's ``owner``), or ``owner.set`` or ``owner.unset`` (an
owner's, with its name in ``owner``); ``changed`` names every field of the record that
changed (for a reset, ``windows``: the policies cleared), and
``values`` gives the new value of each, but for the digest: a token, its secret and its
digest are never in an entry.

Emitted by :class:`guard.keys.lifecycle.Keys` once a write is confirmed (or with
``confirmed`` false when the store could not tell whether it applied), so every path
that changes a key (the ``guard`` command, ``scripts/rotate_keys.py``, an app's own code)
writes the same entry, and it reaches whatever handlers ``guard.audit`` has, the Redis
audit stream's included.
"""

from __future__ import annotations

import dataclasses
import getpass
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from guard.observability.audit import keep_enabled, timestamp
from stores import KeyRecord

logger = logging.getLogger("guard.audit.keys")

#: Fields whose value never goes in an entry (only their name, in ``changed``).
SECRET_FIELDS = frozenset({"digest"})
#: The fields a key's own id and name are told by, not listed as changes.
_NAMED = frozenset({"key_id", "name"})


def os_user() -> str:
    """Who runs this process, the actor of an operation when none was named."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name, no passwd entry (a bare container)
        return "unknown"


def changes(before: KeyRecord | None, after: KeyRecord) -> dict[str, Any]:
    """The fields of ``after`` that differ from ``before`` (from a new record's defaults
    when ``before`` is ``None``), with their new values in JSON form."""
    found: dict[str, Any] = {}
    for field in dataclasses.fields(KeyRecord):
        if field.name in _NAMED:
            continue
        value = getattr(after, field.name)
        if before is None:
            if value in (None, False, (), {}):  # a new record's field left unset
                continue
        elif value == getattr(before, field.name):
            continue
        if isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, Mapping):
            value = dict(value)
        found[field.name] = value
    return found


def emit(
    event: str,
    record: KeyRecord,
    actor: str,
    changed: dict[str, Any] | None = None,
    *,
    confirmed: bool = True,
) -> None:
    """Log the entry for ``event`` on ``record``, done by ``actor``.

    :param changed: field -> new value (as :func:`changes` gives); the values of
        :data:`SECRET_FIELDS` are dropped here, whatever the caller passed.
    :param confirmed: ``False`` when the store did not confirm the write, which may or
        may not have applied (:class:`~guard.keys.lifecycle.WriteUnconfirmed`).
    """
    subject = {"key_id": record.key_id, "key_name": record.name, "owner": record.owner}
    _log(event, subject, actor, changed or {}, confirmed)


def emit_owner(event: str, name: str, actor: str, changed: dict[str, Any] | None = None) -> None:
    """Log the entry for ``event`` (``owner.set``, ``owner.unset``) on the owner ``name``,
    done by ``actor``; ``changed`` as :func:`emit`'s (an owner holds no secret)."""
    _log(event, {"owner": name}, actor, changed or {}, True)


def _log(
    event: str, subject: dict[str, Any], actor: str, changed: dict[str, Any], confirmed: bool
) -> None:
    if logger.disabled:
        keep_enabled(logger)
    if not logger.isEnabledFor(logging.INFO):
        return
    fields: dict[str, Any] = {
        "ts": timestamp(time.time()),
        "event": event,
        **subject,
        "actor": actor,
        "changed": sorted(changed),
        "values": {k: v for k, v in sorted(changed.items()) if k not in SECRET_FIELDS},
        "confirmed": confirmed,
    }
    text = json.dumps(fields, separators=(",", ":"), default=str)
    logger.info(text, extra=fields)
