"""Every cache is named, with what invalidates it, in one place: the list in
:mod:`stores.cache`. A cache added without its line there fails here (issue 21)."""

from __future__ import annotations

import ast
import gc
import re
import weakref
from collections import Counter
from pathlib import Path

import stores.cache
from tests.conftest import Api

ROOT = Path(__file__).resolve().parents[1]
#: How a cache is made: the one helper (and its record flavour), or functools' memoiser.
MAKERS = {"BoundedCache": "BoundedCache", "RecordCache": "RecordCache", "lru_cache": "lru_cache"}
LISTED = re.compile(r"^- ``(?P<module>[\w/]+\.py)`` (?P<name>[\w.]+) \((?P<helper>\w+), ")


def listed() -> list[tuple[str, str, str]]:
    doc = stores.cache.__doc__ or ""
    return [
        (found["module"], found["name"], found["helper"])
        for line in doc.splitlines()
        if (found := LISTED.match(line))
    ]


def made_in_code() -> Counter[tuple[str, str]]:
    """(module, helper) for every cache the code makes, outside the helper's own module."""
    made: Counter[tuple[str, str]] = Counter()
    for path in [*ROOT.glob("guard/**/*.py"), *ROOT.glob("stores/**/*.py")]:
        module = path.relative_to(ROOT).as_posix()
        if module == "stores/cache.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name in MAKERS:
                    made[(module, MAKERS[name])] += 1
            elif (
                isinstance(node, ast.Attribute)
                and node.attr == "cache"
                and isinstance(node.value, ast.Name)
                and node.value.id == "functools"
            ):
                made[(module, "lru_cache")] += 1  # functools.cache: a memoiser too
    return made


def test_every_cache_in_the_code_is_listed_with_its_invalidation() -> None:
    in_list = Counter(
        (module, helper) for module, _, helper in listed() if helper in MAKERS.values()
    )
    assert made_in_code() == in_list


def test_every_listed_cache_is_named_in_its_module() -> None:
    rows = listed()
    assert len(rows) >= 14
    for module, name, _ in rows:
        assert name.rsplit(".", 1)[-1] in (ROOT / module).read_text(), (module, name)


def test_caches_that_hold_state_use_the_one_helper() -> None:
    doc = stores.cache.__doc__ or ""
    stateful = doc.split("Holding state", 1)[1].split("Pure, on", 1)[0]
    helpers = {found["helper"] for line in stateful.splitlines() if (found := LISTED.match(line))}
    assert helpers <= {"BoundedCache", "RecordCache"}


def test_an_apps_limiter_storage_goes_with_the_app() -> None:
    """No process-wide cache keeps a gone app's storage (a Redis pool, say) alive."""
    api = Api(GUARD_RATE_LIMIT="5/minute")
    token = api.issue()
    assert api.client.get("/orders", headers=api.bearer(token)).status_code == 200
    storage = weakref.ref(api.app.extensions["guard"].limits.storage)
    api.close()
    del api
    gc.collect()
    assert storage() is None
