"""Which store class each URL scheme names, as ``limits`` keeps its ``SCHEMES``.

A :class:`~stores.KeyStore` subclass that declares ``schemes`` is registered when its
class is defined. A store that is not imported yet is named by its import path: the
guard's Redis and SQL stores here (so naming their schemes loads no driver), and a store in another
distribution through an entry point of the group ``guard.stores`` (the scheme as its name,
``module:Class`` as its value). Either is imported only when its scheme is used.

A scheme names one class: a second class claiming a registered scheme is a
:class:`ValueError` at its definition, so no store silently replaces another.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

#: The entry point group a third-party store is found through.
ENTRY_POINT_GROUP = "guard.stores"

#: The guard's own stores that are imported only when used (with their drivers).
_LAZY = {
    **dict.fromkeys(
        ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster"), "stores.redis:RedisStore"
    ),
    **dict.fromkeys(("postgresql+psycopg", "sqlite", "sqlalchemy"), "stores.sql:SQLStore"),
}

_classes: dict[str, type[Any]] = {}


def register(cls: type[Any], schemes: tuple[str, ...]) -> None:
    """Make ``cls`` the store of each of ``schemes``.

    :raises ValueError: if another class has one of them already.
    """
    for scheme in schemes:
        taken = _classes.get(scheme)
        if taken is not None and _name(taken) != _name(cls):
            raise ValueError(
                f"store URL scheme {scheme}:// is {_name(taken)}'s;"
                f" {_name(cls)} cannot claim it too"
            )
    for scheme in schemes:
        _classes[scheme] = cls


def store_class(scheme: str) -> type[Any] | None:
    """The class registered for ``scheme``, imported now if it was only named."""
    if scheme not in _classes:
        path = _named().get(scheme)
        if path is None:
            return None
        module, _, name = path.partition(":")
        getattr(importlib.import_module(module), name)  # registers it
    return _classes.get(scheme)


def schemes() -> list[str]:
    """Every scheme a store is registered or named for, in a stable order."""
    return sorted({*_classes, *_named()})


def _named() -> dict[str, str]:
    found = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return {**found, **_LAZY}


def _name(cls: type[Any]) -> str:
    # By name, not identity: a module imported again (a reload) registers its class again.
    return f"{cls.__module__}.{cls.__qualname__}"
