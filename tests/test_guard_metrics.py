"""Prometheus metrics, read the way Prometheus reads them: from the metrics endpoint,
with a key that has the scope ``metrics:read``."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from guard import ConfigurationError
from stores import KeyRecord, MemoryStore, RedisStore, StoreUnavailable
from tests.conftest import Api
from tests.redis_server import RedisServer

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def requests_total(found: Samples) -> dict[tuple[str, str], float]:
    return {
        (dict(labels)["outcome"], dict(labels)["reason"]): value
        for (name, labels), value in found.items()
        if name == "guard_requests_total"
    }


def scrape(api: Api, token: str | None = None) -> Samples:
    response = api.client.get("/metrics", headers=api.bearer(token) if token else {})
    assert response.status_code == 200, response.json
    assert response.mimetype == "text/plain"
    return samples(response.text)


def three_allowed_and_two_refused(api: Api) -> str:
    """One key limited to 3 a minute, used 4 times, and one forged token: the scraper's
    token is returned."""
    token = api.issue("alice", rate_limit="3/minute")
    statuses = [api.client.get("/orders", headers=api.bearer(token)).status_code for _ in "abcd"]
    statuses.append(api.client.get("/orders", headers=api.bearer(token[:-2] + "xx")).status_code)
    assert statuses == [200, 200, 200, 429, 401]
    return api.issue("prometheus", scopes=["metrics:read"])


def test_requests_are_counted_by_outcome_and_reason_as_audited() -> None:
    api = Api(GUARD_METRICS=True)
    scraper = three_allowed_and_two_refused(api)
    counted = requests_total(scrape(api, scraper))
    assert {labels: value for labels, value in counted.items() if value} == {
        ("allowed", "valid"): 3,
        ("denied", "rate_limited"): 1,
        ("denied", "malformed"): 1,
    }
    # The scrape itself is counted once it is over.
    assert requests_total(scrape(api, scraper))[("allowed", "valid")] == 4


def test_store_and_limiter_calls_are_timed() -> None:
    api = Api(GUARD_METRICS=True)
    scraper = three_allowed_and_two_refused(api)
    found = scrape(api, scraper)
    # Four verifications of alice's token, one of the scraper's: one lookup each (the
    # forged token never reaches the store).
    assert found[("guard_store_seconds_count", frozenset())] == 5
    # One hit per authenticated request; the forged token is counted without the store.
    assert found[("guard_limiter_seconds_count", frozenset())] == 5
    assert found[("guard_store_errors_total", frozenset())] == 0
    assert not [
        value
        for (name, _), value in found.items()
        if name == "guard_limiter_errors_total" and value
    ]
    # No Redis listener behind a memory store: no gauge that would claim one.
    assert not [name for name, _ in found if name == "guard_invalidation_subscribed"]


def test_the_app_sees_its_own_store_and_a_store_set_later_is_timed_too() -> None:
    api = Api(GUARD_METRICS=True)
    scraper = api.issue("prometheus", scopes=["metrics:read"])
    keys = api.app.extensions["guard"].keys
    assert type(keys.store) is MemoryStore  # the store itself, not a wrapper
    records = keys.store.records()
    down = DownStore()
    down.save(*records)
    keys.store = down
    assert api.client.get("/metrics", headers=api.bearer(scraper)).status_code == 503
    keys.store = MemoryStore()
    keys.store.save(*records)
    found = scrape(api, scraper)
    assert found[("guard_store_errors_total", frozenset())] == 1
    assert found[("guard_store_seconds_count", frozenset())] == 2


class DownStore(MemoryStore):
    def get(self, key_id: str) -> KeyRecord | None:
        raise StoreUnavailable("down")


def test_the_metrics_need_the_scope_unless_public() -> None:
    api = Api(GUARD_METRICS=True)
    assert api.client.get("/metrics").status_code == 401
    other = api.issue("orders-only", scopes=["orders:read"])
    refused = api.client.get("/metrics", headers=api.bearer(other))
    assert refused.status_code == 403
    assert 'scope="metrics:read"' in refused.headers["WWW-Authenticate"]
    public = Api(GUARD_METRICS=True, GUARD_METRICS_PUBLIC=True, GUARD_METRICS_PATH="/internal/m")
    assert public.client.get("/internal/m").status_code == 200


def test_the_key_id_label_is_there_only_when_asked_for() -> None:
    api = Api(GUARD_METRICS=True, GUARD_METRICS_KEY_LABEL=True, GUARD_METRICS_PUBLIC=True)
    token = api.issue("alice")
    api.client.get("/orders", headers=api.bearer(token))
    labels = [dict(labels) for name, labels in scrape(api) if name == "guard_requests_total"]
    assert {"outcome": "allowed", "reason": "valid", "key_id": token[3:19]} in labels
    plain = Api(GUARD_METRICS=True, GUARD_METRICS_PUBLIC=True)
    plain.client.get("/orders", headers=plain.bearer(plain.issue()))
    assert all("key_id" not in dict(labels) for _, labels in scrape(plain))


def test_openmetrics_is_served_to_a_scraper_that_asks_for_it() -> None:
    api = Api(GUARD_METRICS=True, GUARD_METRICS_PUBLIC=True)
    accept = "application/openmetrics-text; version=1.0.0"
    response = api.client.get("/metrics", headers={"Accept": accept})
    assert response.mimetype == "application/openmetrics-text"
    assert response.text.endswith("# EOF\n")


def test_metrics_are_off_by_default() -> None:
    api = Api()
    token = api.issue(scopes=["metrics:read"])
    assert api.client.get("/metrics", headers=api.bearer(token)).status_code == 404


def test_metrics_on_without_prometheus_client_stop_the_app(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # as if not installed
    with pytest.raises(ConfigurationError, match=r"flask-api-guard\[metrics\]"):
        Api(GUARD_METRICS=True)


def test_a_bad_metrics_path_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="GUARD_METRICS_PATH"):
        Api(GUARD_METRICS=True, GUARD_METRICS_PATH="metrics")


@pytest.mark.redis
def test_store_and_limiter_failures_are_counted(redis_url: str, redis_server: RedisServer) -> None:
    on_redis = {"GUARD_METRICS": True, "GUARD_METRICS_PUBLIC": True}
    store_down = Api(GUARD_STORE_URL=redis_url, **on_redis)
    limiter_down = Api(GUARD_RATELIMIT_STORAGE_URL=redis_url, **on_redis)
    try:
        first, second = store_down.issue(), limiter_down.issue()
        redis_server.stop()
        try:
            refused = store_down.client.get("/orders", headers=store_down.bearer(first))
            assert refused.status_code == 503
            limited = limiter_down.client.get("/orders", headers=limiter_down.bearer(second))
            assert limited.status_code == 503
        finally:
            redis_server.start()
        store_metrics = scrape(store_down)
        limiter_metrics = scrape(limiter_down)
    finally:
        store_down.close()
        limiter_down.close()
    assert store_metrics[("guard_store_errors_total", frozenset())] == 1
    assert requests_total(store_metrics)[("denied", "store_unavailable")] == 1
    assert limiter_metrics[("guard_limiter_errors_total", frozenset({("kind", "key")}))] == 1
    assert requests_total(limiter_metrics)[("denied", "limiter_unavailable")] == 1


def test_the_deployment_guides_gunicorn_hooks_reset_and_clean_the_metrics_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    guide = (Path(__file__).resolve().parents[1] / "docs" / "deployment.md").read_text()
    metrics_section = guide[guide.index("## Metrics") :]
    config = re.search(r"```python\n(.*?)```", metrics_section, re.S)
    assert config is not None
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_999.db").write_bytes(b"stale")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    hooks: dict[str, Any] = {}
    exec(compile(config.group(1), "deployment.md", "exec"), hooks)  # noqa: S102 - the guide's code
    hooks["on_starting"](None)
    assert list(metrics_dir.iterdir()) == []
    (metrics_dir / "gauge_livemin_4242.db").write_bytes(b"")
    hooks["child_exit"](None, SimpleNamespace(pid=4242))
    assert list(metrics_dir.iterdir()) == []


@pytest.mark.redis
def test_the_invalidation_listener_is_a_gauge_that_drops_with_redis(
    redis_url: str, redis_server: RedisServer
) -> None:
    if not isinstance(getattr(RedisStore, "subscribed", None), property):
        pytest.skip("RedisStore.subscribed (a public property) has not landed on this branch")
    api = Api(GUARD_STORE_URL=redis_url, GUARD_METRICS=True, GUARD_METRICS_PUBLIC=True)
    gauge = ("guard_invalidation_subscribed", frozenset())
    try:
        api.client.get("/orders", headers=api.bearer(api.issue()))  # starts the listener
        assert wait_for(lambda: scrape(api)[gauge] == 1)
        redis_server.stop()
        try:
            assert wait_for(lambda: scrape(api)[gauge] == 0)
        finally:
            redis_server.start()
    finally:
        api.close()


def wait_for(condition: Callable[[], bool], polls: int = 200) -> bool:
    """Whether ``condition`` became true within ``polls`` polls (a background thread's
    state: a bounded number of looks, no assertion on how long it took)."""
    for _ in range(polls):
        if condition():
            return True
        time.sleep(0.05)
    return False
