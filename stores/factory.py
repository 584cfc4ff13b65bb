"""Build a store from a URL: the scheme picks the class in :mod:`stores.registry`."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from . import registry
from .base import KeyStore
from .errors import InvalidStoreURL
from .urls import redact


def from_url(url: str, **options: Any) -> KeyStore:
    """The store ``url`` names, e.g. ``memory://``, ``env://GUARD_KEYS``, ``redis://host/0``.

    :param options: the guard's store settings (``prefix``, ``timeout``, ``cache_ttl``;
        ``client`` for Redis), handed to the class's :meth:`~stores.KeyStore.from_url`.
    :raises InvalidStoreURL: for an unknown scheme or an unusable URL.
    """
    scheme = urlsplit(url).scheme
    cls = registry.store_class(scheme)
    if cls is None or not issubclass(cls, KeyStore):
        known = ", ".join(f"{name}://" for name in registry.schemes())
        raise InvalidStoreURL(f"unknown store URL scheme in {redact(url)!r}: use one of {known}")
    return cls.from_url(url, **options)
