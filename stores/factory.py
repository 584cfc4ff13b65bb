"""Build a store from a URL; the scheme picks the class, as in ``limits``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from .base import KeyStore
from .env import EnvStore
from .errors import InvalidStoreURL
from .memory import MemoryStore
from .redis import RedisStore

#: Scheme -> store class.
SCHEMES: dict[str, Callable[..., KeyStore]] = {
    scheme: cls for cls in (MemoryStore, EnvStore, RedisStore) for scheme in cls.schemes
}


def from_url(url: str, **options: Any) -> KeyStore:
    """The store ``url`` names, e.g. ``memory://``, ``env://GUARD_KEYS``, ``redis://host/0``.

    :param options: passed to Redis stores (``prefix``, ``timeout``, ``cache_ttl``,
        ``client``); the others take none.
    :raises InvalidStoreURL: for an unknown scheme or an unusable URL.
    """
    scheme = urlsplit(url).scheme
    cls = SCHEMES.get(scheme)
    if cls is None:
        known = ", ".join(f"{name}://" for name in SCHEMES)
        raise InvalidStoreURL(f"unknown store URL scheme in {url!r}: use one of {known}")
    if cls is RedisStore:
        try:
            return RedisStore(url, **options)
        except ValueError as exc:  # redis-py's complaint about the URL itself
            raise InvalidStoreURL(f"{url!r}: {exc}") from None
    return cls(url)
