"""SQLite in WAL mode through aiosqlite: one writer lane, a pool of readers.

Every write goes through a single connection with ``BEGIN IMMEDIATE``: SQLite allows one writer
anyway, and a DEFERRED transaction that upgrades to a write gets SQLITE_BUSY without honouring
busy_timeout. A whole write transaction runs in one hop to the connection's thread
(:meth:`SQLiteStore.write`), because aiosqlite's execute/commit awaits cost about 4x raw sqlite3.
Since BEGIN..COMMIT/ROLLBACK then run together in that thread, a cancelled caller can never leave a
transaction open on the writer.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from tristore.config import Settings
from tristore.errors import QueryError, StoreUnavailable
from tristore.pool import Pool, PoolConfig
from tristore.schema import register_functions, sqlite_script
from tristore.stores.limits import check_values

T = TypeVar("T")
STORE = "sqlite"
Params = Sequence[Any] | dict[str, Any]


class SQLiteConnection:
    """An aiosqlite connection plus a one-hop ``run``.

    ``run`` uses aiosqlite's ``_execute`` (queue a callable to the connection's thread): the public
    API has no way to run several statements in one hop, and this is the same queue every public
    method uses, so ordering with them is preserved.
    """

    __slots__ = ("aio", "readonly")

    def __init__(self, aio: aiosqlite.Connection, *, readonly: bool) -> None:
        self.aio = aio
        self.readonly = readonly

    @property
    def raw(self) -> sqlite3.Connection:
        return self.aio._conn

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self.aio._execute(fn, self.aio._conn)

    @property
    def in_transaction(self) -> bool:
        return self.aio.in_transaction


def _apply_pragmas(conn: sqlite3.Connection, settings: Settings, *, readonly: bool) -> None:
    s = settings.sqlite
    # Values are validated Literals/ints from the settings; PRAGMA takes no bound parameters.
    conn.execute(f"PRAGMA busy_timeout = {int(s.busy_timeout_ms)}")
    if not readonly:
        mode = conn.execute(f"PRAGMA journal_mode = {s.journal_mode}").fetchone()[0]
        if str(mode).upper() != s.journal_mode:
            raise StoreUnavailable(STORE, f"journal_mode is {mode}, expected {s.journal_mode}")
    conn.execute(f"PRAGMA synchronous = {s.synchronous}")
    conn.execute(f"PRAGMA cache_size = {int(s.cache_size)}")
    conn.execute("PRAGMA foreign_keys = ON")
    if readonly:
        conn.execute("PRAGMA query_only = ON")
    verify_pragmas(conn, settings)


_SYNC_NAMES = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


def read_pragmas(conn: sqlite3.Connection) -> dict[str, Any]:
    return {
        "journal_mode": str(conn.execute("PRAGMA journal_mode").fetchone()[0]).upper(),
        "busy_timeout_ms": conn.execute("PRAGMA busy_timeout").fetchone()[0],
        "cache_size": conn.execute("PRAGMA cache_size").fetchone()[0],
        "synchronous": _SYNC_NAMES[conn.execute("PRAGMA synchronous").fetchone()[0]],
        "foreign_keys": bool(conn.execute("PRAGMA foreign_keys").fetchone()[0]),
    }


def verify_pragmas(conn: sqlite3.Connection, settings: Settings) -> None:
    """Read the pragmas back: a pragma SQLite does not understand is silently ignored."""
    s = settings.sqlite
    actual = read_pragmas(conn)
    expected = {
        "journal_mode": s.journal_mode,
        "busy_timeout_ms": s.busy_timeout_ms,
        "cache_size": s.cache_size,
        "synchronous": s.synchronous,
        "foreign_keys": True,
    }
    wrong = {k: (actual[k], v) for k, v in expected.items() if actual[k] != v}
    if wrong:
        detail = ", ".join(f"{k}={a!r} (expected {e!r})" for k, (a, e) in wrong.items())
        raise StoreUnavailable(STORE, f"pragmas not applied: {detail}")


def translate(exc: BaseException, *, reader: bool = False) -> Exception:
    """Map a sqlite3 error to tristore's typed errors (the caller re-raises it ``from exc``)."""
    msg = str(exc)
    if reader and "readonly" in msg:
        return QueryError(STORE, f"{msg}: readers are query_only, write with write()/execute()")
    if isinstance(exc, sqlite3.IntegrityError):
        return QueryError(STORE, f"constraint violated: {msg}")
    if isinstance(exc, OverflowError):
        return QueryError(STORE, f"a parameter is outside SQLite's 64-bit INTEGER range: {msg}")
    if isinstance(exc, sqlite3.ProgrammingError | sqlite3.InterfaceError):
        return QueryError(STORE, f"bad statement or parameter: {msg}")
    if _is_corrupt(exc):
        return StoreUnavailable(
            STORE, f"database file is corrupt ({msg}): restore it from a backup or remove it"
        )
    if isinstance(exc, sqlite3.OperationalError) and (
        "unable to open" in msg or "readonly" in msg or "disk I/O" in msg
    ):
        return StoreUnavailable(STORE, f"cannot use the database file: {msg}")
    if getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY:
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


