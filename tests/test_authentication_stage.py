"""The authentication stage as a client meets it: each way of failing, the exact answer
and challenge it gets, the reason the audit trail records, and how every failure counts
against the client's address (and only against that address)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from stores import KeyRecord, MemoryStore, StoreUnavailable
from tests.conftest import Api

OTHER = {"REMOTE_ADDR": "10.0.0.9"}


def audited(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "guard.audit"]


@pytest.fixture
def audit(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="guard.audit")
    return caplog


def forged(api: Api) -> dict[str, str]:
    """A well-formed token signed with another deployment's secret."""
    return api.bearer(Api(GUARD_SECRET_KEY="o" * 32).issue("forger"))


def unknown(api: Api) -> dict[str, str]:
    token = api.issue("gone")
    with api.app.app_context():
        api.guard.keys.revoke(token[3:19])
    return api.bearer(token)


@pytest.mark.parametrize(
    ("headers", "status", "challenge", "reason"),
    [
        (lambda api: {}, 401, 'Bearer realm="shop"', "no_credentials"),
        (
            lambda api: {"Authorization": "Basic YQ=="},
            401,
            'Bearer realm="shop"',
            "unsupported_scheme",
        ),
        (
            lambda api: {"Authorization": "Bearer a b"},
            400,
            'Bearer realm="shop", error="invalid_request"',
            "malformed_bearer",
        ),
        (
            lambda api: {"Authorization": "Bearer " + "a" * 5000},
            400,
            'Bearer realm="shop", error="invalid_request"',
            "header_too_long",
        ),
        (forged, 401, 'Bearer realm="shop", error="invalid_token"', "bad_signature"),
        (unknown, 401, 'Bearer realm="shop", error="invalid_token"', "revoked"),
    ],
)
def test_each_failure_gets_its_exact_challenge_and_audited_reason(
    audit: pytest.LogCaptureFixture, headers: Any, status: int, challenge: str, reason: str
) -> None:
    api = Api(GUARD_REALM="shop")
    sent = headers(api)
    response = api.client.get("/orders", headers=sent)
    assert response.status_code == status
    # Sent with the header name's usual spelling, as clients expect it.
    assert ("WWW-Authenticate", challenge) in response.headers.to_wsgi_list()
    [entry] = audited(audit)
    assert (entry["status"], entry["outcome"], entry["reason"]) == (status, "denied", reason)


@pytest.mark.parametrize(
    "failure",
    [
        lambda api: {},
        lambda api: {"Authorization": "Basic YQ=="},
        lambda api: {"Authorization": "Bearer a b"},
        forged,
        unknown,
    ],
)
def test_no_failure_of_others_locks_out_a_valid_key_behind_the_same_address(
    failure: Any,
) -> None:
    # Review round 3, item 7: one broken client behind a NAT locked out everyone.
    api = Api(GUARD_FAILED_AUTH_LIMIT="2/minute")
    token = api.issue()
    sent = failure(api)
    for _ in range(5):  # a forgery past the limit is itself a blocked guess (429)
        assert api.client.get("/orders", headers=sent).status_code in (400, 401, 429)
    assert api.client.get("/orders", headers=api.bearer(token)).status_code == 200


@pytest.mark.parametrize("failure", [forged, unknown])
def test_past_the_limit_guesses_from_the_address_are_refused_unread(failure: Any) -> None:
    api = Api(GUARD_FAILED_AUTH_LIMIT="2/minute", GUARD_ACCEPT_IMPORTED_KEYS=True)
    secret = "legacy-secret-0123456789abcdef"
    with api.app.app_context():
        api.guard.keys.import_secret(secret, "legacy", scopes=["orders:read"])
    sent = failure(api)
    for _ in range(2):
        assert api.client.get("/orders", headers=sent).status_code == 401
    # Even the right secret: a blocked client's guesses are not looked up at all.
    assert api.client.get("/orders", headers=api.bearer(secret)).status_code == 429
    assert api.client.get("/orders", headers=api.bearer("wrong-guess")).status_code == 429
    other = api.client.get("/orders", headers=api.bearer(secret), environ_base=OTHER)
    assert other.status_code == 200


