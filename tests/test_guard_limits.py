"""Per-key limits, the failed-attempt throttle and the RateLimit headers."""

from __future__ import annotations

import limits.storage
import pytest
from flask import Flask

from guard import Guard
from tests.conftest import LOCAL_CONFIG, Api

ORIGIN = "https://app.example"


def test_each_key_gets_the_default_limit_and_rate_limit_headers() -> None:
    api = Api(GUARD_RATE_LIMIT="2/minute")
    alice, bob = api.issue("alice"), api.issue("bob")
    first = api.client.get("/orders", headers=api.bearer(alice))
    assert first.headers["RateLimit-Policy"] == '"key";q=2;w=60'
    assert first.headers["RateLimit"].startswith('"key";r=1;t=')
    assert api.client.get("/orders", headers=api.bearer(alice)).status_code == 200
    refused = api.client.get("/orders", headers=api.bearer(alice))
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["RateLimit"].startswith('"key";r=0;')
    assert refused.json is not None and refused.json["error"] == "rate_limited"
    assert api.client.get("/orders", headers=api.bearer(bob)).status_code == 200


def test_a_keys_own_limit_overrides_the_default() -> None:
    api = Api(GUARD_RATE_LIMIT="100/minute")
    token = api.issue(rate_limit="1/minute")
    assert api.client.get("/orders", headers=api.bearer(token)).status_code == 200
    assert api.client.get("/orders", headers=api.bearer(token)).status_code == 429


def test_past_the_failed_attempts_limit_guesses_are_refused_and_a_valid_key_is_not() -> None:
    api = Api(GUARD_FAILED_AUTH_LIMIT="3/minute")
    token = api.issue()
    for _ in range(3):
        assert api.client.get("/orders", headers=api.bearer("wrong")).status_code == 401
    # Past the limit no guess from that address is checked, so guessing learns nothing;
    # a token this server signed cannot be guessed, so it is still served.
    response = api.client.get("/orders", headers=api.bearer("wrong"))
    assert response.status_code == 429
    assert response.headers["RateLimit-Policy"] == '"failed-auth";q=3;w=60'
    assert api.client.get("/orders", headers=api.bearer(token)).status_code == 200


def test_successes_do_not_count_against_the_address() -> None:
    api = Api(GUARD_FAILED_AUTH_LIMIT="2/minute")
    token = api.issue()
    for _ in range(5):
        assert api.client.get("/orders", headers=api.bearer(token)).status_code == 200


def test_preflight_is_answered_without_a_key_and_counts_against_no_limit() -> None:
    api = Api(GUARD_CORS_ORIGINS="https://app.example", GUARD_FAILED_AUTH_LIMIT="1/minute")
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "GET"}
    for _ in range(3):
        response = api.client.options("/orders", headers=preflight)
        assert response.status_code == 204
        assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert api.client.get("/orders", headers=api.bearer(api.issue())).status_code == 200


@pytest.mark.parametrize(("fail_open", "status"), [(False, 503), (True, 200)])
def test_limiter_outage_follows_the_configured_policy(fail_open: bool, status: int) -> None:
    api = Api(
        GUARD_RATELIMIT_STORAGE_URL="redis://127.0.0.1:1/0", GUARD_RATELIMIT_FAIL_OPEN=fail_open
    )
    token = api.issue()
    response = api.client.get("/orders", headers=api.bearer(token))
    assert response.status_code == status
    if status == 503:
        assert response.headers["Retry-After"] == "5"


def test_auth_still_fails_closed_when_the_limiter_fails_open() -> None:
    api = Api(GUARD_RATELIMIT_STORAGE_URL="redis://127.0.0.1:1/0", GUARD_RATELIMIT_FAIL_OPEN=True)
    assert api.client.get("/orders", headers=api.bearer("wrong")).status_code == 401
    assert api.client.get("/orders").status_code == 401


