"""Every ``GUARD_*`` setting, parsed and checked once, at start-up.

The same parser reads ``app.config`` (for the extension) and ``os.environ`` (for the
command line): strings are coerced, so ``GUARD_STORE_TIMEOUT=0.5`` from the environment
and ``app.config["GUARD_STORE_TIMEOUT"] = 0.5`` mean the same thing.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Mapping
from typing import Any

from stores import EnvStore, InvalidStoreURL

from .errors import ConfigurationError

PREFIX = "GUARD_"
#: Shortest accepted server secret or pepper, in characters.
MIN_SECRET_LENGTH = 32


@dataclasses.dataclass(frozen=True)
class GuardConfig:
    """The guard's settings. Field ``x`` is read from ``GUARD_X``; see ``.env.example``."""

    #: Signs tokens. Required, at least 32 characters.
    secret_key: str
    #: Digests secrets for storage. Required, at least 32 characters.
    pepper: str
    #: Older signing secrets and peppers that still verify, oldest first.
    secret_key_fallbacks: tuple[str, ...] = ()
    pepper_fallbacks: tuple[str, ...] = ()
    token_prefix: str = "gk_"  # noqa: S105 - a label for scanners, not a secret
    store_url: str = "memory://"
    store_prefix: str = "guard:"
    #: Seconds a store call may take before the request is refused with 503.
    store_timeout: float = 0.5
    #: Seconds a cached key record may be used without hearing from the store.
    store_cache_ttl: float = 5.0
    accept_imported_keys: bool = False

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], *, strict: bool = True) -> GuardConfig:
        """Read the ``GUARD_*`` entries of ``mapping``.

        :param strict: refuse ``GUARD_*`` names that are not settings (a typo would
            otherwise silently leave a default in place). Off for ``os.environ``, which
            may hold other ``GUARD_`` variables.
        :raises ConfigurationError: naming the first bad setting.
        """
        values = {k[len(PREFIX) :].lower(): v for k, v in mapping.items() if k.startswith(PREFIX)}
        known = {field.name: field for field in dataclasses.fields(cls)}
        if strict:
            ignored = {_env_variable(values.get("store_url"))}
            for name in sorted(set(values) - set(known)):
                if PREFIX + name.upper() not in ignored:
                    raise ConfigurationError(_unknown(name, known))
        kwargs: dict[str, Any] = {}
        for name, field in known.items():
            if name in values and values[name] is not None:
                kwargs[name] = _coerce(PREFIX + name.upper(), field.type, values[name])
        for name in ("secret_key", "pepper"):
            if name not in kwargs:
                raise ConfigurationError(
                    f"{PREFIX}{name.upper()} is required: set it to a random value of at least "
                    f"{MIN_SECRET_LENGTH} characters, e.g. from "
                    "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
                )
        config = cls(**kwargs)
        config.validate()
        return config

    def validate(self) -> None:
        """Refuse unsafe or unusable values.

        :raises ConfigurationError: naming the setting.
        """
        for name in ("secret_key", "pepper"):
            for value in (getattr(self, name), *getattr(self, f"{name}_fallbacks")):
                if len(value) < MIN_SECRET_LENGTH:
                    raise ConfigurationError(
                        f"{PREFIX}{name.upper()} (and its fallbacks) must be at least "
                        f"{MIN_SECRET_LENGTH} characters"
                    )
        if self.secret_key == self.pepper:
            raise ConfigurationError("GUARD_PEPPER must differ from GUARD_SECRET_KEY")
        if not re.fullmatch(r"[a-z][a-z0-9]{0,15}_", self.token_prefix):
            raise ConfigurationError(
                "GUARD_TOKEN_PREFIX must be lowercase letters and digits ending in '_', e.g. 'gk_'"
            )
        if self.store_timeout <= 0 or self.store_cache_ttl < 0:
            raise ConfigurationError(
                "GUARD_STORE_TIMEOUT must be positive and GUARD_STORE_CACHE_TTL not negative"
            )

    @property
    def secret_keys(self) -> tuple[str, ...]:
        """Signing secrets, oldest to newest, as itsdangerous takes them."""
        return (*self.secret_key_fallbacks, self.secret_key)

    @property
    def peppers(self) -> tuple[str, ...]:
        return (*self.pepper_fallbacks, self.pepper)


def _unknown(name: str, known: Mapping[str, object]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f"; did you mean {PREFIX}{close[0].upper()}?" if close else ""
    return f"unknown setting {PREFIX}{name.upper()}{hint}"


def _env_variable(store_url: object) -> str | None:
    # The variable an env:// store reads may be a GUARD_ name too, and is not a setting.
    if isinstance(store_url, str) and store_url.startswith("env:"):
        try:
            return EnvStore.variable_name(store_url)
        except InvalidStoreURL:
            return None  # reported with a clearer message when the store is built
    return None


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _coerce(setting: str, kind: Any, value: Any) -> Any:
    """``value`` as the field's type; strings from the environment are parsed."""
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
    elif kind == "float":
        try:
            if not isinstance(value, bool):
                return float(value)
        except (TypeError, ValueError):
            pass
    elif kind == "tuple[str, ...]":
        items = value.split(",") if isinstance(value, str) else value
        if isinstance(items, (list, tuple)) and all(isinstance(item, str) for item in items):
            return tuple(item.strip() for item in items if item.strip())
    elif kind == "str" and isinstance(value, str):
        return value
    # Never echo what may be a secret.
    shown = "" if "SECRET" in setting or "PEPPER" in setting else f", not {value!r}"
    raise ConfigurationError(f"{setting} must be a {_DESCRIPTIONS[kind]}{shown}")


_DESCRIPTIONS = {
    "bool": "boolean (true/false, 1/0, yes/no, on/off)",
    "float": "number",
    "tuple[str, ...]": "comma-separated list",
    "str": "string",
}
