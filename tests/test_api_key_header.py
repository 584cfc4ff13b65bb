"""GUARD_API_KEY_HEADER: the token alone in a header such as X-API-Key, as a client sends it,
beside Authorization: Bearer, and never both."""

from __future__ import annotations

import json
import logging

import pytest

from guard import ConfigurationError, GuardConfig
from tests.conftest import BASE_CONFIG, Api


@pytest.fixture
def api() -> Api:
    return Api(GUARD_API_KEY_HEADER="X-API-Key")


def test_the_token_is_accepted_in_the_api_key_header(api: Api) -> None:
    token = api.issue()
    answer = api.client.get("/orders", headers={"X-API-Key": token})
    assert answer.status_code == 200 and answer.json == {"orders": [], "key": "alice"}
    # Header names are case-insensitive, and Bearer keeps working beside it.
    assert api.client.get("/orders", headers={"x-api-key": token}).status_code == 200
    assert api.client.get("/orders", headers=api.bearer(token)).status_code == 200


def test_a_bad_token_in_the_api_key_header_gets_the_one_invalid_token_answer(api: Api) -> None:
    token = api.issue()
    answer = api.client.get("/orders", headers={"X-API-Key": token[:-2] + "xx"})
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="api", error="invalid_token"'


@pytest.mark.parametrize(
    "authorization", ["Bearer {token}", "Bearer gk_other.token.sig", "Basic YTpi", "Bearer"]
)
def test_two_credentials_in_one_request_are_refused_400(api: Api, authorization: str) -> None:
    token = api.issue()
    headers = {"Authorization": authorization.format(token=token), "X-API-Key": token}
    answer = api.client.get("/orders", headers=headers)
    assert answer.status_code == 400 and answer.json is not None
    assert answer.json["error"] == "invalid_request"
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="api", error="invalid_request"'


@pytest.mark.parametrize("value", ["Bearer {token}", "{token} {token}", "{token}\u00e9"])
def test_an_api_key_header_holding_more_than_a_token_is_refused_400(api: Api, value: str) -> None:
    token = api.issue()
    answer = api.client.get("/orders", headers={"X-API-Key": value.format(token=token)})
    assert answer.status_code == 400
    assert 'error="invalid_request"' in answer.headers["WWW-Authenticate"]


def test_an_empty_api_key_header_is_no_credential(api: Api) -> None:
    token = api.issue()
    assert api.client.get("/orders", headers={"X-API-Key": ""}).status_code == 401
    both = api.client.get("/orders", headers={"X-API-Key": "", **api.bearer(token)})
    assert both.status_code == 200


def test_without_the_setting_the_header_is_not_a_credential() -> None:
    api = Api()
    token = api.issue()
    answer = api.client.get("/orders", headers={"X-API-Key": token})
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    both = api.client.get("/orders", headers={"X-API-Key": token, **api.bearer(token)})
    assert both.status_code == 200  # an unread header is no second credential


def test_guesses_in_the_api_key_header_are_throttled_like_bearer_ones() -> None:
    api = Api(GUARD_API_KEY_HEADER="X-API-Key", GUARD_FAILED_AUTH_LIMIT="2/minute")
    for _ in range(2):
        assert api.client.get("/orders", headers={"X-API-Key": "guess"}).status_code == 401
    assert api.client.get("/orders", headers={"X-API-Key": "guess"}).status_code == 429


def test_the_api_key_header_is_never_logged(
    api: Api, caplog: pytest.LogCaptureFixture, restore_logging: None
) -> None:
    caplog.set_level(logging.DEBUG)
    token = api.issue()
    api.client.get("/orders", headers={"X-API-Key": token})
    api.client.get("/orders", headers={"X-API-Key": token, **api.bearer(token)})
    api.client.get("/orders", headers={"X-API-Key": token[:-2] + "xx"})
    audit = [json.loads(r.getMessage()) for r in caplog.records if r.name == "guard.audit"]
    assert [entry["reason"] for entry in audit] == ["valid", "two_credentials", "malformed"]
    secret = token.split(".")[1]
    for record in caplog.records:
        shown = f"{record.getMessage()} {vars(record)}"
        assert secret not in shown and "x-api-key" not in shown.lower()


@pytest.mark.parametrize(
    "name",
    ["Authorization", "authorization", "Cookie", "X-Forwarded-For", "X_API_Key", "X API", "-X"],
)
def test_a_header_that_cannot_or_must_not_carry_the_key_is_refused_at_start_up(
    name: str,
) -> None:
    with pytest.raises(ConfigurationError, match="GUARD_API_KEY_HEADER"):
        GuardConfig.from_mapping({**BASE_CONFIG, "GUARD_API_KEY_HEADER": name})


def test_the_setting_reads_from_the_environment_as_written() -> None:
    config = GuardConfig.from_mapping(
        {**BASE_CONFIG, "GUARD_API_KEY_HEADER": "X-Api-Key"}, strict=False
    )
    assert config.api_key_header == "X-Api-Key"
    assert config.api_key_environ == "HTTP_X_API_KEY"
    assert GuardConfig.from_mapping(BASE_CONFIG).api_key_environ is None


@pytest.mark.parametrize(
    ("value", "status", "reason"),
    [
        ("k" * 4096, 401, "malformed"),  # as long as a header may be: read, and not a token
        ("k" * 4097, 400, "header_too_long"),
        ("gk_a b", 400, "malformed_api_key"),
    ],
)
def test_an_api_key_header_is_refused_with_its_audited_reason(
    api: Api, caplog: pytest.LogCaptureFixture, value: str, status: int, reason: str
) -> None:
    caplog.set_level(logging.INFO, logger="guard.audit")
    assert api.client.get("/orders", headers={"X-API-Key": value}).status_code == status
    [entry] = [json.loads(r.getMessage()) for r in caplog.records if r.name == "guard.audit"]
    assert entry["reason"] == reason
