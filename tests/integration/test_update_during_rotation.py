"""``guard keys update`` on a key in a rotation changes every token of it that works.

Review round 3, item 18: updating a key in its grace period changed only the old record,
and the successor kept the old scopes: a scope taken away came back with the rotation.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Api
from tests.test_cli import Shell
from tests.test_key_audit import entries, notices


@pytest.fixture
def shell(tmp_path: Path, redis_url: str) -> Shell:
    return Shell(tmp_path, GUARD_STORE_URL=redis_url)


def rotated(shell: Shell) -> tuple[dict[str, str], dict[str, str]]:
    """A key allowed to read and write orders, rotated with an hour of grace."""
    scopes = "orders:read,orders:write"
    old = json.loads(
        shell.ok("keys", "create", "--name", "ci", "--scopes", scopes, "--json").stdout
    )
    new = json.loads(shell.ok("keys", "rotate", old["id"], "--grace", "1h", "--json").stdout)
    return old, new


def writes(redis_url: str, *tokens: str) -> list[int]:
    """What a service on the store answers each token's POST /orders."""
    api = Api(GUARD_STORE_URL=redis_url)
    try:
        return [api.client.post("/orders", headers=api.bearer(t)).status_code for t in tokens]
    finally:
        api.close()


@pytest.mark.parametrize("named", ["old", "successor"])
def test_a_scope_taken_from_a_key_in_its_grace_period_is_taken_from_both_tokens(
    shell: Shell, redis_url: str, named: str
) -> None:
    old, new = rotated(shell)
    assert writes(redis_url, old["token"], new["token"]) == [201, 201]
    key_id, other = (old["id"], new["id"]) if named == "old" else (new["id"], old["id"])
    done = shell.ok("keys", "update", key_id, "--scopes", "orders:read")
    assert writes(redis_url, old["token"], new["token"]) == [403, 403]
    assert (
        notices(done.stderr)
        == f"updated {key_id} (ci), and with it {other} (the same key, mid-rotation)\n"
    )
    assert sorted(e["key_id"] for e in entries(done.stderr)) == sorted([key_id, other])
    for record in (old, new):
        shown = json.loads(shell.ok("keys", "show", record["id"], "--json").stdout)
        assert shown["scopes"] == ["orders:read"]


def test_a_predecessor_past_its_grace_period_is_left_as_it_was(
    shell: Shell, redis_url: str
) -> None:
    old = json.loads(shell.ok("keys", "create", "--name", "ci", "--json").stdout)
    new = json.loads(shell.ok("keys", "rotate", old["id"], "--grace", "0s", "--json").stdout)
    done = shell.ok("keys", "update", new["id"], "--scopes", "orders:read")
    assert notices(done.stderr) == f"updated {new['id']} (ci)\n"
    assert [e["key_id"] for e in entries(done.stderr)] == [new["id"]]
    shown = json.loads(shell.ok("keys", "show", old["id"], "--json").stdout)
    assert shown["state"] == "rotated" and shown["scopes"] == []
