"""Errors raised by credential stores.

The tree, rooted in one class so callers can catch every store failure at once::

    StoreError
      StoreUnavailable    the backend did not answer (driver error or timeout);
                          the driver's exception is kept as ``__cause__``
      InvalidStoreURL     unknown scheme or unusable URL, raised at start-up
      ReadOnlyStore       a write was attempted on a store that cannot be written
      KeyNotFound         lifecycle operations on an unknown key id
      InvalidRecord       a stored or configured record cannot be parsed
      OwnersUnsupported   a store that keeps no owner records was asked for one
      Conflict            a compare-and-set write found other records than expected

The hot path never sees :class:`KeyNotFound`: :meth:`KeyStore.get` returns ``None``.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base class for every error a credential store raises."""


class StoreUnavailable(StoreError):
    """The store could not answer. Callers must fail closed."""


class InvalidStoreURL(StoreError, ValueError):
    """The store URL names an unknown scheme or cannot be used."""


class ReadOnlyStore(StoreError):
    """The store is read-only at run time (``env://``)."""


class OwnersUnsupported(StoreError):
    """The store keeps no owner records (a store written before owners existed): a key
    naming an owner there is refused rather than served without the owner's limits."""

    def __init__(self, store: str) -> None:
        super().__init__(
            f"the {store} store keeps no owners: implement get_owner, owners, save_owner "
            "and delete_owner (see stores.KeyStore) to use keys with an owner"
        )


class KeyNotFound(StoreError, LookupError):
    """No key with this id exists in the store."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"no key with id {key_id!r}")
        self.key_id = key_id


class InvalidRecord(StoreError, ValueError):
    """A key record is malformed; the message names the offending entry."""


class Conflict(StoreError):
    """A write found the stored records changed since they were read: nothing was
    written. Read again and decide again (a revocation is never overwritten blindly)."""

    def __init__(self, key_ids: list[str]) -> None:
        names = ", ".join(key_ids)
        super().__init__(f"key(s) {names} changed while being updated: nothing was written")
        self.key_ids = key_ids
