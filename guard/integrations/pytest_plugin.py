"""The guard's pytest plugin, active wherever the package is installed (``pytest11``).

It gives the ``guard_token`` fixture and nothing else: it changes no behaviour of the
guard, so what passes under it passes in production. An app under test keeps
``GUARD_FORCE_HTTPS`` on and sets Flask's ``PREFERRED_URL_SCHEME = "https"``, which
Flask's test client follows. Nothing shipped imports this module.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol

import pytest
from flask import Flask

from guard._counting.plan import parse_limits
from guard.durations import parse_duration
from guard.keys import Keys


class TokenFactory(Protocol):
    def __call__(self, app: Flask, *scopes: str, **options: Any) -> str: ...


@pytest.fixture
def guard_token() -> Iterator[TokenFactory]:
    """``guard_token(app, *scopes, name=, rate_limit=, expires_in=, metadata=)``: a
    bearer token for a key issued on ``app``'s own store, revoked after the test."""
    issued: list[tuple[Flask, str]] = []

    def make(app: Flask, *scopes: str, **options: Any) -> str:
        token, key_id = issue(app, *scopes, **options)
        issued.append((app, key_id))
        return token

    yield make
    for app, key_id in issued:
        # Revoked, not deleted: stores keep records; a revoked key is refused everywhere.
        keys_of(app).revoke(key_id)


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
