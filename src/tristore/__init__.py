"""tristore: an async data layer over SQLite (WAL), Kuzu and Redis.

Everything a user needs is importable from here::

    from tristore import Coordinator, GraphStore, SQLiteStore, CacheStore, Settings

The settings and the errors are imported with the package. The stores, the pool, the
coordinator, the manager and the monitor are imported on first use (PEP 562 ``__getattr__``):
they pull in the drivers (aiosqlite, kuzu, redis, hdrhistogram, psutil), several times the cost
of the rest, and every ``import tristore.x`` runs this module first, so importing them here would
make the lightest submodule import (``tristore.config`` for a command line) carry all of them.
"""

from __future__ import annotations

import importlib
import typing as _typing

from tristore.config import Settings, load_settings
from tristore.errors import (
    ConfigError,
    CoordinatorError,
    CoordinatorTimeout,
    DeadlockError,
    PoolClosed,
    PoolConfigError,
    PoolError,
    PoolTimeout,
    QueryError,
    ServiceError,
    StoreError,
    StoreFull,
    StoreUnavailable,
    TooManyRequests,
    TransactionConflict,
    TristoreError,
    ValueTooLarge,
)

# What type checkers and the API reference see; at run time these are imported on first use.
if _typing.TYPE_CHECKING:
    from tristore.coordinator import (
        Coordinator,
        DeadLetter,
        Transaction,
        validate_consistency,
    )
    from tristore.manager import PoolManager
    from tristore.monitor import Monitor
    from tristore.pool import Pool, PoolConfig
    from tristore.stores import CacheStore, GraphStore, SQLiteStore

__version__ = "0.1.0"

# Exported name -> the module that defines it, imported when the name is first used.
_LAZY: dict[str, str] = {
    "CacheStore": "tristore.stores",
    "Coordinator": "tristore.coordinator",
    "DeadLetter": "tristore.coordinator",
    "GraphStore": "tristore.stores",
    "Monitor": "tristore.monitor",
    "Pool": "tristore.pool",
    "PoolConfig": "tristore.pool",
    "PoolManager": "tristore.manager",
    "SQLiteStore": "tristore.stores",
    "Transaction": "tristore.coordinator",
    "validate_consistency": "tristore.coordinator",
}

__all__ = [
    "CacheStore",
    "ConfigError",
    "Coordinator",
    "CoordinatorError",
    "CoordinatorTimeout",
    "DeadLetter",
    "DeadlockError",
    "GraphStore",
    "Monitor",
    "Pool",
    "PoolClosed",
    "PoolConfig",
    "PoolConfigError",
    "PoolError",
    "PoolManager",
    "PoolTimeout",
    "QueryError",
    "SQLiteStore",
    "ServiceError",
    "Settings",
    "StoreError",
    "StoreFull",
    "StoreUnavailable",
    "TooManyRequests",
    "Transaction",
    "TransactionConflict",
    "TristoreError",
    "ValueTooLarge",
    "__version__",
    "load_settings",
    "validate_consistency",
]


def __getattr__(name: str) -> _typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tristore' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
