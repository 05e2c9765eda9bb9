"""tristore: an async data layer over SQLite (WAL), Kuzu and Redis."""

from tristore.config import Settings, load_settings
from tristore.errors import (
    ConfigError,
    CoordinatorError,
    CoordinatorTimeout,
    DeadlockError,
    PoolClosed,
    PoolError,
    PoolTimeout,
    QueryError,
    ServiceError,
    StoreError,
    StoreUnavailable,
    TooManyRequests,
    TristoreError,
    ValueTooLarge,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "CoordinatorError",
    "CoordinatorTimeout",
    "DeadlockError",
    "PoolClosed",
    "PoolError",
    "PoolTimeout",
    "QueryError",
    "ServiceError",
    "Settings",
    "StoreError",
    "StoreUnavailable",
    "TooManyRequests",
    "TristoreError",
    "ValueTooLarge",
    "__version__",
    "load_settings",
]
