"""Pluggable credential stores for the guard, chosen by URL."""

from .base import KeyRecord as KeyRecord
from .base import KeyStore as KeyStore
from .env import EnvStore as EnvStore
from .errors import InvalidRecord as InvalidRecord
from .errors import InvalidStoreURL as InvalidStoreURL
from .errors import KeyNotFound as KeyNotFound
from .errors import ReadOnlyStore as ReadOnlyStore
from .errors import StoreError as StoreError
from .errors import StoreUnavailable as StoreUnavailable
from .factory import SCHEMES as SCHEMES
from .factory import from_url as from_url
from .memory import MemoryStore as MemoryStore
from .redis import RedisStore as RedisStore
