"""Set-up: open a connection, apply the pragmas and read them back, enter inline mode.

:class:`SQLiteConnection` is the one place that touches aiosqlite's private API.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

import aiosqlite

from tristore.config import Settings
from tristore.errors import StoreUnavailable
from tristore.schema import register_functions
from tristore.stores.sqlite.errors import DRIVER_ERRORS, STORE, translate

T = TypeVar("T")


class SQLiteConnection:
    """An aiosqlite connection plus a one-hop ``run``.

    ``run`` uses aiosqlite's ``_execute`` (queue a callable to the connection's thread) and
    ``raw`` its ``_conn``: the public API has no way to run several statements in one hop, and
    this is the same queue every public method uses, so ordering with them is preserved. No
    other module reaches into aiosqlite.
    """

    __slots__ = ("aio", "inline", "readonly")

    def __init__(self, aio: aiosqlite.Connection, *, readonly: bool, inline: bool = False) -> None:
        self.aio = aio
        self.readonly = readonly
        # True on a writer whose busy_timeout is 0 and whose statements may run on the loop.
        self.inline = inline

    @property
    def raw(self) -> sqlite3.Connection:
        return self.aio._conn

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self.aio._execute(fn, self.aio._conn)

    @property
    def in_transaction(self) -> bool:
        return self.aio.in_transaction


def apply_pragmas(conn: sqlite3.Connection, settings: Settings, *, readonly: bool) -> None:
    s = settings.sqlite
    # Values are validated Literals/ints from the settings; PRAGMA takes no bound parameters.
    conn.execute(f"PRAGMA busy_timeout = {int(s.busy_timeout_ms)}")
    if not readonly:
        mode = conn.execute(f"PRAGMA journal_mode = {s.journal_mode}").fetchone()[0]
        if str(mode).upper() != s.journal_mode:
            raise StoreUnavailable(STORE, f"journal_mode is {mode}, expected {s.journal_mode}")
    conn.execute(f"PRAGMA synchronous = {s.synchronous}")
    conn.execute(f"PRAGMA cache_size = {int(_cache_size(settings, readonly=readonly))}")
    conn.execute("PRAGMA foreign_keys = ON")
    if readonly:
        conn.execute("PRAGMA query_only = ON")
    verify_pragmas(conn, settings, readonly=readonly)


def _cache_size(settings: Settings, *, readonly: bool) -> int:
    # The writer's cache holds pages it has just written, which readers cannot share: see
    # sqlite.writer_cache_size.
    return settings.sqlite.cache_size if readonly else settings.sqlite.writer_cache_size


_SYNC_NAMES = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


def read_pragmas(conn: sqlite3.Connection) -> dict[str, Any]:
    return {
        "journal_mode": str(conn.execute("PRAGMA journal_mode").fetchone()[0]).upper(),
        "busy_timeout_ms": conn.execute("PRAGMA busy_timeout").fetchone()[0],
        "cache_size": conn.execute("PRAGMA cache_size").fetchone()[0],
        "synchronous": _SYNC_NAMES[conn.execute("PRAGMA synchronous").fetchone()[0]],
        "foreign_keys": bool(conn.execute("PRAGMA foreign_keys").fetchone()[0]),
    }


def verify_pragmas(
    conn: sqlite3.Connection, settings: Settings, *, readonly: bool, inline: bool = False
) -> None:
    """Read the pragmas back: a pragma SQLite does not understand is silently ignored.

    ``readonly``: a reader, whose cache_size is ``sqlite.cache_size`` (the writer's is
    ``sqlite.writer_cache_size``); ``inline``: the writer in inline mode (busy_timeout 0).
    """
    s = settings.sqlite
    actual = read_pragmas(conn)
    expected = {
        "journal_mode": s.journal_mode,
        "busy_timeout_ms": 0 if inline else s.busy_timeout_ms,
        "cache_size": _cache_size(settings, readonly=readonly),
        "synchronous": s.synchronous,
        "foreign_keys": True,
    }
    wrong = {k: (actual[k], v) for k, v in expected.items() if actual[k] != v}
    if wrong:
        detail = ", ".join(f"{k}={a!r} (expected {e!r})" for k, (a, e) in wrong.items())
        raise StoreUnavailable(STORE, f"pragmas not applied: {detail}")


def inline_eligible(conn: sqlite3.Connection) -> bool:
    """Whether a commit on ``conn`` is cheap enough to run on the loop: WAL, synchronous <= NORMAL.

    Read from the connection, not the settings: what SQLite applied is what a commit costs. FULL
    and EXTRA sync the WAL on every commit (milliseconds on a real disk); a rollback journal writes
    and syncs the database file itself.
    """
    mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).upper()
    sync = conn.execute("PRAGMA synchronous").fetchone()[0]
    return mode == "WAL" and sync <= 1


def enter_inline_mode(conn: sqlite3.Connection, settings: Settings) -> None:
    conn.execute("PRAGMA busy_timeout = 0")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    # A WAL file that grew under a burst is cut back to this size when it restarts.
    conn.execute(f"PRAGMA journal_size_limit = {int(settings.sqlite.checkpoint_wal_bytes)}")
    verify_pragmas(conn, settings, readonly=False, inline=True)
    if conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] != 0:
        raise StoreUnavailable(STORE, "pragmas not applied: wal_autocheckpoint is not 0")


class SQLiteConnector:
    """The pools' connector: a writer (possibly inline) or a query_only reader."""

    store = STORE

    def __init__(self, settings: Settings, *, readonly: bool) -> None:
        self.settings = settings
        self.readonly = readonly

    async def connect(self) -> SQLiteConnection:
        wants_inline = not self.readonly and self.settings.sqlite.inline_writes
        try:
            # isolation_level=None: tristore issues BEGIN IMMEDIATE itself, sqlite3 must not BEGIN.
            # check_same_thread=False (inline writer only): see the writer module for why the
            # loop thread and aiosqlite's thread never use it at once.
            aio = await aiosqlite.connect(
                self.settings.sqlite_path, isolation_level=None, check_same_thread=not wants_inline
            )
        except DRIVER_ERRORS as exc:
            raise translate(exc) from exc
        conn = SQLiteConnection(aio, readonly=self.readonly)
        try:
            conn.inline = await conn.run(lambda c: self._setup(c, wants_inline))
        except BaseException as exc:
            await aio.close()
            if isinstance(exc, sqlite3.Error):
                raise translate(exc) from exc
            raise
        return conn

    def _setup(self, conn: sqlite3.Connection, wants_inline: bool) -> bool:
        apply_pragmas(conn, self.settings, readonly=self.readonly)
        register_functions(conn)
        inline = wants_inline and inline_eligible(conn)
        if inline:
            enter_inline_mode(conn, self.settings)
        return inline

    async def close(self, conn: SQLiteConnection) -> None:
        await conn.aio.close()

    async def check(self, conn: SQLiteConnection) -> None:
        await conn.run(lambda c: c.execute("SELECT 1").fetchone())

    async def reset(self, conn: SQLiteConnection) -> bool:
        # An open transaction on return means the caller's state is unknown: discard.
        return not conn.in_transaction
