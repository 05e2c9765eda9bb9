"""SQLite in WAL mode through aiosqlite: one writer lane, a pool of readers.

One idea per module:

* :mod:`~tristore.stores.sqlite.connect`: set-up. Open a connection, apply the pragmas and read
  them back, enter inline mode; the one place aiosqlite's private API is used.
* :mod:`~tristore.stores.sqlite.errors`: sqlite3's errors as tristore's typed errors, and the
  parameter checks made before a round trip.
* :mod:`~tristore.stores.sqlite.checkpoints`: WAL relief. Background PASSIVE copies, RESTARTs
  that never wait for a reader with the lane held, and the WAL's growth reported.
* :mod:`~tristore.stores.sqlite.writer`: the one write engine. Every write transaction (``write``,
  ``transaction``, ``write_lane``) runs its steps, COMMIT, fallback to the writer thread and
  counters through :class:`WriterTx`, inline on the event loop when the commit is cheap.
* :mod:`~tristore.stores.sqlite.store`: :class:`SQLiteStore`, the store the rest of tristore uses.
"""

from tristore.stores.sqlite.checkpoints import Checkpointer
from tristore.stores.sqlite.connect import (
    SQLiteConnection,
    SQLiteConnector,
    apply_pragmas,
    enter_inline_mode,
    inline_eligible,
    read_pragmas,
    verify_pragmas,
)
from tristore.stores.sqlite.errors import (
    DRIVER_ERRORS,
    SQLITE_INTEGER,
    STORE,
    Params,
    ReplayDiverged,
    check_params,
    is_busy,
    is_corrupt,
    is_full,
    translate,
)
from tristore.stores.sqlite.store import SQLiteStore
from tristore.stores.sqlite.writer import (
    INLINE_SLICE_S,
    STEP_INTERVAL,
    WRITE_COUNTERS,
    WriteEngine,
    WriterTx,
    begin_immediate,
)

# The names these had when the store was one module (measurement scripts import them).
_Checkpointer = Checkpointer
_SQLiteConnector = SQLiteConnector

__all__ = [
    "DRIVER_ERRORS",
    "INLINE_SLICE_S",
    "SQLITE_INTEGER",
    "STEP_INTERVAL",
    "STORE",
    "WRITE_COUNTERS",
    "Checkpointer",
    "Params",
    "ReplayDiverged",
    "SQLiteConnection",
    "SQLiteConnector",
    "SQLiteStore",
    "WriteEngine",
    "WriterTx",
    "apply_pragmas",
    "begin_immediate",
    "check_params",
    "enter_inline_mode",
    "inline_eligible",
    "is_busy",
    "is_corrupt",
    "is_full",
    "read_pragmas",
    "translate",
    "verify_pragmas",
]