def test_flask_limiter_decorators_still_work_per_route() -> None:
    guard = Guard()
    app = Flask("x")
    app.config.update(LOCAL_CONFIG)

    @app.get("/expensive")
    @guard.limiter.limit("1/minute")
    def expensive() -> str:
        return "ok"

    guard.init_app(app)
    with app.app_context():
        token, _ = guard.keys.create("alice")
    client = app.test_client()
    assert client.get("/expensive", headers=Api.bearer(token)).status_code == 200
    refused = client.get("/expensive", headers=Api.bearer(token))
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "60"
    assert refused.json is not None and refused.json["error"] == "rate_limited"
    assert client.get("/expensive").status_code == 401  # the guard still runs first


class CountingStorage(limits.storage.MemoryStorage):
    """A ``limits`` storage that counts the hits reaching it, plugged in by URL as any
    ``limits`` backend is (``STORAGE_SCHEME``)."""

    STORAGE_SCHEME = ["counting"]  # noqa: RUF012 - limits reads it as a list
    hits = 0

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        CountingStorage.hits += 1
        return super().incr(key, expiry, amount)


@pytest.fixture
def counted() -> type[CountingStorage]:
    CountingStorage.hits = 0
    return CountingStorage


def test_forged_tokens_never_reach_the_store_or_the_shared_limiter(
    counted: type[CountingStorage],
) -> None:
    api = Api(GUARD_FAILED_AUTH_LIMIT="1000/minute", GUARD_RATELIMIT_STORAGE_URL="counting://")
    token = api.issue()
    store_calls: list[str] = []
    store = api.app.extensions["guard"].keys.store
    original_get = store.get
    store.get = lambda key_id: store_calls.append(key_id) or original_get(key_id)
    forged = [token[:-1] + "x", token.replace(".", "-", 1), "gk_" + "0" * 16 + ".a.b", "junk"]
    for candidate in forged * 25:
        assert api.client.get("/orders", headers=api.bearer(candidate)).status_code == 401
    assert counted.hits == 0 and store_calls == []


def test_failures_that_needed_the_store_count_in_the_shared_limiter(
    counted: type[CountingStorage],
) -> None:
    api = Api(GUARD_FAILED_AUTH_LIMIT="2/minute", GUARD_RATELIMIT_STORAGE_URL="counting://")
    token = api.issue()
    with api.app.app_context():
        api.guard.keys.revoke(token[3:19])
    assert api.client.get("/orders", headers=api.bearer(token)).status_code == 401
    assert api.client.get("/orders", headers=api.bearer(token)).status_code == 401
    assert counted.hits == 2
    blocked = api.client.get("/orders", headers=api.bearer("a-guess"))
    assert blocked.status_code == 429
    assert 1 <= int(blocked.headers["Retry-After"]) <= 60
    assert counted.hits == 2  # a blocked address's guess is refused before anything
    assert api.client.get("/orders", headers=api.bearer(api.issue("fresh"))).status_code == 200


def test_an_authenticated_request_makes_one_limiter_call(counted: type[CountingStorage]) -> None:
    api = Api(GUARD_RATELIMIT_STORAGE_URL="counting://")
    token = api.issue()
    for _ in range(5):
        api.client.get("/orders", headers=api.bearer(token))
    assert counted.hits == 5


def test_an_exempt_view_looks_at_no_token_so_guesses_there_learn_nothing(
    counted: type[CountingStorage],
) -> None:
    # Review finding: an exempt view verified any bearer token before Flask knew the
    # view, uncounted and unaudited, with a timing difference for a correct guess.
    api = Api(
        GUARD_RATE_LIMIT="1/minute",
        GUARD_RATELIMIT_STORAGE_URL="counting://",
        GUARD_ACCEPT_IMPORTED_KEYS=True,
    )
    token = api.issue()
    store_calls: list[str] = []
    store = api.app.extensions["guard"].keys.store
    original = store.find_digest
    store.find_digest = lambda digest: store_calls.append(digest) or original(digest)
    for guess in [token, *(f"guess-{n}" for n in range(50))]:
        response = api.client.get("/health", headers=api.bearer(guess))
        assert response.status_code == 200
        assert "RateLimit" not in response.headers and "Cache-Control" not in response.headers
    assert counted.hits == 0 and store_calls == []
    # The key's one request a minute is still there for a protected view.
    assert api.client.get("/orders", headers=api.bearer(token)).status_code == 200
    assert api.client.get("/orders", headers=api.bearer(token)).status_code == 429


