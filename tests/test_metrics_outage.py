"""The guard's metrics stay readable while Redis is down, and stay private: with
GUARD_METRICS_TOKEN the scraper is checked without the store or the limiter."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from guard import ConfigurationError
from tests.conftest import Api
from tests.redis_server import RedisServer
from tests.test_guard_metrics import requests_total, samples

TOKEN = "scrape-" + "t" * 40


@pytest.fixture
def redis_down_later() -> Iterator[RedisServer]:
    server = RedisServer()  # its own server: stopping it leaves the session's alone
    server.start()
    yield server
    server.close()


@pytest.mark.redis
def test_the_scrape_token_reads_the_metrics_while_redis_is_down(
    redis_down_later: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = redis_down_later.url
    api = Api(
        GUARD_STORE_URL=url,
        GUARD_RATELIMIT_STORAGE_URL=url,
        GUARD_METRICS=True,
        GUARD_METRICS_TOKEN=TOKEN,
    )
    try:
        token = api.issue()
        redis_down_later.stop()
        assert api.client.get("/orders", headers=api.bearer(token)).status_code == 503
        with caplog.at_level(logging.INFO, logger="guard.audit"):
            scraped = api.client.get("/metrics", headers=api.bearer(TOKEN))
        assert scraped.status_code == 200
        found = samples(scraped.text)
        assert requests_total(found)[("denied", "store_unavailable")] == 1
        assert found[("guard_store_errors_total", frozenset())] == 1
        assert TOKEN not in caplog.text  # the audit entry of the scrape
        assert '"reason":"metrics_token"' in caplog.text
    finally:
        api.close()


def test_the_metrics_stay_private_with_a_scrape_token() -> None:
    api = Api(GUARD_METRICS=True, GUARD_METRICS_TOKEN=TOKEN)
    assert api.client.get("/metrics").status_code == 401
    wrong = api.client.get("/metrics", headers=api.bearer(TOKEN[:-1] + "x"))
    assert wrong.status_code == 401
    assert 'error="invalid_token"' in wrong.headers["WWW-Authenticate"]
    assert api.client.get("/metrics", headers={"Authorization": "Bearer a b"}).status_code == 400
    # A key with the scope is no scrape credential here: that check needs the store.
    key = api.issue("prometheus", scopes=["metrics:read"])
    assert api.client.get("/metrics", headers=api.bearer(key)).status_code == 401
    scraped = api.client.get("/metrics", headers=api.bearer(TOKEN))
    assert scraped.status_code == 200
    assert requests_total(samples(scraped.text))[("denied", "wrong_metrics_token")] == 2


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"GUARD_METRICS_TOKEN": TOKEN}, "GUARD_METRICS=true"),
        (
            {"GUARD_METRICS": True, "GUARD_METRICS_PUBLIC": True, "GUARD_METRICS_TOKEN": TOKEN},
            "PUBLIC=false",
        ),
        ({"GUARD_METRICS": True, "GUARD_METRICS_TOKEN": "short"}, "at least 32"),
    ],
)
def test_a_scrape_token_that_cannot_work_stops_the_app(
    settings: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message) as raised:
        Api(**settings)
    assert TOKEN not in str(raised.value)
