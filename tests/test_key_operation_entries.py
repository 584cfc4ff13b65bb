"""Key and owner operations as an app's own code makes them (``guard.keys``), in
process: the audit entry each writes, what each keeps and changes, and the refusals
around owners, costs and networks. The ``guard`` command's side of the same is in
tests/test_key_audit.py and tests/test_owners.py."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Blueprint, Request
from flask.views import MethodView

from guard import InvalidKeySettings, Keys, TokenCodec
from guard.cli.commands import cli
from stores import InvalidRecord, MemoryStore, OwnerRecord, StoreUnavailable
from tests.conftest import PEPPER, SECRET, Api, Clock


@pytest.fixture
def trail(caplog: pytest.LogCaptureFixture) -> Callable[[], list[dict[str, Any]]]:
    caplog.set_level(logging.INFO, logger="guard.audit")

    def entries() -> list[dict[str, Any]]:
        found = [json.loads(r.getMessage()) for r in caplog.records if r.name == "guard.audit.keys"]
        caplog.clear()
        return found

    return entries


@pytest.fixture
def keys(clock: Clock) -> Keys:
    keys = Keys(MemoryStore(), TokenCodec([SECRET], [PEPPER]), clock=clock)
    keys.actor = "ops-dana"
    return keys


def summary(entry: dict[str, Any]) -> tuple[Any, ...]:
    return entry["event"], entry["actor"], entry["changed"], entry["confirmed"]


def test_each_key_operation_writes_its_event_with_what_changed(
    keys: Keys, trail: Callable[[], list[dict[str, Any]]]
) -> None:
    _, record = keys.create("ci", scopes=["a"], allow_from=["10.0.0.0/8"], owner="acme")
    [created] = trail()
    assert summary(created)[:2] == ("key.created", "ops-dana")
    assert created["owner"] == "acme" and created["values"]["allow_from"] == ["10.0.0.0/8"]
    key_id = record.key_id

    keys.update(key_id, scopes=["a", "b"])  # keeps the owner and the networks
    kept = keys.store.require(key_id)
    assert (kept.owner, kept.allow_from, kept.quota) == ("acme", ("10.0.0.0/8",), None)
    assert [summary(e)[2] for e in trail()] == [["scopes"]]
    keys.update(key_id, allow_from=["192.0.2.0/24"], owner="", quota=10, quota_refill="1d")
    [updated] = trail()
    assert summary(updated) == ("key.updated", "ops-dana", ["allow_from", "owner", "quota"], True)
    changed = keys.store.require(key_id)
    assert changed.allow_from == ("192.0.2.0/24",) and changed.owner is None
    assert changed.quota is not None and changed.quota.refill == "1d"
    # A top-up keeps the refill it had, and what it is not given.
    keys.update(key_id, quota=20)
    topped = keys.store.require(key_id)
    assert topped.quota is not None
    assert (topped.quota.allowance, topped.quota.refill) == (20, "1d")
    assert topped.allow_from == ("192.0.2.0/24",)
    keys.update(key_id, metadata={"team": "core"})  # keeps the quota
    assert keys.store.require(key_id).quota == topped.quota
    keys.update(key_id, quota=0)  # removes it
    assert keys.store.require(key_id).quota is None
    assert [summary(e)[2] for e in trail()] == [["quota"], ["metadata"], ["quota"]]

    keys.disable(key_id)
    keys.enable(key_id)
    assert [(e["event"], e["values"]) for e in trail()] == [
        ("key.disabled", {"disabled": True}),
        ("key.enabled", {"disabled": False}),
    ]
    _, successor = keys.rotate(key_id, grace=60)
    rotated = trail()
    assert {(e["event"], e["key_id"]) for e in rotated} >= {("key.rotated", key_id)}
    keys.revoke(successor.key_id)
    [revoked] = trail()
    assert (revoked["event"], revoked["key_id"]) == ("key.revoked", successor.key_id)
    keys.import_secret("legacy-secret-0123456789abcdef", "legacy", allow_from=["10.1.0.0/16"])
    [imported] = trail()
    assert imported["event"] == "key.imported"
    assert imported["values"]["allow_from"] == ["10.1.0.0/16"]
    # An operation made outside the store (a reset of the limiter's counters) is one the
    # caller made: confirmed.
    keys.audit("key.limits_reset", record, {"windows": ["key"]})
    [reset] = trail()
    assert summary(reset) == ("key.limits_reset", "ops-dana", ["windows"], True)


def test_owner_operations_write_their_events_and_keep_what_they_are_not_given(
    keys: Keys, trail: Callable[[], list[dict[str, Any]]], clock: Clock
) -> None:
    keys.set_owner("acme", rate_limit="5/minute")
    keys.set_owner("acme", quota=100, quota_refill="monthly", now=clock() - 60)
    kept = keys.store.get_owner("acme")
    assert kept is not None and kept.rate_limit == "5/minute"
    assert kept.quota is not None
    assert (kept.quota.allowance, kept.quota.since) == (100, clock() - 60)
    keys.set_owner("acme", rate_limit="5/minute")  # as it was: nothing changed
    keys.set_owner("acme", rate_limit="")
    cleared = keys.store.get_owner("acme")
    assert cleared is not None and cleared.rate_limit is None and cleared.quota == kept.quota
    entries = trail()
    assert [(e["event"], e["owner"], e["actor"], e["changed"]) for e in entries] == [
        ("owner.set", "acme", "ops-dana", ["quota", "rate_limit"]),
        ("owner.set", "acme", "ops-dana", ["quota"]),
        ("owner.set", "acme", "ops-dana", []),
        ("owner.set", "acme", "ops-dana", ["rate_limit"]),
    ]
    assert entries[1]["values"]["quota"]["allowance"] == 100
    assert keys.unset_owner("acme") is True
    assert keys.unset_owner("acme") is False  # nothing to remove: nothing audited
    assert [(e["event"], e["owner"], e["actor"]) for e in trail()] == [
        ("owner.unset", "acme", "ops-dana")
    ]
    assert keys.store.get_owner("acme") is None
    # A top-up keeps the refill it had.
    keys.set_owner("acme", quota=10, quota_refill="30d")
    keys.set_owner("acme", quota=20)
    topped = keys.store.get_owner("acme")
    assert topped is not None and topped.quota is not None
    assert (topped.quota.allowance, topped.quota.refill) == (20, "30d")


def test_a_network_with_host_bits_is_refused_naming_it(keys: Keys) -> None:
    with pytest.raises(InvalidKeySettings) as refused:
        keys.create("ci", allow_from=["10.0.0.1/8"])
    assert str(refused.value) == "not saved: 10.0.0.1/8 has host bits set"
    assert keys.store.records() == []


def test_the_command_audits_an_env_file_write_with_its_actor(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, trail: Callable[[], list[dict[str, Any]]]
) -> None:
    env_file = tmp_path / ".env"
    monkeypatch.setenv("GUARD_SECRET_KEY", SECRET)
    monkeypatch.setenv("GUARD_PEPPER", PEPPER)
    monkeypatch.setenv("GUARD_STORE_URL", "env://GUARD_KEYS")
    command = ["--actor", "ops-erin", "keys", "create", "--name", "cd", "--env-file"]
    done = CliRunner().invoke(cli, [*command, str(env_file)])
    assert done.exit_code == 0, done.output
    [entry] = trail()
    assert (entry["event"], entry["actor"]) == ("key.created", "ops-erin")


class OwnerlessStore(MemoryStore):
    """A store whose owner records cannot be read: down, or holding one no reader takes."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def get_owner(self, name: str) -> OwnerRecord | None:
        raise self.error


