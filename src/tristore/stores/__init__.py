"""One module per store; each exposes ``open``/``close``/``check``/``stats``/``version``."""

from tristore.stores.cache import CacheStore
from tristore.stores.graph import GraphStore, available_engines
from tristore.stores.sqlite import SQLiteStore

__all__ = ["CacheStore", "GraphStore", "SQLiteStore", "available_engines"]