def test_requests_without_credentials_count_for_nothing() -> None:
    api = Api(GUARD_FAILED_AUTH_LIMIT="2/minute")
    for _ in range(5):
        assert api.client.get("/orders").status_code == 401
    assert api.client.get("/orders", headers=forged(api)).status_code == 401  # not 429


def test_failures_counted_in_the_shared_limiter_are_counted_per_address() -> None:
    api = Api(GUARD_FAILED_AUTH_LIMIT="2/minute")
    sent = unknown(api)
    assert api.client.get("/orders", headers=sent).status_code == 401
    assert api.client.get("/orders", headers=sent, environ_base=OTHER).status_code == 401
    # One failure each: neither address is over its limit of 2, so guesses are still read.
    guess = api.bearer("a-guess")
    assert api.client.get("/orders", headers=guess).status_code == 401
    assert api.client.get("/orders", headers=guess, environ_base=OTHER).status_code == 401


def test_a_blocked_client_without_credentials_is_told_to_authenticate() -> None:
    api = Api(GUARD_FAILED_AUTH_LIMIT="1/minute")
    api.client.get("/orders", headers=forged(api))
    assert api.client.get("/orders", headers=forged(api)).status_code == 429
    # No credentials is no guess: the answer says what is missing, not "wait".
    assert api.client.get("/orders").status_code == 401
    assert api.client.get("/orders", headers={"Authorization": "Bearer a b"}).status_code == 400


def test_a_blocked_address_is_refused_with_its_reason_and_wait(
    audit: pytest.LogCaptureFixture,
) -> None:
    api = Api(GUARD_FAILED_AUTH_LIMIT="1/minute")
    api.client.get("/orders", headers=forged(api))
    response = api.client.get("/orders", headers=forged(api))
    assert response.status_code == 429
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert response.headers["RateLimit-Policy"] == '"failed-auth";q=1;w=60'
    _, blocked = audited(audit)
    assert (blocked["status"], blocked["outcome"], blocked["reason"]) == (
        429,
        "denied",
        "too_many_failed_attempts",
    )


def test_a_valid_key_is_recorded_as_used() -> None:
    api = Api()
    token = api.issue("alice")
    assert api.client.get("/orders", headers=api.bearer(token)).status_code == 200
    api.close()  # writes the pending last-use times
    with api.app.app_context():
        assert api.guard.keys.store.last_used(token[3:19]) is not None


class DownStore(MemoryStore):
    def get(self, key_id: str) -> KeyRecord | None:
        raise StoreUnavailable("down")


def test_a_store_outage_is_audited_as_such(audit: pytest.LogCaptureFixture) -> None:
    api = Api()
    token = api.issue()
    with api.app.app_context():
        api.guard.keys.store = DownStore()
    response = api.client.get("/orders", headers=api.bearer(token))
    assert response.status_code == 503
    [entry] = audited(audit)
    assert (entry["status"], entry["reason"], entry["key_id"]) == (
        503,
        "store_unavailable",
        token[3:19],
    )


def guesses_from(api: Api, addresses: list[str]) -> list[int]:
    return [
        api.client.get(
            "/orders", headers=api.bearer("a-guess"), environ_base={"REMOTE_ADDR": address}
        ).status_code
        for address in addresses
    ]


def test_ipv6_guesses_are_counted_by_their_64_network() -> None:
    # Review round 3, item 6: 300 addresses of one /64 were never throttled.
    api = Api(GUARD_FAILED_AUTH_LIMIT="5/minute")
    one_host = [f"2001:db8:1:2::{n:x}" for n in range(1, 301)]
    statuses = guesses_from(api, one_host)
    assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}
    assert guesses_from(api, ["2001:db8:1:3::1"]) == [401]  # another /64, another client


