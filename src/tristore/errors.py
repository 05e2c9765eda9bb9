"""Typed errors: every failure a caller can act on has its own class.

Each message says what went wrong and what to do about it, so that a caller (or a person reading a
log) does not need to know which driver raised underneath.
"""

from __future__ import annotations


class TristoreError(Exception):
    """Base of every error tristore raises on purpose."""


class ConfigError(TristoreError, ValueError):
    """A setting is unknown, of the wrong type or out of range."""


class StoreError(TristoreError):
    """A store rejected or failed an operation. ``store`` names which one."""

    def __init__(self, store: str, message: str) -> None:
        super().__init__(f"[{store}] {message}")
        self.store = store


class StoreUnavailable(StoreError):
    """The store cannot be reached or started (dead server, missing binary, locked file)."""


class StoreFull(StoreUnavailable):
    """The store is out of room (a full disk, or a size cap): nothing of the failed operation
    was kept, and it can succeed once space is freed."""


class TransactionConflict(StoreError):
    """Another writer changed what a transaction had already read: nothing of it was kept.

    Not a fault of the query: the same transaction may be retried from its start.
    """


class QueryError(StoreError):
    """The store refused a query: a syntax error, a constraint, a wrong-typed parameter."""


class ValueTooLarge(QueryError):
    """A value exceeds the size tristore accepts for that store."""


class ServiceError(StoreUnavailable):
    """An embedded server could not be started or stopped."""


class PoolError(TristoreError):
    """Misuse of a pool: closed, foreign connection, bad limits."""


class PoolConfigError(PoolError, ConfigError):
    """A pool limit is out of range (both a :class:`PoolError` and a :class:`ConfigError`)."""


class PoolClosed(PoolError):
    """Acquire on a pool that is closed or closing."""


class PoolTimeout(PoolError, TimeoutError):
    """No connection became available within the acquire timeout."""


class TooManyRequests(PoolError):
    """More requests are waiting than the pool's ``max_waiting`` allows."""


class CoordinatorError(TristoreError):
    """A coordinated transaction failed and was rolled back (nothing was applied)."""


class CoordinatorTimeout(CoordinatorError, TimeoutError):
    """A coordinated transaction waited longer than its bound for a store lock."""


class DeadlockError(CoordinatorError):
    """Lock order would be violated, or a bounded wait suggests a cycle."""
