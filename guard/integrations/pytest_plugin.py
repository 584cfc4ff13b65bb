"""The guard's pytest plugin, active wherever the package is installed (``pytest11``).

It gives the ``guard_token`` fixture, and lets apps under test with Flask's own
``TESTING=True`` be driven over plain HTTP by the Flask test client while
``GUARD_FORCE_HTTPS`` stays on (see :mod:`guard.integrations.testing`). Nothing else changes: apps
without ``TESTING`` are redirected as in production.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import pytest
from flask import Flask

from guard.integrations import testing


def pytest_configure(config: pytest.Config) -> None:
    testing.activate()


class TokenFactory(Protocol):
    def __call__(self, app: Flask, *scopes: str, **options: Any) -> str: ...


@pytest.fixture
def guard_token() -> Iterator[TokenFactory]:
    """``guard_token(app, *scopes, name=, rate_limit=, expires_in=, metadata=)``: a
    bearer token for a key issued on ``app``'s own store, revoked after the test."""
    issued: list[tuple[Flask, str]] = []

    def make(app: Flask, *scopes: str, **options: Any) -> str:
        token, key_id = testing.issue(app, *scopes, **options)
        issued.append((app, key_id))
        return token

    yield make
    for app, key_id in issued:
        # Revoked, not deleted: stores keep records; a revoked key is refused everywhere.
        testing.keys_of(app).revoke(key_id)
