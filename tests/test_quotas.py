"""Usage quotas: `guard keys create --quota N --quota-refill ...`, spent by each request
its view's cost (`@guard.cost`), refused 429 `quota_exceeded` once spent, topped up by
`guard keys update ID --quota N`; as an operator runs them and a client meets them."""

from __future__ import annotations

import datetime
import json
import time

import pytest
from flask import Flask, Request, jsonify

from guard import Guard, QuotaExceeded, RateLimited
from stores import InvalidRecord, KeyRecord, Quota
from stores.testing import ALICE
from tests.conftest import LOCAL_CONFIG, Api
from tests.guard_command import guard_keys as guard


def seconds_to_next_month(now: float) -> float:
    moment = datetime.datetime.fromtimestamp(now, datetime.UTC)
    year, month = moment.year + moment.month // 12, moment.month % 12 + 1
    return datetime.datetime(year, month, 1, tzinfo=datetime.UTC).timestamp() - now


def metered_app(**settings: object) -> tuple[Flask, Guard]:
    app = Flask("metered")
    app.config.update({**LOCAL_CONFIG, "GUARD_RATE_LIMIT": "1000/minute", **settings})
    guard = Guard(app)

    @app.get("/search")
    @guard.cost(5)
    def search() -> object:
        return jsonify(ok=True)

    def rows(request: Request) -> int:
        return int(request.args.get("rows", "1"))

    @app.get("/export")
    @guard.cost(rows)
    def export() -> object:
        return jsonify(ok=True)

    @app.get("/status")
    @guard.cost(0)
    def status() -> object:
        return jsonify(ok=True)

    @app.get("/orders")
    def orders() -> object:
        return jsonify(ok=True)

    return app, guard


def issue(app: Flask, guard: Guard, **options: object) -> str:
    with app.app_context():
        token, _ = guard.keys.create("metered", **options)  # type: ignore[arg-type]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_monthly_quota_is_spent_then_refused_until_the_first_of_next_month() -> None:
    api = Api(GUARD_RATE_LIMIT="100/minute")
    token = api.issue(quota=3, quota_refill="monthly")
    seen = [api.client.get("/orders", headers=api.bearer(token)) for _ in range(3)]
    assert [response.status_code for response in seen] == [200, 200, 200]
    policy = seen[0].headers["RateLimit-Policy"]
    assert policy.startswith('"key";q=100;w=60, "quota";q=3;w=')  # the month's length
    assert policy.endswith(';qu="request"')
    assert seen[0].headers["RateLimit"].split(", ")[1].startswith('"quota";r=2;t=')
    refused = api.client.get("/orders", headers=api.bearer(token))
    assert refused.status_code == 429
    assert refused.json is not None and refused.json["error"] == "quota_exceeded"
    wait = seconds_to_next_month(time.time())
    assert wait - 5 <= int(refused.headers["Retry-After"]) <= wait + 5
    assert refused.headers["RateLimit"].split(", ")[1].startswith('"quota";r=0;t=')
    # Another key's quota is its own.
    other = api.issue("bob", quota=1)
    assert api.client.get("/orders", headers=api.bearer(other)).status_code == 200


def test_each_request_spends_its_views_cost() -> None:
    app, guard = metered_app()
    client = app.test_client()
    token = issue(app, guard, quota=12, quota_refill="30d")
    assert client.get("/search", headers=bearer(token)).status_code == 200  # 5
    assert client.get("/export?rows=4", headers=bearer(token)).status_code == 200  # 9
    answer = client.get("/orders", headers=bearer(token))  # 10
    assert '"quota";r=2;t=' in answer.headers["RateLimit"]
    # 5 more would overspend: refused, and nothing is spent.
    refused = client.get("/search", headers=bearer(token))
    assert refused.status_code == 429 and refused.json is not None
    assert refused.json["error"] == "quota_exceeded"
    assert '"quota";r=2;' in refused.headers["RateLimit"]
    assert client.get("/export?rows=2", headers=bearer(token)).status_code == 200  # 12
    assert client.get("/orders", headers=bearer(token)).status_code == 429
    # A view that costs nothing stays open to a key whose quota is spent.
    assert client.get("/status", headers=bearer(token)).status_code == 200


