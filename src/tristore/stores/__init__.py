"""One module per store; each implements :class:`~tristore.stores.base.Store`."""

from tristore.stores.base import CheckedOnDisk, Store
from tristore.stores.cache import CacheStore
from tristore.stores.graph import GraphStore, available_engines
from tristore.stores.sqlite import SQLiteStore

__all__ = [
    "CacheStore",
    "CheckedOnDisk",
    "GraphStore",
    "SQLiteStore",
    "Store",
    "available_engines",
]
