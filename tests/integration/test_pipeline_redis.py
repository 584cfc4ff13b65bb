"""The request pipeline on a real Redis: replies are read by the request that sent them."""

from __future__ import annotations

from tests.conftest import Api


def test_a_view_that_makes_its_own_request_reads_only_its_own_answers(redis_url: str) -> None:
    # Review finding: a limiter reply sent before Flask ran was read after the view, so
    # a request a view made on the same thread could read another key's reply.
    api = Api(GUARD_RATE_LIMIT="1/minute", GUARD_RATELIMIT_STORAGE_URL=redis_url)

    @api.app.get("/selfcheck")
    @api.guard.exempt
    def selfcheck() -> dict[str, int]:
        inner = api.app.test_client().get("/orders", headers=api.bearer(refused))
        return {"inner": inner.status_code}

    refused, allowed = api.issue("refused"), api.issue("allowed")
    assert api.client.get("/orders", headers=api.bearer(refused)).status_code == 200
    answer = api.client.get("/selfcheck", headers=api.bearer(allowed))
    assert answer.json == {"inner": 429}


def test_an_exempt_view_sends_nothing_to_redis_for_its_token(redis_url: str) -> None:
    # An exempt view's token is never looked at: no lookup, no lease, no hit.
    import redis

    api = Api(
        GUARD_STORE_URL=redis_url,
        GUARD_RATELIMIT_STORAGE_URL=redis_url,
        GUARD_ACCEPT_IMPORTED_KEYS=True,
    )
    token = api.issue()
    admin = redis.Redis.from_url(redis_url)

    def commands() -> int:
        stats = admin.info("commandstats")
        return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")

    before = commands()
    for guess in [token, "legacy-secret-guess"] * 10:
        assert api.client.get("/health", headers=api.bearer(guess)).status_code == 200
    assert commands() - before == 0
    assert api.client.get("/orders", headers=api.bearer(token)).status_code == 200
    api.close()
