"""Whether the guard's pytest plugin is active in this process.

The plugin (:mod:`guard.integrations.pytest_plugin`) calls :func:`activate` when pytest starts; the
HTTPS stage then serves apps with Flask's ``TESTING`` on over plain HTTP, as Flask's
test client sends them. A production process never loads pytest's plugins, so
``TESTING`` alone (one setting that can leak into a deployment) never weakens it. The
plugin's ``guard_token`` fixture issues keys with :func:`issue`.
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import Flask

from guard._counting.plan import parse_limits
from guard.durations import parse_duration
from guard.keys.lifecycle import Keys

_active = False


def activate() -> None:
    global _active
    _active = True


def active() -> bool:
    return _active


def keys_of(app: Flask) -> Keys:
    """The key operations on ``app``'s own store.

    :raises RuntimeError: if the guard is not installed on ``app``.
    """
    state = app.extensions.get("guard")
    if state is None:
        raise RuntimeError(f"the guard is not installed on app {app.name!r}: call Guard(app)")
    keys: Keys = state.keys
    return keys


def issue(
    app: Flask,
    *scopes: str,
    name: str = "test",
    rate_limit: str | None = None,
    expires_in: float | str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> tuple[str, str]:
    """Issue a key on ``app``'s store as ``guard keys create`` would: ``(token, key id)``.

    ``expires_in`` is seconds or a duration such as ``"90d"``.

    :raises ValueError: for a rate limit or a duration the guard cannot read.
    """
    if rate_limit is not None:
        parse_limits(rate_limit)  # ValueError: the guard could not apply it
    if isinstance(expires_in, str):
        expires_in = parse_duration(expires_in)
    token, record = keys_of(app).create(
        name, scopes=scopes, expires_in=expires_in, rate_limit=rate_limit, metadata=metadata
    )
    return token, record.key_id