def test_a_link_local_address_with_its_zone_is_counted_by_its_network() -> None:
    # A server on a link-local address reports its clients with their zone (fe80::1%eth0).
    api = Api(GUARD_FAILED_AUTH_LIMIT="2/minute")
    assert guesses_from(api, ["fe80::1%eth0", "fe80::2%eth0", "fe80::3%eth1"]) == [401, 401, 429]
    # Counted by the address alone: its zone names the server's interface, not the client.
    api = Api(GUARD_FAILED_AUTH_LIMIT="2/minute", GUARD_FAILED_AUTH_IPV6_PREFIX=128)
    assert guesses_from(api, ["fe80::1%eth0", "fe80::1%eth1", "fe80::1%eth2"]) == [401, 401, 429]


def test_the_ipv6_prefix_is_a_setting() -> None:
    api = Api(GUARD_FAILED_AUTH_LIMIT="5/minute", GUARD_FAILED_AUTH_IPV6_PREFIX=128)
    assert set(guesses_from(api, [f"2001:db8:1:2::{n:x}" for n in range(1, 50)])) == {401}


def test_an_ipv4_mapped_address_is_its_ipv4_client() -> None:
    api = Api(GUARD_FAILED_AUTH_LIMIT="2/minute")
    assert guesses_from(api, ["192.0.2.7", "::ffff:192.0.2.7", "192.0.2.7"]) == [401, 401, 429]


DOWN_LIMITER = {
    "GUARD_RATELIMIT_STORAGE_URL": "redis://127.0.0.1:1/0",
    "GUARD_STORE_TIMEOUT": 0.2,
    "GUARD_ACCEPT_IMPORTED_KEYS": True,
}


def import_legacy(api: Api) -> str:
    secret = "legacy-secret-0123456789abcdef"
    with api.app.app_context():
        api.guard.keys.import_secret(secret, "legacy", scopes=["orders:read"])
    return secret


def test_while_the_limiter_is_down_a_right_guess_answers_as_a_wrong_one(
    audit: pytest.LogCaptureFixture,
) -> None:
    # Review round 3, item 3: 503 for the right imported secret, 401 for a wrong one.
    api = Api(**DOWN_LIMITER)
    secret = import_legacy(api)
    right = api.client.get("/orders", headers=api.bearer(secret))
    wrong = api.client.get("/orders", headers=api.bearer("legacy-secret-not-this-one"))
    assert (right.status_code, wrong.status_code) == (503, 503)
    assert right.headers["Retry-After"] == wrong.headers["Retry-After"]
    # Both refused by the limiter's outage, as such: not by a guard error.
    assert [entry["reason"] for entry in audited(audit)] == ["limiter_unavailable"] * 2


def test_while_the_limiter_is_down_failures_are_still_throttled_in_process() -> None:
    api = Api(**DOWN_LIMITER, GUARD_RATELIMIT_FAIL_OPEN=True, GUARD_FAILED_AUTH_LIMIT="3/minute")
    import_legacy(api)
    statuses = [
        api.client.get("/orders", headers=api.bearer(f"guess-{n}")).status_code for n in range(6)
    ]
    assert statuses == [401, 401, 401, 429, 429, 429]


@pytest.mark.redis
def test_an_address_over_the_shared_limit_is_blocked_in_a_worker_that_saw_few_of_its_guesses(
    redis_url: str,
) -> None:
    # Two workers sharing the limiter: the second saw one failure of the address, the
    # shared count says it is the third of three, so its own throttle blocks the address.
    shared = {
        "GUARD_STORE_URL": redis_url,
        "GUARD_RATELIMIT_STORAGE_URL": redis_url,
        "GUARD_FAILED_AUTH_LIMIT": "3/minute",
        "GUARD_ACCEPT_IMPORTED_KEYS": True,
    }
    first, second = Api(**shared), Api(**shared)
    secret = import_legacy(first)
    try:
        for _ in range(2):
            assert first.client.get("/orders", headers=first.bearer("guess")).status_code == 401
        assert second.client.get("/orders", headers=second.bearer("guess")).status_code == 401
        blocked = second.client.get("/orders", headers=second.bearer(secret))
        assert blocked.status_code == 429
        assert "failed-auth" in blocked.headers["RateLimit-Policy"]
    finally:
        first.close()
        second.close()
