"""Every ``GUARD_*`` setting, parsed and checked once, at start-up.

The same parser reads ``app.config`` (for the extension) and ``os.environ`` (for the
command line): strings are coerced, so ``GUARD_STORE_TIMEOUT=0.5`` from the environment
and ``app.config["GUARD_STORE_TIMEOUT"] = 0.5`` mean the same thing.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
from collections.abc import Mapping
from typing import Any

import limits
import limits.strategies

from guard.errors import ConfigurationError
from stores import EnvStore, InvalidStoreURL

PREFIX = "GUARD_"
#: An exact origin: scheme, host name (letters, digits, dots, hyphens), optional port.
_ORIGIN = re.compile(r"https?://[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,5})?")
#: A header name of letters, digits and single hyphens: an underscore would reach the app
#: as the same WSGI variable as a hyphen, and some servers drop such headers.
_HEADER_NAME = re.compile(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")
#: Headers that mean something else to HTTP, the proxies or the guard: a token there
#: would be logged, forwarded or overwritten by whoever handles that header.
_RESERVED_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "host", "content-type"}
    | {"content-length", "x-request-id", "forwarded"}
)
#: Shortest accepted server secret or pepper, in characters.
MIN_SECRET_LENGTH = 32


@dataclasses.dataclass(frozen=True)
class GuardConfig:
    """The guard's settings. Field ``x`` is read from ``GUARD_X``; see ``.env.example``."""

    # The secrets are left out of repr(), so a logged config never shows them.
    #: Signs tokens. Required, at least 32 characters.
    secret_key: str = dataclasses.field(repr=False)
    #: Digests secrets for storage. Required, at least 32 characters.
    pepper: str = dataclasses.field(repr=False)
    #: Older signing secrets and peppers that still verify, oldest first.
    secret_key_fallbacks: tuple[str, ...] = dataclasses.field(default=(), repr=False)
    pepper_fallbacks: tuple[str, ...] = dataclasses.field(default=(), repr=False)
    token_prefix: str = "gk_"  # noqa: S105 - a label for scanners, not a secret
    store_url: str = "memory://"
    store_prefix: str = "guard:"
    #: Seconds a store call may take before the request is refused with 503.
    store_timeout: float = 0.5
    #: Seconds a cached key record may be used without hearing from the store.
    store_cache_ttl: float = 5.0
    accept_imported_keys: bool = False
    #: Also accept the token alone in this request header (e.g. ``X-API-Key``), besides
    #: ``Authorization: Bearer``; empty: only the latter. A request with both is refused.
    api_key_header: str = ""
    #: The realm named in ``WWW-Authenticate``.
    realm: str = "api"
    #: Default per-key limit; a key's own ``rate_limit`` overrides it.
    rate_limit: str = "600/minute"
    #: Failed authentications allowed per client address; past it every attempt from
    #: that address is refused with 429 without being checked, so guessing is throttled.
    failed_auth_limit: str = "30/minute"
    #: An IPv6 client's failures are counted by its network of this many bits.
    failed_auth_ipv6_prefix: int = 64
    ratelimit_storage_url: str = "memory://"
    ratelimit_strategy: str = "fixed-window"
    #: When the limiter's storage is down: false refuses with 503 (fail closed), true
    #: lets authenticated requests through unlimited. Authentication always fails closed.
    ratelimit_fail_open: bool = False
    #: Allowed browser origins (exact ``scheme://host[:port]``), comma-separated; empty
    #: turns CORS off.
    cors_origins: tuple[str, ...] = ()
    cors_allow_credentials: bool = False
    cors_allow_headers: tuple[str, ...] = ("Authorization", "Content-Type", "X-Request-ID")
    cors_max_age: int = 600
    #: Redirect plain-HTTP requests to HTTPS. Turn off only for local development.
    force_https: bool = True
    #: Acknowledges serving plain HTTP with force_https off outside debug and testing.
    allow_plain_http: bool = False
    hsts_max_age: int = 31_536_000
    #: Reverse proxies in front of the app whose X-Forwarded-For/-Proto are trusted
    #: (werkzeug's ProxyFix hop count). 0 ignores those headers from everyone.
    trusted_proxies: int = 0
    #: Largest request body in bytes (413 past it).
    max_content_length: int = 1_048_576
    #: Content types a request body may have (415 otherwise); empty accepts any.
    content_types: tuple[str, ...] = ("application/json",)
    #: The most connections each Redis pool of a worker opens (the store's, the limiter's,
    #: the audit stream's); past it a call waits up to store_timeout, then 503. 0: redis-py's
    #: default (100 a pool, refused at once past it).
    redis_max_connections: int = 0
    #: Also send audit entries to this Redis (a Stream), batched; empty: local log only.
    audit_stream_url: str = ""
    audit_stream_key: str = "guard:audit"
    audit_stream_maxlen: int = 100_000
    #: Prometheus metrics (needs the ``metrics`` extra), served at ``metrics_path``.
    metrics: bool = False
    metrics_path: str = "/metrics"
    #: Serve the metrics to anyone; otherwise a key with the scope ``metrics:read``.
    metrics_public: bool = False
    #: Label ``guard_requests_total`` with ``key_id`` too (one series per key).
    metrics_key_label: bool = False
    #: Label ``guard_requests_total`` with the key's ``owner`` too (one series per owner;
    #: off, so the series stay bounded by the guard's own outcomes).
    metrics_owner_label: bool = False
    #: Serve a readiness check here (store and limiter answer: 200, else 503), for a
    #: load balancer; empty: none.
    ready_path: str = ""
    #: A scrape credential checked without the store (32+ characters): with it set, the
    #: metrics answer this Bearer token only, also while the store is down.
    metrics_token: str = dataclasses.field(default="", repr=False)

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
        for name in ("rate_limit", "failed_auth_limit"):
            try:
                parts = limits.parse_many(getattr(self, name))
            except ValueError:
                parts = []
            if not parts:
                raise ConfigurationError(
                    f"{PREFIX}{name.upper()} must be a rate limit such as '600/minute' "
                    f"(several: '600/minute;10000/day'), not {getattr(self, name)!r}"
                )
        if len(limits.parse_many(self.failed_auth_limit)) > 1:
            raise ConfigurationError(f"{PREFIX}FAILED_AUTH_LIMIT takes one limit, not several")
        if self.ratelimit_strategy not in limits.strategies.STRATEGIES:
            known = ", ".join(limits.strategies.STRATEGIES)
            raise ConfigurationError(f"GUARD_RATELIMIT_STRATEGY must be one of {known}")
        for origin in self.cors_origins:
            # Exact strings only: Flask-CORS reads an entry with regex characters as an
            # unanchored pattern, which would grant look-alike origins.
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ConfigurationError(
                    f"GUARD_CORS_ORIGINS: {origin!r} is not an exact origin "
                    "(scheme://host[:port], no paths, wildcards or regex characters)"
                )
        if "*" in self.cors_origins and self.cors_allow_credentials:
            raise ConfigurationError(
                "GUARD_CORS_ORIGINS='*' with GUARD_CORS_ALLOW_CREDENTIALS would let any site "
                "make credentialed requests: list the allowed origins instead"
            )
        if not 1 <= self.failed_auth_ipv6_prefix <= 128:
            raise ConfigurationError(
                f"{PREFIX}FAILED_AUTH_IPV6_PREFIX must be a prefix length from 1 to 128"
            )
        for name in (
            "trusted_proxies",
            "cors_max_age",
            "hsts_max_age",
            "max_content_length",
            "redis_max_connections",
        ):
            if getattr(self, name) < 0:
                raise ConfigurationError(f"{PREFIX}{name.upper()} must not be negative")
        if self.metrics_token:
            if not self.metrics or self.metrics_public:
                raise ConfigurationError(
                    "GUARD_METRICS_TOKEN is set, so the metrics are meant to be private and "
                    "on: set GUARD_METRICS=true and GUARD_METRICS_PUBLIC=false"
                )
            if len(self.metrics_token) < MIN_SECRET_LENGTH:
                raise ConfigurationError(
                    f"GUARD_METRICS_TOKEN must be at least {MIN_SECRET_LENGTH} characters"
                )
        if self.ready_path and not self.ready_path.startswith("/"):
            raise ConfigurationError("GUARD_READY_PATH must be a path starting with '/'")
        if not self.metrics_path.startswith("/"):
            raise ConfigurationError("GUARD_METRICS_PATH must be a path starting with '/'")
        name = self.api_key_header.lower()
        if name and (
            _HEADER_NAME.fullmatch(name) is None
            or name in _RESERVED_HEADERS
            or name.startswith("x-forwarded-")
        ):
            raise ConfigurationError(
                "GUARD_API_KEY_HEADER must be a header name of letters, digits and hyphens "
                "such as X-API-Key, and not one HTTP, proxies or the guard already use "
                f"(Authorization, Cookie, X-Forwarded-*...), not {self.api_key_header!r}"
            )
        if self.store_timeout <= 0 or self.store_cache_ttl < 0:
            raise ConfigurationError(
                "GUARD_STORE_TIMEOUT must be positive and GUARD_STORE_CACHE_TTL not negative"
            )

    @functools.cached_property
    def api_key_environ(self) -> str | None:
        """The WSGI environ key of :attr:`api_key_header` (``HTTP_X_API_KEY``), or
        ``None`` when it is not set: worked out once, read on every request."""
        if not self.api_key_header:
            return None
        return "HTTP_" + self.api_key_header.upper().replace("-", "_")

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
    elif kind == "int":
        try:
            if not isinstance(value, (bool, float)):
                return int(value)
        except (TypeError, ValueError):
            pass
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
    secret = any(word in setting for word in ("SECRET", "PEPPER", "TOKEN"))
    shown = "" if secret else f", not {value!r}"
    raise ConfigurationError(f"{setting} must be a {_DESCRIPTIONS[kind]}{shown}")


_DESCRIPTIONS = {
    "bool": "boolean (true/false, 1/0, yes/no, on/off)",
    "float": "number",
    "int": "whole number",
    "tuple[str, ...]": "comma-separated list",
    "str": "string",
}
