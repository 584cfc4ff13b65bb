"""What each view asks of the guard: ``@guard.exempt``, ``@guard.require`` and
``@guard.headers`` on a view or on a whole blueprint, ``@guard.accepts`` and
``@guard.cost`` on a view.

Every view is protected unless marked exempt. One place decides what a request needs:
the pipeline, before the view runs, by the policy :func:`for_endpoint` finds for the
view the request routes to (exempt at stage 3, the content type at stage 7, the scopes
at stage 8, :func:`check_scopes`). It finds a policy wherever a user writes the decorators:

- on the function each decorator returns, which ``functools.wraps`` carries up to the
  decorators above it;
- under decorators written without ``functools.wraps``: it looks through what the
  registered view wraps (``__wrapped__``, closures, partials, bound methods, callable
  objects) for the policies the guard's decorators left. Requirements found there hold;
  an exemption found there does not, so a view is never taken for exempt unless the
  function registered at its URL says so (failing closed);
- above the route decorator, which has registered the function before the guard's
  decorator sees it: ``@guard.require`` also marks the function it is given, and the
  scopes hold wherever that very function is registered (a scope only narrows who gets
  in). The other decorators widen what a view lets in and mark only what they return;
- on a blueprint, for every view in it (a nested blueprint's parents included): what it
  lets in (an exemption, a page's Content-Security-Policy) for the views it registered
  itself only, never for an app's own endpoint Flask names alike (``public.x``); and on a
  MethodView's method, for requests of that method (``@guard.exempt`` and
  ``@guard.accepts`` there too). OPTIONS, whose answer lists every method, asks what all
  of the view's methods ask: every scope any of them requires, and a key unless every
  one is exempt. A CORS preflight from an allowed origin is answered before any of this.

Each decorator returns a new function, so an exemption (or a content type, or a
Content-Security-Policy) given to the function registered at one URL never reaches the
same function registered at another. Anything else handed to them is a
:class:`TypeError` at decoration time.

The wrapper a decorator returns decides nothing. When the view is called it checks that
the request was decided with its requirements, and refuses with 503 if not (a decorator
that keeps the view out of the guard's reach, or the view called from another view that
requires less): a view is never served unchecked.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from flask import Blueprint, Flask, Request
from flask.sansio.blueprints import Blueprint as SansioBlueprint

from guard._request.state import PROTECTED, Policy, RequestState, current, refuse
from guard.errors import GuardUnavailable, InsufficientScope, retry_later

Target = TypeVar("Target", bound=Callable[..., Any] | Blueprint)

logger = logging.getLogger("guard.errors")

#: The attribute holding a view's (or a blueprint's) policy. In the function's
#: ``__dict__``, so ``functools.wraps`` carries it to decorators above.
ATTRIBUTE = "guard_policy"

#: The scopes ``@guard.require`` asked of the very function it was given, which hold
#: where that function is registered itself (read on the registered view only).
REQUIRED = "guard_required"

#: How many objects :func:`for_endpoint` looks through under one view, at most.
_SEARCH_LIMIT = 64

#: The HTTP methods a MethodView may answer with a method of its own.
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def mark(target: Target, **changes: Any) -> Target:
    """``target`` with ``changes`` merged into its policy: a new wrapper for a view, the
    blueprint itself (marked) for a blueprint."""
    if isinstance(target, Blueprint):
        return _mark_blueprint(target, changes)  # type: ignore[return-value]
    if isinstance(target, type) or not callable(target):
        raise TypeError(
            f"the guard's decorators take a view function or a Blueprint, not {target!r}"
        )
    own = getattr(target, "guard_wrapper", None) is target
    view: Callable[..., Any] = target.guard_view if own else target  # type: ignore[attr-defined]
    wrapper = _wrap(view, _merge(of(target), changes))
    if "scopes" in changes:
        # Written above the route decorator, the function registered is the one given,
        # or, when that is another of the guard's own wrappers (stacked above the route
        # too), the view it wraps (otherwise ``view`` is ``target`` itself).
        for registered in (target, view):
            with contextlib.suppress(AttributeError):  # a bound method: only the wrapper holds
                setattr(registered, REQUIRED, _required(registered) | frozenset(changes["scopes"]))
    return wrapper  # type: ignore[return-value]


def of(view: object) -> Policy:
    """The policy a view carries itself (:data:`PROTECTED` if none)."""
    policy = getattr(view, ATTRIBUTE, None)
    return policy if isinstance(policy, Policy) else PROTECTED


def for_endpoint(app: Flask, endpoint: str | None) -> Policy:
    """The policy of ``endpoint`` in ``app``: its view's, what the view wraps requires,
    and that of every blueprint the endpoint belongs to (a nested blueprint's parents
    included). A view that requires scopes is never exempt, whatever its blueprint says.
    For a MethodView whose methods require more, the policy of each such method is in
    :attr:`~guard._request.state.Policy.methods`."""
    view = app.view_functions.get(endpoint or "")
    policy = _found(view, exempt=of(view).exempt)
    policy = dataclasses.replace(policy, scopes=policy.scopes | _required(view))
    if endpoint is not None and "." in endpoint:
        parts = endpoint.split(".")[:-1]
        # Flask names an app's own endpoint ``public.x`` as it names the ``public``
        # blueprint's: what a blueprint lets in (an exemption, a page policy) reaches
        # only the views it registered itself; its scopes are required of both.
        member = _registered_by(app.blueprints.get(".".join(parts)), view)
        for depth in range(len(parts), 0, -1):
            marked = of(app.blueprints.get(".".join(parts[:depth])))
            policy = dataclasses.replace(
                policy,
                exempt=policy.exempt or (member and marked.exempt),
                scopes=policy.scopes | marked.scopes,
                csp=policy.csp or (marked.csp if member else None),
            )
    view_class = getattr(view, "view_class", None)
    if isinstance(view_class, type):
        policy = dataclasses.replace(policy, methods=_by_method(view_class, policy))
    return _protected_if_required(policy)


def _registered_by(blueprint: SansioBlueprint | None, view: object) -> bool:
    # Whether ``view`` is one ``blueprint`` registers: its static files' view, or one
    # given to its route decorators, which Flask keeps in the setup functions it runs
    # when the blueprint is registered (``deferred_functions``). A view put in place of
    # it afterwards is not.
    if blueprint is None or view is None:
        return False
    if getattr(view, "__self__", None) is blueprint:
        return True
    for deferred in blueprint.deferred_functions:
        for cell in getattr(deferred, "__closure__", None) or ():
            with contextlib.suppress(ValueError):  # a cell not filled yet
                if cell.cell_contents is view:
                    return True
    return False


def _required(view: object) -> frozenset[str]:
    required = getattr(view, REQUIRED, None)
    return required if isinstance(required, frozenset) else frozenset()


def check_scopes(state: RequestState, policy: Policy, realm: str) -> None:
    """Refuse (403 ``insufficient_scope``) unless the request's key has every scope
    ``policy`` requires. The challenge names them all, sorted."""
    if state.key is not None and policy.scopes.issubset(state.key.scopes):
        return
    scopes = " ".join(sorted(policy.scopes))
    challenge = f'Bearer realm="{realm}", error="insufficient_scope", scope="{scopes}"'
    refuse(state, InsufficientScope, "insufficient_scope", [("WWW-Authenticate", challenge)])


def cost_of(policy: Policy, request: Request) -> int:
    """What the request spends from its key's quota under ``policy``: 1 unless the view
    says otherwise.

    :raises TypeError: if the view's cost function gives anything but a whole number of
        at least 0 (the pipeline then refuses the request with 503: never free by error).
    """
    cost = policy.cost
    if cost is None:
        return 1
    spend = cost if isinstance(cost, int) else cost(request)
    if not _is_cost(spend):
        raise TypeError(f"a view's cost must be a whole number of at least 0, not {spend!r}")
    return spend


def _is_cost(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_cost(cost: object) -> None:
    """:raises TypeError: unless ``cost`` is what ``@guard.cost`` takes."""
    if not (_is_cost(cost) or (callable(cost) and not isinstance(cost, type))):
        raise TypeError(
            f"@guard.cost takes a whole number of at least 0 or a function of the request, "
            f"not {cost!r}"
        )


def _found(view: object, *, exempt: bool) -> Policy:
    # The policies on ``view`` and under it, outermost first: scopes add up, and the
    # outermost content types and Content-Security-Policy win, as when decorators stack.
    policy = Policy(exempt=exempt)
    for found in _carried(view):
        policy = dataclasses.replace(
            policy,
            scopes=policy.scopes | found.scopes,
            content_types=(
                found.content_types if policy.content_types is None else policy.content_types
            ),
            csp=policy.csp or found.csp,
            cost=found.cost if policy.cost is None else policy.cost,
        )
    return policy


def _carried(view: object) -> Iterator[Policy]:
    seen: set[int] = set()
    queue = [view]
    while queue and len(seen) < _SEARCH_LIMIT:
        item = queue.pop(0)
        if id(item) in seen:
            continue
        seen.add(id(item))
        policy = of(item)
        if policy is not PROTECTED:
            yield policy
        queue.extend(_wrapped_by(item))


def _wrapped_by(item: object) -> Iterator[object]:
    # Where decorators keep the function they decorate.
    inner: list[object] = [
        getattr(item, name, None) for name in ("__wrapped__", "__func__", "func")
    ]
    for cell in getattr(item, "__closure__", None) or ():
        with contextlib.suppress(ValueError):  # a cell not filled yet
            inner.append(cell.cell_contents)
    if not inspect.isroutine(item):  # a callable object keeps it in an attribute
        inner.extend(getattr(item, "__dict__", {}).values())
    yield from (each for each in inner if callable(each) and not isinstance(each, type))


def _by_method(view_class: type, policy: Policy) -> dict[str, Policy] | None:
    # What each method of a class-based view asks, beside the whole view's: the
    # decorators on its own method (``get`` for HEAD, as MethodView answers it) and on
    # ``dispatch_request``. A method's exemption holds only where it is the method the
    # class holds (not under a decorator that hides it) and nothing requires scopes.
    dispatch = _found(getattr(view_class, "dispatch_request", None), exempt=False)
    each: dict[str, Policy] = {}
    defined: list[Policy] = []
    for method in _METHODS:
        handler = getattr(view_class, method.lower(), None)
        if handler is None and method == "HEAD":
            handler = getattr(view_class, "get", None)
        own = _found(handler, exempt=of(handler).exempt)
        each[method] = _protected_if_required(
            dataclasses.replace(
                policy,
                exempt=policy.exempt or own.exempt,
                scopes=policy.scopes | dispatch.scopes | own.scopes,
                content_types=own.content_types or dispatch.content_types or policy.content_types,
                cost=next(
                    (c for c in (own.cost, dispatch.cost, policy.cost) if c is not None), None
                ),
            )
        )
        if handler is not None:
            defined.append(each[method])
    if defined:
        # OPTIONS answers for the whole resource (its Allow header lists every method),
        # so it asks what all of them ask: open only if every method is, and every
        # scope any method requires. Flask answers it without calling a method.
        each["OPTIONS"] = _protected_if_required(
            dataclasses.replace(
                each["OPTIONS"],
                exempt=all(found.exempt for found in defined),
                scopes=each["OPTIONS"].scopes.union(*(found.scopes for found in defined)),
            )
        )
    return {method: found for method, found in each.items() if found != policy} or None


def _protected_if_required(policy: Policy) -> Policy:
    if policy.exempt and policy.scopes:
        return dataclasses.replace(policy, exempt=False)
    return policy


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
    requires = bool(policy.scopes) or policy.content_types is not None

    def seen() -> None:
        if requires:
            _check_seen(policy, view)

    wrapper: Callable[..., Any]
    if inspect.iscoroutinefunction(view):

        @functools.wraps(view)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            seen()
            return await view(*args, **kwargs)

    else:

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            seen()
            return view(*args, **kwargs)

    # What was asked of ``view`` itself, copied by functools.wraps, is no requirement of
    # this new registration.
    wrapper.__dict__.pop(REQUIRED, None)
    setattr(wrapper, ATTRIBUTE, policy)
    wrapper.guard_view = view  # type: ignore[attr-defined]
    wrapper.guard_wrapper = wrapper  # type: ignore[attr-defined]
    return wrapper


def _check_seen(policy: Policy, view: Callable[..., Any]) -> None:
    """Refuse (503) a request that was not decided with ``policy``'s requirements."""
    state = current()
    if state is None:
        # The guard does not run on this app: refuse rather than serve unchecked.
        raise RuntimeError("a view protected by the guard was called on an app without it")
    decided = state.policy
    if (
        decided is not None
        and policy.scopes.issubset(decided.scopes)
        and (policy.content_types is None or decided.content_types is not None)
    ):
        return
    logger.error(
        "guard: %s requires %s, which the guard did not see before the view ran "
        "(a decorator above the guard's hides them, or a view requiring less called it): "
        "request %s refused with 503. Write the guard's decorators right under the route "
        "decorator, or use functools.wraps in the decorators above them",
        getattr(view, "__qualname__", repr(view)),
        _requirements(policy),
        state.request_id,
    )
    refuse(state, GuardUnavailable, "policy_not_seen", retry_later())


def _requirements(policy: Policy) -> str:
    parts = []
    if policy.scopes:
        parts.append("scopes " + " ".join(sorted(policy.scopes)))
    if policy.content_types is not None:
        parts.append("content types " + " ".join(policy.content_types))
    return " and ".join(parts)


def _mark_blueprint(blueprint: Blueprint, changes: dict[str, Any]) -> Blueprint:
    if "content_types" in changes:
        raise TypeError("@guard.accepts applies to views, not to a whole blueprint")
    if "cost" in changes:
        raise TypeError("@guard.cost applies to views, not to a whole blueprint")
    setattr(blueprint, ATTRIBUTE, _merge(of(blueprint), changes))
    return blueprint
