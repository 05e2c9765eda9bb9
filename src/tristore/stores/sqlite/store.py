"""The relational store: a writer lane and a pool of query_only readers over one WAL file.

Writes go through the store's :class:`~tristore.stores.sqlite.writer.WriteEngine`; reads run
on a reader in one hop each. The set-up of a connection is in
:mod:`~tristore.stores.sqlite.connect`, the error mapping in
:mod:`~tristore.stores.sqlite.errors`, the WAL relief in
:mod:`~tristore.stores.sqlite.checkpoints`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, TypeVar

from tristore.config import Settings
from tristore.errors import QueryError, StoreUnavailable
from tristore.pool import Pool, PoolConfig
from tristore.schema import sqlite_script
from tristore.stores.sqlite.checkpoints import Checkpointer
from tristore.stores.sqlite.connect import SQLiteConnection, SQLiteConnector, read_pragmas
from tristore.stores.sqlite.errors import (
    DRIVER_ERRORS,
    STORE,
    Params,
    check_params,
    is_corrupt,
    translate,
)
from tristore.stores.sqlite.writer import WriteEngine, WriterTx

T = TypeVar("T")


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
        s = settings.sqlite
        self.writer: Pool[SQLiteConnection] = Pool(
            SQLiteConnector(settings, readonly=False),
            PoolConfig(min_size=1, max_size=1, timeout=s.busy_timeout_ms / 1000),
            name="sqlite-writer",
        )
        self.readers: Pool[SQLiteConnection] = Pool(
            SQLiteConnector(settings, readonly=True),
            reader_pool or PoolConfig(min_size=1, max_size=s.readers),
            name="sqlite-readers",
        )
        self._checkpointer = Checkpointer(
            settings.sqlite_path, s.checkpoint_wal_bytes, s.busy_timeout_ms
        )
        self._engine = WriteEngine(self.writer, settings, self._checkpointer)

    @property
    def path(self) -> Path:
        return self.settings.sqlite_path

    @property
    def counters(self) -> dict[str, int]:
        """How writes ran: inline or on the writer thread, and why they fell back."""
        return self._engine.counters

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
        try:
            await self._checkpointer.close()
        finally:
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
        """Run ``fn(conn)`` inside ``BEGIN IMMEDIATE`` .. ``COMMIT``.

        Inline on the event loop when the writer is in inline mode, else (and on SQLITE_BUSY or
        past ``sqlite.inline_max_steps``) in one hop to the writer thread. ``fn`` may therefore be
        called twice: it must have no effects outside the connection, and it must let sqlite3
        errors propagate (one caught after the budget interrupted a write statement, which rolls
        the transaction back, would let ``fn``'s next short statement autocommit).
        ``fn`` raising rolls the transaction back; sqlite3 errors become typed errors.
        """
        return await self._engine.write(fn, timeout)

    async def execute(self, sql: str, params: Params = ()) -> int:
        """One parameterized write statement in its own transaction; returns the row count."""
        check_params(params, self.settings.sqlite.max_value_bytes)
        return await self._engine.write(lambda c: c.execute(sql, params).rowcount, None)

    async def execute_insert(self, sql: str, params: Params = ()) -> int:
        """One INSERT in its own transaction; returns the new rowid."""
        check_params(params, self.settings.sqlite.max_value_bytes)
        return await self._engine.write(lambda c: c.execute(sql, params).lastrowid or 0, None)

    async def executemany(self, sql: str, rows: Iterable[Params]) -> int:
        rows = list(rows)
        limit = self.settings.sqlite.max_value_bytes
        for row in rows:
            check_params(row, limit)
        return await self._engine.write(lambda c: c.executemany(sql, rows).rowcount, None)

    def transaction(
        self, *, timeout: float | None = None
    ) -> AbstractAsyncContextManager[SQLiteConnection]:
        """A multi-await write transaction, for when the caller must await between statements.

        ``async with store.transaction() as conn``: the body uses ``conn.aio`` (aiosqlite) or
        ``conn.run``; it all runs on the writer thread. A cancelled or failed body rolls back;
        if the rollback cannot be confirmed the writer connection is discarded so its unknown
        state is never reused.
        """
        return self._engine.transaction(timeout)

    def write_lane(self, timeout: float | None = None) -> AbstractAsyncContextManager[WriterTx]:
        """The writer lane, for a transaction driven step by step (the coordinator's).

        ``async with store.write_lane(timeout) as tx``: waits up to ``timeout`` seconds (None:
        the writer pool's timeout) for the lane, raising the pool's ``PoolTimeout``; relieves the
        WAL if due (see :mod:`~tristore.stores.sqlite.checkpoints`); yields a :class:`WriterTx`
        (``await tx.step(fn)``, ``await tx.step(fn, commit=True)``, ``await tx.rollback()``,
        ``tx.in_transaction``). On exit a transaction left open (by an exception, a
        cancellation, or a body that never committed) is rolled back, shielded from
        cancellation; if that rollback fails or is cancelled, the connection is discarded.
        The lane is then given back (the pool's return is shielded from cancellation).
        Driver errors from ``step`` come out as sqlite3 errors: :func:`translate` types them.
        """
        return self._engine.lane(timeout)

    def writer_tx(self, conn: SQLiteConnection, *, inline: bool = True) -> WriterTx:
        """Step-by-step write transaction on a writer connection the caller holds.

        ``inline=False``: every step on the writer thread even in inline mode (after
        :meth:`relieve_wal` restarted the WAL). :meth:`write_lane` does all of this for you.
        """
        return WriterTx(self._engine, conn, inline=inline)

    async def relieve_wal(self, conn: SQLiteConnection) -> bool:
        """Restart the WAL, if due, on the writer connection ``conn`` (lane held); never waits.

        True when the WAL was restarted: the caller's next write must run on the writer thread.
        See :meth:`Checkpointer.relieve`.
        """
        return await self._checkpointer.relieve(conn)

    async def wait_checkpoint(self) -> None:
        """Until the background checkpoint in flight, if any, has finished (for tests, close)."""
        await self._checkpointer.wait()

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
        """Run ``fn(conn)`` on a reader in one hop (a consistent snapshot for several queries).

        While it runs, the WAL cannot restart: writers go on, and the WAL grows (reported in
        ``stats()["checkpoints"]``). Keep such snapshots short.
        """
        async with self.readers.acquire(timeout=timeout) as conn:
            try:
                return await conn.run(lambda c: _in_read_snapshot(c, fn))
            except DRIVER_ERRORS as exc:
                raise translate(exc, reader=True) from exc

    async def checkpoint(self, mode: str = "PASSIVE") -> tuple[int, int, int]:
        """Run ``PRAGMA wal_checkpoint(mode)`` on the writer lane, as asked.

        FULL, RESTART and TRUNCATE wait for readers (up to the busy timeout) and block writers
        meanwhile: the store itself only ever runs PASSIVE copies and RESTARTs that never wait.
        """
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
                if is_corrupt(exc):  # the check itself stopped on a bad page: that is its finding
                    return [str(exc)]
                raise translate(exc, reader=True) from exc
        lines = [line for (text,) in rows for line in str(text).splitlines()]
        # "*** in database main ***" heads the findings of each attached database.
        findings = [line for line in lines if not line.startswith("*** in database")]
        return [] if findings == ["ok"] else findings

    async def version(self) -> str:
        return sqlite3.sqlite_version

    async def effective_settings(self) -> dict[str, Any]:
        """The writer's pragmas as SQLite reports them, how writes run, and the WAL's size.

        In inline mode the writer's own busy_timeout is 0 (an SQLITE_BUSY goes to the writer
        thread, which waits ``sqlite.busy_timeout_ms``): ``busy_timeout_ms`` reports that wait,
        ``writer_busy_timeout_ms`` what the connection holds, ``write_path`` the mode.
        The writer has its own cache size: ``cache_size`` is a reader's, ``writer_cache_size``
        the writer's. ``wal_bytes`` is the WAL file's size now (``tristore doctor`` shows it).
        """
        async with self.writer.acquire() as conn:
            pragmas = await conn.run(read_pragmas)
            autocheckpoint = await conn.run(
                lambda c: c.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
            )
        async with self.readers.acquire() as reader:
            reader_cache = await reader.run(lambda c: c.execute("PRAGMA cache_size").fetchone()[0])
        pragmas["writer_cache_size"] = pragmas["cache_size"]
        pragmas["cache_size"] = reader_cache
        pragmas["writer_busy_timeout_ms"] = pragmas["busy_timeout_ms"]
        pragmas["wal_autocheckpoint"] = autocheckpoint
        if conn.inline:
            pragmas["busy_timeout_ms"] = self.settings.sqlite.busy_timeout_ms
            pragmas["write_path"] = "inline"
            pragmas["inline_max_steps"] = self.settings.sqlite.inline_max_steps
            pragmas["checkpoint"] = (
                f"background PASSIVE past {self.settings.sqlite.checkpoint_wal_bytes} WAL bytes"
            )
        else:
            pragmas["write_path"] = "thread"
            pragmas["checkpoint"] = "sqlite autocheckpoint"
        pragmas["wal_bytes"] = self._checkpointer.wal_bytes()
        return pragmas

    async def check(self) -> dict[str, Any]:
        return {"writer": await self.writer.check(), "readers": await self.readers.check()}

    def stats(self) -> dict[str, dict[str, Any]]:
        return {
            "writer": self.writer.stats(),
            "readers": self.readers.stats(),
            "writes": dict(self._engine.counters),
            "checkpoints": self._checkpointer.stats(),
        }


def _in_read_snapshot(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    conn.execute("BEGIN")
    try:
        return fn(conn)
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")


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
