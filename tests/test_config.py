from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from guard import ConfigurationError, GuardConfig
from tests.conftest import BASE_CONFIG, PEPPER, SECRET


def parse(**settings: Any) -> GuardConfig:
    return GuardConfig.from_mapping({**BASE_CONFIG, **settings})


def test_defaults_are_the_embedded_ones() -> None:
    config = parse()
    assert config.store_url == "memory://"
    assert config.token_prefix == "gk_"
    assert config.accept_imported_keys is False


def test_strings_from_the_environment_are_coerced() -> None:
    config = parse(
        GUARD_STORE_TIMEOUT="0.25",
        GUARD_ACCEPT_IMPORTED_KEYS="yes",
        GUARD_SECRET_KEY_FALLBACKS=" " + "o" * 32 + " , " + "q" * 32,
    )
    assert config.store_timeout == 0.25
    assert config.accept_imported_keys is True
    assert config.secret_keys == ("o" * 32, "q" * 32, SECRET)


@pytest.mark.parametrize("missing", ["GUARD_SECRET_KEY", "GUARD_PEPPER"])
def test_missing_secret_is_a_clear_error(missing: str) -> None:
    settings = {k: v for k, v in BASE_CONFIG.items() if k != missing}
    with pytest.raises(ConfigurationError, match=f"{missing} is required"):
        GuardConfig.from_mapping(settings)


@pytest.mark.parametrize(
    ("settings", "complaint"),
    [
        ({"GUARD_SECRET_KEY": "short"}, "at least 32"),
        ({"GUARD_PEPPER_FALLBACKS": "short"}, "at least 32"),
        ({"GUARD_PEPPER": SECRET}, "must differ"),
        ({"GUARD_TOKEN_PREFIX": "Bad-"}, "GUARD_TOKEN_PREFIX"),
        ({"GUARD_STORE_TIMEOUT": "soon"}, "GUARD_STORE_TIMEOUT must be a number, not 'soon'"),
        ({"GUARD_STORE_TIMEOUT": 0}, "must be positive"),
        ({"GUARD_ACCEPT_IMPORTED_KEYS": "maybe"}, "boolean"),
        ({"GUARD_STORE_URLL": "memory://"}, "did you mean GUARD_STORE_URL"),
    ],
)
def test_bad_settings_are_refused_naming_the_setting(
    settings: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(ConfigurationError, match=complaint):
        parse(**settings)


def test_a_secret_of_the_wrong_type_is_not_echoed() -> None:
    with pytest.raises(ConfigurationError) as info:
        parse(GUARD_SECRET_KEY=b"bytes-secret-that-must-not-leak-anywhere")
    assert "bytes-secret" not in str(info.value)


def test_environment_may_hold_other_guard_variables_when_not_strict() -> None:
    config = GuardConfig.from_mapping({**BASE_CONFIG, "GUARD_UNRELATED": "x"}, strict=False)
    assert config.pepper == PEPPER


def test_env_store_variable_is_not_taken_for_a_setting() -> None:
    config = parse(GUARD_STORE_URL="env://GUARD_API_KEYS", GUARD_API_KEYS="[]")
    assert config.store_url == "env://GUARD_API_KEYS"


def test_env_example_documents_exactly_the_settings() -> None:
    text = (Path(__file__).resolve().parents[1] / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*(GUARD_[A-Z0-9_]+)=", text, re.M))
    settings = {f"GUARD_{field.name.upper()}" for field in dataclasses.fields(GuardConfig)}
    assert documented - {"GUARD_KEYS"} == settings
