"""What each view asks of the guard, as set by ``@guard.exempt``, ``@guard.require``
and ``@guard.accepts``. Every view is protected unless marked exempt."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

View = TypeVar("View", bound=Callable[..., Any])

_ATTRIBUTE = "_guard_policy"


@dataclasses.dataclass(frozen=True, slots=True)
class Policy:
    exempt: bool = False
    scopes: frozenset[str] = frozenset()
    #: Content types this view takes instead of ``GUARD_CONTENT_TYPES``.
    content_types: tuple[str, ...] | None = None


#: The policy of views with no decorator, and of requests that match no view.
PROTECTED = Policy()


def update(view: View, **changes: Any) -> View:
    """Merge ``changes`` into ``view``'s policy (decorators stack in any order)."""
    current: Policy = getattr(view, _ATTRIBUTE, PROTECTED)
    if "scopes" in changes:
        changes["scopes"] = current.scopes | frozenset(changes["scopes"])
    setattr(view, _ATTRIBUTE, dataclasses.replace(current, **changes))
    return view


def of(view: Callable[..., Any] | None) -> Policy:
    return PROTECTED if view is None else getattr(view, _ATTRIBUTE, PROTECTED)