@pytest.mark.parametrize("setting", ["GUARD_RATE_LIMIT", "key"])
def test_every_limit_of_a_multi_limit_string_is_enforced(setting: str) -> None:
    # Review finding: '5/minute;1/day' enforced only the first part.
    limit = "3/minute;2/hour"
    api = Api(**({setting: limit} if setting.startswith("GUARD_") else {}))
    token = api.issue(rate_limit=limit) if setting == "key" else api.issue()
    first = api.client.get("/orders", headers=api.bearer(token))
    assert first.headers["RateLimit-Policy"] == '"key";q=3;w=60, "key-2";q=2;w=3600'
    assert first.headers["RateLimit"].startswith('"key";r=2;t=')
    assert ', "key-2";r=1;t=' in first.headers["RateLimit"]
    assert api.client.get("/orders", headers=api.bearer(token)).status_code == 200
    refused = api.client.get("/orders", headers=api.bearer(token))
    assert refused.status_code == 429
    assert 60 < int(refused.headers["Retry-After"]) <= 3600  # the hour's window, not the minute's


@pytest.mark.parametrize("value", ["5/minute;", "5/minute;often", "often"])
def test_a_multi_limit_string_with_a_bad_part_stops_start_up(value: str) -> None:
    from guard import ConfigurationError

    with pytest.raises(ConfigurationError, match="GUARD_RATE_LIMIT"):
        Api(GUARD_RATE_LIMIT=value)


@pytest.mark.parametrize("limiter_first", [True, False])
def test_per_route_limits_work_whether_the_limiter_is_used_before_or_after_init_app(
    limiter_first: bool,
) -> None:
    # Review finding: Guard(app) then @guard.limiter.limit(...) (the README's order) left
    # Flask-Limiter uninitialised, and every request passed.
    app = Flask("x")
    app.config.update(LOCAL_CONFIG)
    guard = Guard() if limiter_first else Guard(app)

    @app.get("/expensive")
    @guard.limiter.limit("1/minute")
    def expensive() -> str:
        return "ok"

    if limiter_first:
        guard.init_app(app)
    with app.app_context():
        token, _ = guard.keys.create("alice")
    client = app.test_client()
    assert client.get("/expensive", headers=Api.bearer(token)).status_code == 200
    assert client.get("/expensive", headers=Api.bearer(token)).status_code == 429


def test_a_request_sent_to_https_or_a_preflight_does_not_count_against_the_key() -> None:
    api = Api(GUARD_FORCE_HTTPS=True, GUARD_RATE_LIMIT="1/minute", GUARD_CORS_ORIGINS=ORIGIN)
    token = api.issue()
    redirected = api.client.get("/orders", headers=api.bearer(token))
    assert redirected.status_code == 301
    preflight = api.client.options(
        "/orders",
        base_url="https://localhost",
        headers=api.bearer(token, Origin=ORIGIN, **{"Access-Control-Request-Method": "GET"}),
    )
    assert preflight.status_code == 204
    answered = api.client.get("/orders", base_url="https://localhost", headers=api.bearer(token))
    assert answered.status_code == 200
    assert answered.headers["RateLimit"].startswith('"key";r=0;')


class BrokenStorage(limits.storage.MemoryStorage):
    """A limiter backend that fails in a way no one planned for."""

    STORAGE_SCHEME = ["broken"]  # noqa: RUF012 - limits reads it as a list

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        raise TypeError("get_connection() missing 1 required positional argument")


def test_an_unexpected_failure_in_a_stage_fails_closed_with_503(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Seen with redis-py 5.2: a TypeError from the limiter was a 500, not a 503.
    api = Api(GUARD_RATELIMIT_STORAGE_URL="broken://")
    response = api.client.get("/orders", headers=api.bearer(api.issue()))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json is not None and response.json["error"] == "unavailable"
    failures = [r for r in caplog.records if r.name == "guard.errors"]
    assert len(failures) == 1 and failures[0].exc_info is not None