def test_a_cost_function_that_fails_refuses_the_request_rather_than_serve_it_free() -> None:
    app, guard = metered_app()
    client = app.test_client()
    token = issue(app, guard, quota=10)
    assert client.get("/export?rows=-1", headers=bearer(token)).status_code == 503
    assert client.get("/export?rows=x", headers=bearer(token)).status_code == 503
    # A key without a quota never asks the view its cost.
    free = issue(app, guard)
    assert client.get("/export?rows=x", headers=bearer(free)).status_code == 200


def test_the_cost_decorator_takes_a_number_or_a_function_of_the_request() -> None:
    guard = Guard()
    for wrong in (-1, 1.5, True, "5", int):
        with pytest.raises(TypeError, match=r"@guard\.cost takes"):
            guard.cost(wrong)  # type: ignore[arg-type]


def test_a_lifetime_quota_never_tells_the_client_to_retry() -> None:
    api = Api(GUARD_RATE_LIMIT="100/minute")
    token = api.issue(quota=1)
    served = api.client.get("/orders", headers=api.bearer(token))
    assert served.headers["RateLimit-Policy"].endswith('"quota";q=1;qu="request"')
    assert served.headers["RateLimit"].endswith('"quota";r=0')
    refused = api.client.get("/orders", headers=api.bearer(token))
    assert refused.status_code == 429 and "Retry-After" not in refused.headers
    assert refused.json is not None and refused.json["error"] == "quota_exceeded"


def test_a_request_refused_by_a_rate_limit_spends_no_quota() -> None:
    api = Api(GUARD_RATE_LIMIT="2/minute")
    token = api.issue(quota=5, quota_refill="1d")
    for _ in range(2):
        assert api.client.get("/orders", headers=api.bearer(token)).status_code == 200
    refused = api.client.get("/orders", headers=api.bearer(token))
    assert refused.status_code == 429 and refused.json is not None
    assert refused.json["error"] == "rate_limited"
    assert '"quota";r=3;t=' in refused.headers["RateLimit"]


def test_a_quota_refills_when_its_period_ends() -> None:
    api = Api(GUARD_RATE_LIMIT="100/minute")
    token = api.issue(quota=1)
    with api.app.app_context():
        (record,) = api.guard.keys.store.records()
        # Set a day ago, less two seconds: its first day ends two seconds from now.
        api.guard.keys.update(record.key_id, quota=1, quota_refill="1d", now=time.time() - 86398)
    assert api.client.get("/orders", headers=api.bearer(token)).status_code == 200
    refused = api.client.get("/orders", headers=api.bearer(token))
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) <= 2
    time.sleep(int(refused.headers["Retry-After"]) + 0.1)
    assert api.client.get("/orders", headers=api.bearer(token)).status_code == 200


def test_a_rotated_key_spends_the_same_quota_as_the_key_it_replaces() -> None:
    api = Api(GUARD_RATE_LIMIT="100/minute")
    old = api.issue(quota=2, quota_refill="monthly")
    assert api.client.get("/orders", headers=api.bearer(old)).status_code == 200
    with api.app.app_context():
        (record,) = api.guard.keys.store.records()
        new, _ = api.guard.keys.rotate(record.key_id, grace=3600)
    assert api.client.get("/orders", headers=api.bearer(new)).status_code == 200
    assert api.client.get("/orders", headers=api.bearer(new)).status_code == 429
    assert api.client.get("/orders", headers=api.bearer(old)).status_code == 429