# sqlite3 raises a bare OverflowError for an int outside SQLite's 64-bit INTEGER.
DRIVER_ERRORS = (sqlite3.Error, OverflowError)
SQLITE_INTEGER = range(-(2**63), 2**63)


def _is_corrupt(exc: BaseException) -> bool:
    msg = str(exc)
    return isinstance(exc, sqlite3.DatabaseError) and (
        "not a database" in msg or "malformed" in msg or "corrupt" in msg
    )


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


class _SQLiteConnector:
    store = STORE

    def __init__(self, settings: Settings, *, readonly: bool) -> None:
        self.settings = settings
        self.readonly = readonly

    async def connect(self) -> SQLiteConnection:
        try:
            # isolation_level=None: tristore issues BEGIN IMMEDIATE itself, sqlite3 must not BEGIN.
            aio = await aiosqlite.connect(self.settings.sqlite_path, isolation_level=None)
        except DRIVER_ERRORS as exc:
            raise translate(exc) from exc
        try:
            await aio._execute(self._setup, aio._conn)
        except BaseException as exc:
            await aio.close()
            if isinstance(exc, sqlite3.Error):
                raise translate(exc) from exc
            raise
        return SQLiteConnection(aio, readonly=self.readonly)

    def _setup(self, conn: sqlite3.Connection) -> None:
        _apply_pragmas(conn, self.settings, readonly=self.readonly)
        register_functions(conn)

    async def close(self, conn: SQLiteConnection) -> None:
        await conn.aio.close()

    async def check(self, conn: SQLiteConnection) -> None:
        await conn.run(lambda c: c.execute("SELECT 1").fetchone())

    async def reset(self, conn: SQLiteConnection) -> bool:
        # An open transaction on return means the caller's state is unknown: discard.
        return not conn.in_transaction


