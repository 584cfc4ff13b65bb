"""Owners: `guard keys create --owner NAME` and `guard owners set NAME --rate-limit ...
--quota ...`: limits and a quota shared by every key of one owner, on top of each key's
own; as an operator runs them and a client meets them."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Api
from tests.guard_command import guard


def statuses(api: Api, *tokens: str) -> list[int]:
    return [api.client.get("/orders", headers=api.bearer(token)).status_code for token in tokens]


def test_two_keys_of_one_owner_share_its_limit_on_top_of_their_own() -> None:
    api = Api(GUARD_RATE_LIMIT="100/minute")
    with api.app.app_context():
        api.guard.keys.set_owner("acme", rate_limit="3/minute")
    first, second = api.issue("a", owner="acme"), api.issue("b", owner="acme")
    other = api.issue("c", owner="globex")  # an owner with no record: only a label
    assert statuses(api, first, second, first) == [200, 200, 200]
    refused = api.client.get("/orders", headers=api.bearer(second))
    assert refused.status_code == 429 and refused.json is not None
    assert refused.json["error"] == "rate_limited"
    assert refused.headers["RateLimit-Policy"] == '"key";q=100;w=60, "owner";q=3;w=60'
    assert refused.headers["RateLimit"].split(", ")[1].startswith('"owner";r=0;t=')
    assert statuses(api, first, other) == [429, 200]
    # Its own limit still holds for each key.
    mine = api.issue("d", owner="acme", rate_limit="1/minute")
    with api.app.app_context():
        api.guard.keys.set_owner("acme", rate_limit="100/minute")
    assert statuses(api, mine, mine) == [200, 429]


def test_an_owners_quota_is_spent_by_all_of_its_keys() -> None:
    api = Api(GUARD_RATE_LIMIT="100/minute")
    with api.app.app_context():
        api.guard.keys.set_owner("acme", quota=3, quota_refill="monthly")
    first, second = api.issue("a", owner="acme"), api.issue("b", owner="acme", quota=10)
    assert statuses(api, first, second, second) == [200, 200, 200]
    refused = api.client.get("/orders", headers=api.bearer(first))
    assert refused.status_code == 429 and refused.json is not None
    assert refused.json["error"] == "quota_exceeded"
    assert '"owner-quota";q=3;w=' in refused.headers["RateLimit-Policy"]
    assert '"owner-quota";r=0;t=' in refused.headers["RateLimit"]
    # A refused request spends nothing: the other key's own quota is where it was.
    spent = api.client.get("/orders", headers=api.bearer(second))
    assert spent.status_code == 429 and '"quota";r=8,' in spent.headers["RateLimit"]
    with api.app.app_context():
        api.guard.keys.set_owner("acme", quota=5)  # a top-up, counted afresh
    assert statuses(api, first, second) == [200, 200]


def test_the_owner_is_in_the_audit_entry_and_on_the_current_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="guard.audit")
    api = Api()
    token = api.issue("a", owner="acme")

    @api.app.get("/owner")
    def owner() -> object:
        key = api.guard.current_key
        return {"owner": None if key is None else key.owner}

    assert api.client.get("/owner", headers=api.bearer(token)).json == {"owner": "acme"}
    entries = [json.loads(r.getMessage()) for r in caplog.records if r.name == "guard.audit"]
    assert entries[-1]["owner"] == "acme" and entries[-1]["key_name"] == "a"


def test_a_rotated_key_keeps_its_owner() -> None:
    api = Api(GUARD_RATE_LIMIT="100/minute")
    with api.app.app_context():
        api.guard.keys.set_owner("acme", rate_limit="2/minute")
    old = api.issue("a", owner="acme")
    assert statuses(api, old) == [200]
    with api.app.app_context():
        (record,) = api.guard.keys.store.records()
        new, successor = api.guard.keys.rotate(record.key_id, grace=3600)
    assert successor.owner == "acme"
    assert statuses(api, new, old) == [200, 429]


def test_the_owner_label_is_there_only_when_asked_for() -> None:
    def labels(api: Api) -> list[dict[str, str]]:
        text = api.client.get("/metrics").text
        return [
            sample.labels
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "guard_requests_total"
        ]

    api = Api(GUARD_METRICS=True, GUARD_METRICS_PUBLIC=True, GUARD_METRICS_OWNER_LABEL=True)
    statuses(api, api.issue("a", owner="acme"), api.issue("b"))
    found = labels(api)
    assert {"outcome": "allowed", "reason": "valid", "owner": "acme"} in found
    assert {"outcome": "allowed", "reason": "valid", "owner": ""} in found
    plain = Api(GUARD_METRICS=True, GUARD_METRICS_PUBLIC=True)
    statuses(plain, plain.issue("a", owner="acme"))
    assert all("owner" not in found for found in labels(plain))


def test_an_operator_sets_lists_shows_and_unsets_owners(sqlite_url: str) -> None:
    done = guard(sqlite_url, "owners", "set", "acme", "--rate-limit", "2/minute", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "name": "acme",
        "rate_limit": "2/minute",
        "quota": None,
        "keys": 0,
    }
    created = [
        json.loads(
            guard(
                sqlite_url,
                "keys",
                "create",
                "--name",
                n,
                "--owner",
                "acme",
                "--scopes",
                "orders:read",
                "--json",
            ).stdout
        )
        for n in ("a", "b")
    ]
    guard(sqlite_url, "keys", "create", "--name", "solo")
    listed = json.loads(guard(sqlite_url, "keys", "list", "--owner", "acme", "--json").stdout)
    assert sorted(row["name"] for row in listed) == ["a", "b"]
    assert {row["owner"] for row in listed} == {"acme"}
    quota = guard(sqlite_url, "owners", "set", "acme", "--quota", "100", "--quota-refill", "30d")
    assert quota.returncode == 0, quota.stderr
    shown = json.loads(guard(sqlite_url, "owners", "show", "acme", "--json").stdout)
    assert shown["rate_limit"] == "2/minute"  # kept: only the quota was given
    assert shown["quota"].startswith("100 30d since ") and shown["keys"] == 2
    rows = json.loads(guard(sqlite_url, "owners", "list", "--json").stdout)
    assert [row["name"] for row in rows] == ["acme"]

    # No cache: SQLite has no notifications, and this test is about the owner.
    api = Api(GUARD_STORE_URL=sqlite_url, GUARD_STORE_CACHE_TTL=0, GUARD_RATE_LIMIT="100/minute")
    tokens = [row["token"] for row in created]
    assert statuses(api, *tokens, *tokens) == [200, 200, 429, 429]
    unset = guard(sqlite_url, "owners", "unset", "acme")
    assert unset.returncode == 0 and "unset owner acme" in unset.stderr
    assert (
        guard(sqlite_url, "owners", "show", "acme").stderr.strip() == "Error: no owner named acme"
    )
    api.close()


def test_an_operator_moves_a_key_to_another_owner_and_its_rotation_moves_with_it(
    sqlite_url: str,
) -> None:
    made = guard(sqlite_url, "keys", "create", "--name", "a", "--owner", "acme", "--json")
    key_id = json.loads(made.stdout)["id"]
    rotated = json.loads(guard(sqlite_url, "keys", "rotate", key_id, "--json").stdout)
    moved = guard(sqlite_url, "keys", "update", rotated["id"], "--owner", "globex", "--json")
    assert moved.returncode == 0, moved.stderr
    assert json.loads(moved.stdout)["owner"] == "globex"
    old = json.loads(guard(sqlite_url, "keys", "show", key_id, "--json").stdout)
    assert old["owner"] == "globex"  # the same credential, mid-rotation
    alone = guard(sqlite_url, "keys", "update", key_id, "--owner", "none", "--json")
    assert json.loads(alone.stdout)["owner"] is None


def test_the_command_refuses_what_no_owner_could_hold(sqlite_url: str) -> None:
    bad = guard(sqlite_url, "owners", "set", "two words", "--rate-limit", "5/minute")
    assert bad.returncode == 2 and "field 'name' has an invalid value" in bad.stderr
    nothing = guard(sqlite_url, "owners", "set", "acme")
    assert nothing.returncode == 2 and "give --rate-limit or --quota" in nothing.stderr
    key = guard(sqlite_url, "keys", "create", "--name", "a", "--owner", "two words")
    assert key.returncode == 2 and "field 'owner' has an invalid value" in key.stderr


def test_an_env_store_keeps_no_owners() -> None:
    done = guard("env://GUARD_KEYS", "owners", "set", "acme", "--rate-limit", "5/minute")
    assert done.returncode == 1 and "read-only at run time" in done.stderr


@pytest.mark.redis
def test_on_redis_an_owners_limits_and_quota_are_counted_with_the_keys(
    redis_url: str,
) -> None:
    api = Api(
        GUARD_STORE_URL=redis_url,
        GUARD_RATELIMIT_STORAGE_URL=redis_url,
        GUARD_RATE_LIMIT="100/minute",
    )
    try:
        with api.app.app_context():
            api.guard.keys.set_owner("acme", rate_limit="50/minute", quota=3)
        first, second = api.issue("a", owner="acme", quota=5), api.issue("b", owner="acme")
        answers: list[Any] = [
            api.client.get("/orders", headers=api.bearer(t)) for t in (first, second, first, second)
        ]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert answers[-1].json is not None and answers[-1].json["error"] == "quota_exceeded"
    finally:
        api.close()
