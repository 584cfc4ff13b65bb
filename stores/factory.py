"""Build a store from a URL; the scheme picks the class, as in ``limits``.

Redis stores are imported only for Redis URLs, so redis-py is loaded only when used.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from .base import KeyStore
from .env import EnvStore
from .errors import InvalidStoreURL
from .memory import MemoryStore

#: The schemes of :class:`~stores.RedisStore` (kept here so naming them loads no driver).
REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster")
#: Scheme -> the store class's name, for messages and documentation.
SCHEMES: dict[str, str] = {
    **{scheme: cls.__name__ for cls in (MemoryStore, EnvStore) for scheme in cls.schemes},
    **dict.fromkeys(REDIS_SCHEMES, "RedisStore"),
}


def from_url(url: str, **options: Any) -> KeyStore:
    """The store ``url`` names, e.g. ``memory://``, ``env://GUARD_KEYS``, ``redis://host/0``.

    :param options: passed to Redis stores (``prefix``, ``timeout``, ``cache_ttl``,
        ``client``); the others take none.
    :raises InvalidStoreURL: for an unknown scheme or an unusable URL.
    """
    scheme = urlsplit(url).scheme
    if scheme not in SCHEMES:
        known = ", ".join(f"{name}://" for name in SCHEMES)
        raise InvalidStoreURL(f"unknown store URL scheme in {url!r}: use one of {known}")
    if scheme in REDIS_SCHEMES:
        from .redis import RedisStore

        try:
            return RedisStore(url, **options)
        except ValueError as exc:  # redis-py's complaint about the URL itself
            raise InvalidStoreURL(f"{url!r}: {exc}") from None
    return MemoryStore(url) if scheme in MemoryStore.schemes else EnvStore(url)
