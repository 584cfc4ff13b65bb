"""Address allowlists: `guard keys create --allow-from 10.0.0.0/8,2001:db8::/32` fences a
key to its networks, as an operator sets it and as a client meets it (issue 24, item 3)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from stores import InvalidRecord, KeyRecord
from stores.testing import ALICE
from tests.conftest import Api
from tests.test_guard_metrics import requests_total, scrape
from tests.test_key_disabling import audited, guard

NETWORKS = ["10.0.0.0/8", "2001:db8::/32"]


def get(api: Api, token: str, address: str, **headers: str) -> Any:
    return api.client.get(
        "/orders", headers=api.bearer(token, **headers), environ_base={"REMOTE_ADDR": address}
    )


@pytest.mark.parametrize(
    "address", ["10.1.2.3", "10.255.255.255", "2001:db8::1", "2001:db8:ffff::9", "::ffff:10.0.0.7"]
)
def test_a_key_is_served_from_its_networks(address: str) -> None:
    api = Api()
    token = api.issue(allow_from=NETWORKS)
    assert get(api, token, address).status_code == 200


@pytest.mark.parametrize("address", ["11.0.0.1", "192.0.2.1", "2001:db9::1", "::1", "fe80::1%eth0"])
def test_a_key_is_refused_403_from_elsewhere_with_the_reason_audited(
    address: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="guard.audit")
    api = Api()
    token = api.issue(allow_from=NETWORKS)
    refused = get(api, token, address)
    assert refused.status_code == 403
    assert refused.json["error"] == "address_not_allowed"
    assert refused.json["request_id"] == refused.headers["X-Request-ID"]
    [entry] = audited(caplog)
    assert (entry["outcome"], entry["reason"]) == ("denied", "address_not_allowed")


def test_a_key_without_a_list_is_served_from_anywhere() -> None:
    api = Api()
    token = api.issue()
    assert get(api, token, "203.0.113.9").status_code == 200
    assert get(api, token, "2001:db9::1").status_code == 200


def test_behind_a_trusted_proxy_the_forwarded_client_address_is_judged() -> None:
    proxy = "192.0.2.10"  # outside the key's networks: the proxy's own address never counts
    trusted = Api(GUARD_TRUSTED_PROXIES=1)
    token = trusted.issue(allow_from=NETWORKS)
    assert get(trusted, token, proxy, **{"X-Forwarded-For": "10.0.0.5"}).status_code == 200
    assert get(trusted, token, proxy, **{"X-Forwarded-For": "192.0.2.99"}).status_code == 403

    untrusted = Api()
    token = untrusted.issue(allow_from=NETWORKS)
    # No trusted proxy: a client cannot claim an allowed address by sending the header.
    forged = get(untrusted, token, proxy, **{"X-Forwarded-For": "10.0.0.5"})
    assert forged.status_code == 403


def test_a_refused_request_spends_none_of_the_keys_limit() -> None:
    api = Api()
    token = api.issue(allow_from=NETWORKS, rate_limit="1/minute")
    for _ in range(3):
        refused = get(api, token, "192.0.2.1")
        assert refused.status_code == 403 and "RateLimit" not in refused.headers
    served = get(api, token, "10.0.0.1")
    assert served.status_code == 200
    assert served.headers["RateLimit"] == '"key";r=0;t=60'
    assert get(api, token, "10.0.0.1").status_code == 429


def test_the_refusal_reaches_an_apps_own_403_handler() -> None:
    api = Api()

    @api.app.errorhandler(403)
    def forbidden(error: Exception) -> tuple[dict[str, str], int]:
        return {"mine": type(error).__name__}, 403

    token = api.issue(allow_from=NETWORKS)
    assert get(api, token, "192.0.2.1").json == {"mine": "AddressNotAllowed"}


def test_the_refusal_is_counted_and_its_series_exists_from_the_start() -> None:
    api = Api(GUARD_METRICS=True)
    scraper = api.issue("prometheus", scopes=["metrics:read"])
    assert requests_total(scrape(api, scraper))[("denied", "address_not_allowed")] == 0
    token = api.issue(allow_from=NETWORKS)
    get(api, token, "192.0.2.1")
    assert requests_total(scrape(api, scraper))[("denied", "address_not_allowed")] == 1


def test_the_cli_sets_shows_replaces_and_lifts_a_keys_networks(sqlite_url: str) -> None:
    networks = ("--allow-from", "10.0.0.0/8, 192.0.2.7")
    created = guard(sqlite_url, "create", "--name", "ci", "--scopes", "orders:read", *networks)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    [row] = json.loads(guard(sqlite_url, "list", "--json").stdout)
    key_id = row["id"]
    assert row["allow_from"] == ["10.0.0.0/8", "192.0.2.7/32"]  # a bare address is its /32
    assert "allow_from   10.0.0.0/8, 192.0.2.7/32" in guard(sqlite_url, "show", key_id).stdout

    api = Api(GUARD_STORE_URL=sqlite_url, GUARD_STORE_CACHE_TTL=0)
    try:
        assert get(api, token, "192.0.2.7").status_code == 200
        assert get(api, token, "192.0.2.8").json["error"] == "address_not_allowed"

        updated = guard(sqlite_url, "update", key_id, "--allow-from", "2001:db8::/32", "--json")
        assert updated.returncode == 0, updated.stderr
        assert json.loads(updated.stdout)["allow_from"] == ["2001:db8::/32"]
        assert get(api, token, "10.0.0.1").status_code == 403
        assert get(api, token, "2001:db8::5").status_code == 200

        lifted = guard(sqlite_url, "update", key_id, "--allow-anywhere", "--json")
        assert lifted.returncode == 0, lifted.stderr
        assert json.loads(lifted.stdout)["allow_from"] == []
        assert get(api, token, "203.0.113.1").status_code == 200
    finally:
        api.close()


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("10.0.0.300/8", "does not appear to be an IPv4 or IPv6 network"),
        ("10.0.0.1/8", "has host bits set"),
        ("10.0.0.0/8,example.com", "'example.com' does not appear"),
        ("", "--allow-from needs at least one network"),
    ],
)
def test_a_bad_network_is_a_one_line_usage_error_and_nothing_is_saved(
    sqlite_url: str, value: str, says: str
) -> None:
    bad = guard(sqlite_url, "create", "--name", "ci", "--allow-from", value)
    assert bad.returncode == 2 and says in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    assert json.loads(guard(sqlite_url, "list", "--json").stdout) == []


def test_update_takes_a_list_or_anywhere_not_both(sqlite_url: str) -> None:
    key_id = json.loads(guard(sqlite_url, "create", "--name", "ci", "--json").stdout)["id"]
    both = guard(sqlite_url, "update", key_id, "--allow-from", "10.0.0.0/8", "--allow-anywhere")
    assert both.returncode == 2 and "not both" in both.stderr


def test_rotation_keeps_the_networks() -> None:
    api = Api()
    with api.app.app_context():
        keys = api.guard.keys
        _, record = keys.create("ci", allow_from=NETWORKS)
        token, successor = keys.rotate(record.key_id, grace=60)
    assert successor.allow_from == tuple(NETWORKS)
    assert get(api, token, "192.0.2.1").status_code == 403


def test_a_record_written_before_the_field_existed_loads_from_anywhere() -> None:
    before = ALICE.to_dict()
    assert "allow_from" not in before  # what every earlier version wrote
    assert KeyRecord.from_dict(before).allow_from == ()
    for bad in (["10.0.0.1/8"], ["nowhere"], "10.0.0.0/8", ["10.0.0.0/8"] * 65):
        with pytest.raises(InvalidRecord, match="'allow_from' has an invalid value"):
            KeyRecord.from_dict({**before, "allow_from": bad})