def test_an_operator_creates_a_quota_and_tops_it_up(sqlite_url: str) -> None:
    created = guard(
        sqlite_url, "create", "--name", "ci", "--quota", "2", "--quota-refill", "30d", "--json"
    )
    assert created.returncode == 0, created.stderr
    token, key_id = json.loads(created.stdout)["token"], json.loads(created.stdout)["id"]
    shown = json.loads(guard(sqlite_url, "show", key_id, "--json").stdout)
    assert shown["quota"].startswith("2 30d since ")
    # No cache: SQLite has no notifications, and this test is about the quota.
    app, _ = metered_app(GUARD_STORE_URL=sqlite_url, GUARD_STORE_CACHE_TTL=0)
    client = app.test_client()
    assert [client.get("/orders", headers=bearer(token)).status_code for _ in range(3)] == [
        200,
        200,
        429,
    ]
    topped = guard(sqlite_url, "update", key_id, "--quota", "3")
    assert topped.returncode == 0, topped.stderr
    # Counted afresh: three more, the refill kept.
    assert [client.get("/orders", headers=bearer(token)).status_code for _ in range(4)] == [
        200,
        200,
        200,
        429,
    ]
    assert json.loads(guard(sqlite_url, "show", key_id, "--json").stdout)["quota"].startswith(
        "3 30d since "
    )
    removed = guard(sqlite_url, "update", key_id, "--quota", "0")
    assert removed.returncode == 0, removed.stderr
    assert client.get("/orders", headers=bearer(token)).status_code == 200


def test_the_command_refuses_a_refill_without_a_quota(sqlite_url: str) -> None:
    refused = guard(sqlite_url, "create", "--name", "ci", "--quota-refill", "1d")
    assert refused.returncode == 2 and "--quota-refill needs a --quota" in refused.stderr
    wrong = guard(sqlite_url, "create", "--name", "ci", "--quota", "5", "--quota-refill", "1w")
    assert wrong.returncode == 2 and "'1w' is not one of" in wrong.stderr


# -- On Redis --------------------------------------------------------------------------


@pytest.mark.redis
def test_on_redis_a_quota_is_counted_with_the_limits_and_fails_closed(redis_url: str) -> None:
    app, guard_ = metered_app(GUARD_RATELIMIT_STORAGE_URL=redis_url)
    client = app.test_client()
    token = issue(app, guard_, quota=7, quota_refill="monthly")
    assert client.get("/search", headers=bearer(token)).status_code == 200
    answer = client.get("/export?rows=2", headers=bearer(token))
    assert answer.status_code == 200 and '"quota";r=0;t=' in answer.headers["RateLimit"]
    refused = client.get("/orders", headers=bearer(token))
    assert refused.status_code == 429 and refused.json is not None
    assert refused.json["error"] == "quota_exceeded"
    assert client.get("/status", headers=bearer(token)).status_code == 200
    app.extensions["guard"].keys.close()

    down, guard_down = metered_app(GUARD_RATELIMIT_STORAGE_URL="redis://127.0.0.1:1")
    unreachable = issue(down, guard_down, quota=7)
    assert down.test_client().get("/orders", headers=bearer(unreachable)).status_code == 503


# -- The record --------------------------------------------------------------------------


def test_a_quota_no_reader_could_use_cannot_be_saved() -> None:
    for wrong in (
        Quota(0, None, 1.0, "k"),
        Quota(5, "weekly", 1.0, "k"),
        Quota(5, None, -1.0, "k"),
        Quota(5, None, 1.0, ""),
    ):
        with pytest.raises(InvalidRecord, match="field 'quota' has an invalid value"):
            KeyRecord(**{**ALICE.__dict__, "quota": wrong})
    with pytest.raises(InvalidRecord, match="field 'quota'"):
        KeyRecord.from_dict({**ALICE.to_dict(), "quota": {"allowance": "10"}})


def test_a_record_written_before_quotas_loads_with_none() -> None:
    before = ALICE.to_dict()
    assert "quota" not in before
    assert KeyRecord.from_dict(before).quota is None


def test_the_quota_error_is_a_rate_limit_error() -> None:
    # So an app's @app.errorhandler(429), or one for RateLimited, renders it too.
    assert issubclass(QuotaExceeded, RateLimited)
    assert QuotaExceeded.code == 429 and QuotaExceeded.error == "quota_exceeded"