class SQLiteStore:
    """The relational store: ``write`` for transactions, ``fetchall``/``fetchone`` for reads."""

    def __init__(
        self,
        settings: Settings,
        *,
        reader_pool: PoolConfig | None = None,
        apply_schema: bool = True,
    ) -> None:
        self.settings = settings
        self.apply_schema = apply_schema
        self.writer: Pool[SQLiteConnection] = Pool(
            _SQLiteConnector(settings, readonly=False),
            PoolConfig(min_size=1, max_size=1, timeout=settings.sqlite.busy_timeout_ms / 1000),
            name="sqlite-writer",
        )
        self.readers: Pool[SQLiteConnection] = Pool(
            _SQLiteConnector(settings, readonly=True),
            reader_pool or PoolConfig(min_size=1, max_size=settings.sqlite.readers),
            name="sqlite-readers",
        )

    @property
    def path(self) -> Path:
        return self.settings.sqlite_path

    async def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(STORE, f"cannot create {self.path.parent}: {exc}") from exc
        await self.writer.open()
        try:
            if self.apply_schema:
                script = sqlite_script()
                await self.write(lambda c: _executescript_in_tx(c, script))
            await self.readers.open()
        except BaseException:
            await self.writer.close()
            raise

    async def close(self) -> None:
        await self.readers.close()
        await self.writer.close()

    async def __aenter__(self) -> SQLiteStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- writes -----------------------------------------------------------------------------
    async def write(
        self, fn: Callable[[sqlite3.Connection], T], *, timeout: float | None = None
    ) -> T:
        """Run ``fn(conn)`` inside ``BEGIN IMMEDIATE`` .. ``COMMIT`` in one thread hop.

        ``fn`` raising rolls the transaction back; sqlite3 errors become typed errors.
        """
        async with self.writer.acquire(timeout=timeout) as conn:
            try:
                return await conn.run(lambda c: _in_transaction(c, fn))
            except DRIVER_ERRORS as exc:
                raise translate(exc) from exc

    async def execute(self, sql: str, params: Params = ()) -> int:
        """One parameterized write statement in its own transaction; returns the row count."""
        check_params(params, self.settings.sqlite.max_value_bytes)
        return await self.write(lambda c: c.execute(sql, params).rowcount)

    async def execute_insert(self, sql: str, params: Params = ()) -> int:
        """One INSERT in its own transaction; returns the new rowid."""
        check_params(params, self.settings.sqlite.max_value_bytes)
        return await self.write(lambda c: c.execute(sql, params).lastrowid or 0)

    async def executemany(self, sql: str, rows: Iterable[Params]) -> int:
        rows = list(rows)
        limit = self.settings.sqlite.max_value_bytes
        for row in rows:
            check_params(row, limit)
        return await self.write(lambda c: c.executemany(sql, rows).rowcount)

    @asynccontextmanager
    async def transaction(self, *, timeout: float | None = None) -> AsyncIterator[SQLiteConnection]:
        """A multi-await write transaction, for when the caller must await between statements.

        A cancelled or failed body rolls back; if the rollback cannot be confirmed the writer
        connection is discarded so its unknown state is never reused.
        """
        async with self.writer.acquire(timeout=timeout) as conn:
            try:
                await conn.run(lambda c: c.execute("BEGIN IMMEDIATE"))
            except DRIVER_ERRORS as exc:
                raise translate(exc) from exc
            try:
                yield conn
            except BaseException:
                try:
                    await asyncio.shield(conn.run(_rollback))
                except BaseException:
                    self.writer.discard(conn)
                raise
            try:
                await conn.run(lambda c: c.execute("COMMIT"))
            except DRIVER_ERRORS as exc:
                await conn.run(_rollback)
                raise translate(exc) from exc

    # -- reads ------------------------------------------------------------------------------
    async def fetchall(
        self, sql: str, params: Params = (), *, timeout: float | None = None
    ) -> list[Any]:
        check_params(params, self.settings.sqlite.max_value_bytes)
        async with self.readers.acquire(timeout=timeout) as conn:
            try:
                return await conn.run(lambda c: c.execute(sql, params).fetchall())
            except DRIVER_ERRORS as exc:
                raise translate(exc, reader=True) from exc

    async def fetchone(self, sql: str, params: Params = (), *, timeout: float | None = None) -> Any:
        check_params(params, self.settings.sqlite.max_value_bytes)
        async with self.readers.acquire(timeout=timeout) as conn:
            try:
                return await conn.run(lambda c: c.execute(sql, params).fetchone())
            except DRIVER_ERRORS as exc:
                raise translate(exc, reader=True) from exc

    async def read(
        self, fn: Callable[[sqlite3.Connection], T], *, timeout: float | None = None
    ) -> T:
        """Run ``fn(conn)`` on a reader in one hop (a consistent snapshot for several queries)."""
        async with self.readers.acquire(timeout=timeout) as conn:
            try:
                return await conn.run(lambda c: _in_read_snapshot(c, fn))
            except DRIVER_ERRORS as exc:
                raise translate(exc, reader=True) from exc

    async def checkpoint(self, mode: str = "PASSIVE") -> tuple[int, int, int]:
        if mode not in {"PASSIVE", "FULL", "RESTART", "TRUNCATE"}:
            raise QueryError(STORE, f"unknown checkpoint mode {mode!r}")
        async with self.writer.acquire() as conn:
            return await conn.run(lambda c: c.execute(f"PRAGMA wal_checkpoint({mode})").fetchone())

    async def integrity(self, *, full: bool = False) -> list[str]:
        """SQLite's page check: ``[]`` when healthy, else its findings, one per line.

        ``quick_check`` reads every page (a corrupt page is found even if no query touches it);
        ``full`` runs ``integrity_check``, which also compares every index with its table.
        """
        pragma = "integrity_check" if full else "quick_check"
        async with self.readers.acquire() as conn:
            try:
                rows = await conn.run(lambda c: c.execute(f"PRAGMA {pragma}").fetchall())
            except DRIVER_ERRORS as exc:
                if _is_corrupt(exc):  # the check itself stopped on a bad page: that is its finding
                    return [str(exc)]
                raise translate(exc, reader=True) from exc
        lines = [line for (text,) in rows for line in str(text).splitlines()]
        # "*** in database main ***" heads the findings of each attached database.
        findings = [line for line in lines if not line.startswith("*** in database")]
        return [] if findings == ["ok"] else findings

    async def version(self) -> str:
        return sqlite3.sqlite_version

    async def effective_settings(self) -> dict[str, Any]:
        async with self.writer.acquire() as conn:
            return await conn.run(read_pragmas)

    async def check(self) -> dict[str, Any]:
        return {"writer": await self.writer.check(), "readers": await self.readers.check()}

    def stats(self) -> dict[str, dict[str, Any]]:
        return {"writer": self.writer.stats(), "readers": self.readers.stats()}


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def _in_transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
    except BaseException:
        _rollback(conn)
        raise
    conn.execute("COMMIT")
    return result


def _in_read_snapshot(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    conn.execute("BEGIN")
    try:
        return fn(conn)
    finally:
        _rollback(conn)


def _executescript_in_tx(conn: sqlite3.Connection, script: str) -> None:
    # executescript() would COMMIT first; run the statements one by one inside our transaction.
    for statement in _split_sql(script):
        conn.execute(statement)


def _split_sql(script: str) -> list[str]:
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements
