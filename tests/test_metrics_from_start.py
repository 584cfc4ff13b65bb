"""Every series the guard knows is exported at 0 from start-up, so Prometheus'
``increase()`` counts the first burst after a restart instead of reading it as 0."""

from __future__ import annotations

import ast
from pathlib import Path

from guard.keys.lifecycle import Reason
from guard.observability.metrics import KNOWN_OUTCOMES
from tests.conftest import Api
from tests.test_guard_metrics import requests_total, samples

GUARD = Path(__file__).resolve().parents[1] / "guard"


def first_scrape(api: Api) -> dict[tuple[str, str], float]:
    response = api.client.get("/metrics")
    assert response.status_code == 200
    return requests_total(samples(response.text))


def test_every_known_outcome_is_at_zero_before_its_first_event() -> None:
    api = Api(GUARD_METRICS=True, GUARD_METRICS_PUBLIC=True)
    found = first_scrape(api)
    for labels in [("denied", "revoked"), ("denied", "store_unavailable"), ("allowed", "valid")]:
        assert found[labels] == 0
    assert set(KNOWN_OUTCOMES) <= set(found)
    assert not any(found.values())


def test_the_first_event_after_a_restart_is_an_increase_of_one() -> None:
    api = Api(GUARD_METRICS=True, GUARD_METRICS_PUBLIC=True)
    before = first_scrape(api)
    token = api.issue("alice")
    with api.app.app_context():
        api.guard.keys.revoke(token[3:19])
    assert api.client.get("/orders", headers=api.bearer(token)).status_code == 401
    after = first_scrape(api)
    assert after[("denied", "revoked")] - before[("denied", "revoked")] == 1


def test_the_limiter_error_counters_start_at_zero() -> None:
    api = Api(GUARD_METRICS=True, GUARD_METRICS_PUBLIC=True)
    text = api.client.get("/metrics").text
    found = samples(text)
    for kind in ("key", "failed-auth"):
        assert found[("guard_limiter_errors_total", frozenset({("kind", kind)}))] == 0


def reasons_in_the_code() -> set[str]:
    """Every reason string the guard's code gives a request: the refusals, the reasons
    it sets, the token and header errors, the verdicts."""
    found = {reason.value for reason in Reason}
    calls = {"refuse", "refusal", "_render", "MissingCredentials", "MalformedCredentials"}
    calls |= {"BadToken"}
    for path in GUARD.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", getattr(node.func, "attr", ""))
                if name in calls:
                    found |= {
                        arg.value
                        for arg in node.args
                        if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
                    }
            elif (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Constant)
                and any(getattr(t, "attr", None) == "reason" for t in node.targets)
            ):
                found.add(str(node.value.value))
    return found


def test_the_known_outcomes_cover_every_reason_the_code_gives() -> None:
    known = {reason for _, reason in KNOWN_OUTCOMES}
    missing = reasons_in_the_code() - known
    assert not missing, f"add these to KNOWN_OUTCOMES in guard/observability/metrics.py: {missing}"
