"""``guard store init``: creates the SQL store's table, changes nothing when run again,
and says so for stores that keep no schema."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from guard.cli.commands import cli
from stores import from_url
from stores.sql import SQLStore
from stores.testing import ALICE
from tests.conftest import PEPPER, SECRET


def dump(path: Path) -> list[str]:
    with sqlite3.connect(path) as raw:
        return list(raw.iterdump())


def test_init_creates_the_table_then_changes_nothing_the_second_time(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    runner = CliRunner()
    first = runner.invoke(cli, ["--store", url, "store", "init"])
    assert first.exit_code == 0, first.output
    assert first.output == "created the key table guard_keys (schema version 1)\n"
    store = from_url(url)
    assert isinstance(store, SQLStore)
    store.save(ALICE)
    before = dump(tmp_path / "keys.db")
    second = runner.invoke(cli, ["--store", url, "store", "init"])
    assert second.exit_code == 0, second.output
    assert second.output == "the key table guard_keys is at schema version 1: nothing changed\n"
    assert dump(tmp_path / "keys.db") == before
    assert from_url(url).get(ALICE.key_id) == ALICE


def test_init_reads_the_url_and_prefix_from_the_environment(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    env = {"GUARD_STORE_URL": url, "GUARD_STORE_PREFIX": "billing:"}
    done = CliRunner().invoke(cli, ["store", "init"], env=env)
    assert done.exit_code == 0, done.output
    assert "created the key table billing_keys" in done.output
    assert from_url(url, prefix="billing:").records() == []


@pytest.mark.parametrize("url", ["memory://", "env://GUARD_KEYS", "redis://127.0.0.1:1/0"])
def test_init_has_nothing_to_do_for_stores_without_a_schema(url: str) -> None:
    done = CliRunner().invoke(cli, ["--store", url, "store", "init"])
    assert done.exit_code == 0, done.output
    assert "keep no schema: nothing to do" in done.output


def test_init_refuses_an_unknown_scheme_or_a_bad_prefix_in_one_line(tmp_path: Path) -> None:
    unknown = CliRunner().invoke(cli, ["--store", "mongodb://db/keys", "store", "init"])
    assert unknown.exit_code == 1
    assert "unknown store URL scheme" in unknown.output and "sqlite://" in unknown.output
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    bad = CliRunner().invoke(cli, ["--store", url, "store", "init", "--prefix", "Keys!"])
    assert bad.exit_code == 1
    assert "lowercase letters, digits and '_'" in bad.output


def test_the_key_commands_work_on_a_sql_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    env = {"GUARD_STORE_URL": url, "GUARD_SECRET_KEY": SECRET, "GUARD_PEPPER": PEPPER}
    runner = CliRunner()
    assert runner.invoke(cli, ["store", "init"], env=env).exit_code == 0
    created = runner.invoke(cli, ["keys", "create", "--name", "ops", "--json"], env=env)
    assert created.exit_code == 0, created.output
    token, key_id = json.loads(created.output)["token"], json.loads(created.output)["id"]
    rotated = runner.invoke(cli, ["keys", "rotate", key_id, "--json"], env=env)
    assert rotated.exit_code == 0, rotated.output
    new_id = json.loads(rotated.output)["id"]
    assert runner.invoke(cli, ["keys", "revoke", new_id], env=env).exit_code == 0
    verified = runner.invoke(cli, ["keys", "verify"], input=token, env=env)
    assert verified.exit_code == 0, verified.output  # in its grace period
    listed = runner.invoke(cli, ["keys", "list", "--json"], env=env)
    states = {row["id"]: row["state"] for row in json.loads(listed.output)}
    assert states == {key_id: "in grace period", new_id: "revoked"}