@pytest.mark.parametrize(
    ("error", "reason"),
    [(StoreUnavailable("down"), "store_unavailable"), (InvalidRecord("bad"), "invalid_record")],
)
def test_a_key_whose_owner_cannot_be_read_is_refused_never_served_without_its_limits(
    caplog: pytest.LogCaptureFixture, error: Exception, reason: str
) -> None:
    caplog.set_level(logging.INFO, logger="guard.audit")
    api = Api()
    store = OwnerlessStore(error)
    with api.app.app_context():
        api.guard.keys.store = store
    token = api.issue(owner="acme")
    refused = api.client.get("/orders", headers=api.bearer(token))
    assert refused.status_code == 503 and int(refused.headers["Retry-After"]) > 0
    [entry] = [json.loads(r.getMessage()) for r in caplog.records if r.name == "guard.audit"]
    assert entry["reason"] == reason
    assert api.client.get("/orders", headers=api.bearer(api.issue())).status_code == 200


def test_a_cost_that_is_not_a_whole_number_is_a_503_saying_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = Api()

    @api.app.get("/reports")
    @api.guard.cost(lambda request: "two")  # type: ignore[arg-type, return-value]
    def reports() -> str:
        return "reports"

    token = api.issue(quota=10)
    with caplog.at_level(logging.ERROR, logger="guard.errors"):
        refused = api.client.get("/reports", headers=api.bearer(token))
    assert refused.status_code == 503
    [error] = [r for r in caplog.records if r.name == "guard.errors"]
    assert error.exc_info is not None
    assert str(error.exc_info[1]) == "a view's cost must be a whole number of at least 0, not 'two'"


def test_cost_on_a_blueprint_is_refused_with_the_reason() -> None:
    api = Api()
    with pytest.raises(TypeError) as refused:
        api.guard.cost(2)(Blueprint("reports", __name__))
    assert str(refused.value) == "@guard.cost applies to views, not to a whole blueprint"


def test_a_method_views_methods_spend_their_own_cost() -> None:
    api = Api()

    def by_rows(request: Request) -> int:
        return int(request.args.get("rows", "1"))

    class Reports(MethodView):
        @api.guard.cost(3)
        def get(self) -> str:
            return "report"

        def post(self) -> str:
            return "queued"

    class Exports(MethodView):
        @api.guard.cost(by_rows)
        def dispatch_request(self, **kwargs: Any) -> Any:
            return super().dispatch_request(**kwargs)

        def get(self) -> str:
            return "export"

    api.app.add_url_rule("/reports", view_func=Reports.as_view("reports"))
    api.app.add_url_rule("/exports", view_func=Exports.as_view("exports"))
    api.app.add_url_rule("/bulk", view_func=api.guard.cost(4)(Reports.as_view("bulk")))
    token = api.issue(quota=20)

    def left(method: str, path: str) -> int:
        answer = api.client.open(path, method=method, headers=api.bearer(token))
        assert answer.status_code == 200
        [state] = [part for part in answer.headers["RateLimit"].split(", ") if "quota" in part]
        return int(state.split(";r=")[1].split(";")[0])

    assert left("GET", "/reports") == 17  # the method's own cost
    assert left("POST", "/reports") == 16  # no cost of its own: 1
    assert left("GET", "/exports?rows=5") == 11  # dispatch_request's
    assert left("POST", "/bulk") == 7  # the whole view's
