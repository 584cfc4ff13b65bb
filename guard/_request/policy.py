"""What each view asks of the guard: ``@guard.exempt``, ``@guard.require``,
``@guard.accepts`` and ``@guard.headers``, on a view or on a whole blueprint.

Every view is protected unless marked exempt. The decorators wrap the view, as
Flask-HTTPAuth's ``login_required`` does, and the wrapper checks the scopes and content
types itself when the view is called: whatever other decorator sits above, and whatever
wraps the view later, a requirement cannot be skipped. Each decorator returns a new
function, so marking the function registered at one URL never marks the same function
registered at another. Anything else handed to them is a :class:`TypeError` at
decoration time.

The policy is also kept on the wrapper, where the pipeline reads it (to skip an exempt
view, and for the default content-type check). A decorator above that does not use
:func:`functools.wraps` hides it: the view is then treated as protected, never as
exempt, and its own requirements are still enforced by the wrapper.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from flask import Blueprint, Flask, current_app, request

from guard._request.body import check_content_type
from guard._request.state import PROTECTED, Policy, current, refuse
from guard.errors import InsufficientScope

View = TypeVar("View", bound=Callable[..., Any])
Target = TypeVar("Target", bound=Callable[..., Any] | Blueprint)

#: The attribute holding a view's (or a blueprint's) policy. In the function's
#: ``__dict__``, so ``functools.wraps`` carries it to decorators above.
ATTRIBUTE = "guard_policy"


def mark(target: Target, **changes: Any) -> Target:
    """``target`` with ``changes`` merged into its policy: a new wrapper for a view, the
    blueprint itself (marked) for a blueprint."""
    if isinstance(target, Blueprint):
        return _mark_blueprint(target, changes)  # type: ignore[return-value]
    if isinstance(target, type) or not callable(target):
        raise TypeError(
            f"the guard's decorators take a view function or a Blueprint, not {target!r}"
        )
    return _wrap(target, _merge(getattr(target, ATTRIBUTE, PROTECTED), changes))  # type: ignore[return-value]


def of(view: Callable[..., Any] | None) -> Policy:
    """The policy a view carries (:data:`PROTECTED` if none)."""
    policy = getattr(view, ATTRIBUTE, None)
    return policy if isinstance(policy, Policy) else PROTECTED


def for_endpoint(app: Flask, endpoint: str | None) -> Policy:
    """The policy of ``endpoint`` in ``app``: its view's, merged with that of every
    blueprint the endpoint belongs to (a nested blueprint's parents included)."""
    policy = of(app.view_functions.get(endpoint or ""))
    if endpoint is None or "." not in endpoint:
        return policy
    parts = endpoint.split(".")[:-1]
    for depth in range(len(parts), 0, -1):
        blueprint = app.blueprints.get(".".join(parts[:depth]))
        marked = getattr(blueprint, ATTRIBUTE, None)
        if isinstance(marked, Policy):
            policy = _merge(
                policy,
                {
                    "exempt": policy.exempt or marked.exempt,
                    "scopes": marked.scopes,
                    "csp": policy.csp or marked.csp,
                },
            )
    return policy


def check_scopes(required: Iterable[str]) -> None:
    """Refuse (403 ``insufficient_scope``) unless the request's key has ``required``."""
    state = current()
    if state is None:
        # The guard does not run on this app: refuse rather than serve unchecked.
        raise RuntimeError("a view protected by the guard was called on an app without it")
    if state.key is not None and frozenset(required).issubset(state.key.scopes):
        return
    scopes = " ".join(sorted(required))
    realm = current_app.extensions["guard"].config.realm
    challenge = f'Bearer realm="{realm}", error="insufficient_scope", scope="{scopes}"'
    refuse(state, InsufficientScope, "insufficient_scope", [("WWW-Authenticate", challenge)])


def _merge(policy: Policy, changes: dict[str, Any]) -> Policy:
    if "scopes" in changes:
        changes = {**changes, "scopes": policy.scopes | frozenset(changes["scopes"])}
    merged = dataclasses.replace(policy, **changes)
    if merged.exempt and merged.scopes:
        raise TypeError("a view or blueprint cannot be both exempt and require scopes")
    return merged


def _wrap(view: Callable[..., Any], policy: Policy) -> Callable[..., Any]:
    # Guard decorators stacked directly wrap the original view once, with the merged
    # policy. (``functools.wraps`` copies these attributes to other decorators' wrappers
    # too: only the guard's own wrapper is the object its ``guard_wrapper`` names.)
    own = getattr(view, "guard_wrapper", None) is view
    inner: Callable[..., Any] = view.guard_view if own else view  # type: ignore[attr-defined]

    def enforce() -> None:
        if policy.scopes:
            check_scopes(policy.scopes)
        if policy.content_types is not None:
            check_content_type(request, policy.content_types)

    wrapper: Callable[..., Any]
    if inspect.iscoroutinefunction(inner):

        @functools.wraps(inner)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            enforce()
            return await inner(*args, **kwargs)

    else:

        @functools.wraps(inner)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            enforce()
            return inner(*args, **kwargs)

    setattr(wrapper, ATTRIBUTE, policy)
    wrapper.guard_view = inner  # type: ignore[attr-defined]
    wrapper.guard_wrapper = wrapper  # type: ignore[attr-defined]
    return wrapper


def _mark_blueprint(blueprint: Blueprint, changes: dict[str, Any]) -> Blueprint:
    if "content_types" in changes:
        raise TypeError("@guard.accepts applies to views, not to a whole blueprint")
    previous = getattr(blueprint, ATTRIBUTE, PROTECTED)
    policy = _merge(previous, changes)
    setattr(blueprint, ATTRIBUTE, policy)
    new_scopes = policy.scopes - previous.scopes
    if new_scopes:
        # A blueprint's own hook runs after the guard's (app hooks come first) and
        # before any of its views: every view in it is checked, however decorated.
        blueprint.before_request(functools.partial(check_scopes, new_scopes))
    return blueprint
