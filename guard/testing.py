"""Whether the guard's pytest plugin is active in this process.

The plugin (:mod:`guard.pytest_plugin`) calls :func:`activate` when pytest starts; the
HTTPS stage then serves apps with Flask's ``TESTING`` on over plain HTTP, as Flask's
test client sends them.
"""

from __future__ import annotations

_active = False


def activate() -> None:
    global _active
    _active = True


def active() -> bool:
    return _active
