"""sqlite3's errors as tristore's typed errors, and the checks made before a round trip.

The README's rule: an error that can succeed later (a lock held elsewhere, a full disk, a
conflict with another writer) is never a :class:`QueryError`, which reads as "your SQL is wrong".
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from tristore.errors import (
    QueryError,
    StoreFull,
    StoreUnavailable,
    TransactionConflict,
    TristoreError,
)
from tristore.stores.limits import check_values

STORE = "sqlite"
Params = Sequence[Any] | dict[str, Any]
# sqlite3 raises a bare OverflowError for an int outside SQLite's 64-bit INTEGER.
DRIVER_ERRORS = (sqlite3.Error, OverflowError)
SQLITE_INTEGER = range(-(2**63), 2**63)


class ReplayDiverged(TransactionConflict, sqlite3.OperationalError):
    """A replayed step of a :class:`~tristore.stores.sqlite.WriterTx` returned something else
    than the first time: another writer changed the data in between. Nothing was kept; the
    transaction may be retried from its start.

    Also a ``sqlite3.OperationalError``, as it always was, so that a caller that translates
    sqlite3 errors with :func:`translate` gets it back unchanged.
    """


def _primary_code(exc: BaseException) -> int:
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF


def is_busy(exc: BaseException) -> bool:
    return _primary_code(exc) == sqlite3.SQLITE_BUSY


def is_full(exc: BaseException) -> bool:
    return _primary_code(exc) == sqlite3.SQLITE_FULL


def is_corrupt(exc: BaseException) -> bool:
    msg = str(exc)
    return isinstance(exc, sqlite3.DatabaseError) and (
        "not a database" in msg or "malformed" in msg or "corrupt" in msg
    )


def translate(exc: BaseException, *, reader: bool = False) -> Exception:
    """Map a sqlite3 error to tristore's typed errors (the caller re-raises it ``from exc``).

    A :class:`TristoreError` (:class:`ReplayDiverged` among them) is returned unchanged.
    """
    if isinstance(exc, TristoreError):
        return exc
    msg = str(exc)
    if reader and "readonly" in msg:
        return QueryError(STORE, f"{msg}: readers are query_only, write with write()/execute()")
    if isinstance(exc, sqlite3.IntegrityError):
        return QueryError(STORE, f"constraint violated: {msg}")
    if isinstance(exc, OverflowError):
        return QueryError(STORE, f"a parameter is outside SQLite's 64-bit INTEGER range: {msg}")
    if isinstance(exc, sqlite3.ProgrammingError | sqlite3.InterfaceError):
        return QueryError(STORE, f"bad statement or parameter: {msg}")
    if is_corrupt(exc):
        return StoreUnavailable(
            STORE, f"database file is corrupt ({msg}): restore it from a backup or remove it"
        )
    if is_full(exc):
        # The disk, or the database's max_page_count. The transaction was rolled back whole.
        return StoreFull(
            STORE,
            f"{msg}: the disk (or the database's max_page_count) is full; nothing of this "
            "write was kept, and it can succeed once space is freed",
        )
    if isinstance(exc, sqlite3.OperationalError) and (
        "unable to open" in msg or "readonly" in msg or "disk I/O" in msg
    ):
        return StoreUnavailable(STORE, f"cannot use the database file: {msg}")
    if is_busy(exc):
        # Another connection (usually another process) held the lock past busy_timeout: the
        # statement is fine, the store is not available to it; retrying later can succeed.
        return StoreUnavailable(
            STORE,
            f"{msg}: another process holds the database's write lock for longer than "
            "sqlite.busy_timeout_ms; stop it, or raise the timeout",
        )
    if isinstance(exc, sqlite3.Error):
        return QueryError(STORE, msg)
    return exc if isinstance(exc, Exception) else QueryError(STORE, msg)


def check_params(params: Params | None, limit: int) -> None:
    """Refuse, before the round trip, what SQLite cannot store: too large, or too wide an int."""
    check_values(STORE, params, limit)
    if not params:
        return
    for value in params.values() if isinstance(params, dict) else params:
        if isinstance(value, int) and value not in SQLITE_INTEGER:
            raise QueryError(
                STORE, f"integer parameter {value} is outside SQLite's 64-bit INTEGER range"
            )
