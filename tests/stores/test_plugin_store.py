"""A store from another distribution: tests/plugin_store, installed into the test
environment as a package of its own (scripts/bootstrap.sh), found through its
``guard.stores`` entry point alone, never imported here by path."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, distribution

import pytest

import stores
from stores import InvalidStoreURL, KeyRecord, KeyStore, OwnerRecord, OwnersUnsupported
from stores.testing import MakeStore, WritableStoreContract
from tests.conftest import Api


@pytest.fixture(autouse=True)
def plugin_installed() -> None:
    try:
        distribution("guard-plugin-store")
    except PackageNotFoundError:
        message = "guard-plugin-store is not installed (scripts/bootstrap.sh installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


class TestPluginStore(WritableStoreContract):
    @pytest.fixture
    def make_store(self) -> MakeStore:
        def make(records: Sequence[KeyRecord]) -> KeyStore:
            store = stores.from_url("plugin://contract")
            store.save(*records)
            return store

        return make


def test_a_store_written_before_owners_refuses_them_by_name() -> None:
    store = stores.from_url("plugin://owners")
    with pytest.raises(OwnersUnsupported, match="the PluginStore store keeps no owners"):
        store.get_owner("acme")
    with pytest.raises(OwnersUnsupported):
        store.save_owner(OwnerRecord("acme", rate_limit="10/minute"))


def test_a_key_naming_an_owner_on_such_a_store_is_refused_not_served_without_its_limits(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = Api(GUARD_STORE_URL="plugin://owners")
    alone, owned = api.issue("alone"), api.issue("owned", owner="acme")
    assert api.client.get("/orders", headers=api.bearer(alone)).status_code == 200
    with caplog.at_level(logging.ERROR, logger="guard.errors"):
        assert api.client.get("/orders", headers=api.bearer(owned)).status_code == 503
    assert "the PluginStore store keeps no owners" in caplog.text


def test_the_plugin_is_found_by_its_entry_point_and_imported_only_when_used() -> None:
    script = (
        "import sys, stores\n"
        "print('plugin' in stores.schemes(), 'guard_plugin_store' in sys.modules)\n"
        "store = stores.from_url('plugin://anything')\n"
        "print(type(store).__module__, type(store).__name__, store.url)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.splitlines() == [
        "True False",
        "guard_plugin_store PluginStore plugin://anything",
    ]


def test_an_unknown_scheme_is_refused_naming_every_registered_scheme() -> None:
    with pytest.raises(InvalidStoreURL) as info:
        stores.from_url("mongodb://db.internal/keys")
    message = str(info.value)
    assert "'mongodb://db.internal/keys'" in message
    named = message.partition("use one of ")[2].split(", ")
    assert named == [f"{scheme}://" for scheme in stores.schemes()]
    assert {"memory://", "env://", "redis://", "plugin://"} <= set(named)
