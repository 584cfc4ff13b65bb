"""Pluggable credential stores for the guard, chosen by URL.

redis-py is imported only when a Redis store is built (or :class:`RedisStore` is named),
so an app on ``memory://`` or ``env://`` never loads it.
"""

from typing import TYPE_CHECKING, Any

from .base import KeyRecord as KeyRecord
from .base import KeyStore as KeyStore
from .base import Listing as Listing
from .base import OwnerRecord as OwnerRecord
from .base import Quota as Quota
from .env import EnvStore as EnvStore
from .errors import Conflict as Conflict
from .errors import InvalidRecord as InvalidRecord
from .errors import InvalidStoreURL as InvalidStoreURL
from .errors import KeyNotFound as KeyNotFound
from .errors import OwnersUnsupported as OwnersUnsupported
from .errors import ReadOnlyStore as ReadOnlyStore
from .errors import StoreError as StoreError
from .errors import StoreUnavailable as StoreUnavailable
from .factory import from_url as from_url
from .memory import MemoryStore as MemoryStore
from .registry import schemes as schemes
from .registry import store_class as store_class

if TYPE_CHECKING:
    from .redis import RedisStore as RedisStore


def __getattr__(name: str) -> Any:
    # PEP 562: ``stores.RedisStore`` imports redis-py on first use, not with the package.
    if name == "RedisStore":
        from .redis import RedisStore

        return RedisStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
