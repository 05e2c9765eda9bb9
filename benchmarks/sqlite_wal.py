"""SQLite in WAL mode: single-row and batched commits, NORMAL vs FULL, readers under a writer,
checkpoint cost; raw sqlite3 and aiosqlite alongside as references."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path
from typing import Any

from . import common
from .common import AsyncBench, cache_or_skip, require, settings_in, skip_if_unavailable

WRITES = 100  # transactions per timed call
INSERT = common.registry().INSERT_CUSTOMER  # the registry's sqlite_write (tristore_bench.workloads)


class _Seq:
    """Unique emails across repeats (the column is UNIQUE)."""

    def __init__(self) -> None:
        self.n = 0

    def next(self) -> str:
        self.n += 1
        return f"b{self.n}@bench.example"


class SQLiteCommit(AsyncBench):
    params = [["NORMAL", "FULL"]]
    param_names = ["synchronous"]

    def setup(self, sync: str) -> None:
        stores = require("tristore.stores", "SQLiteStore")
        self.setup_loop()
        self.store: Any = stores.SQLiteStore(settings_in(self.tmpdir, sqlite={"synchronous": sync}))
        self.run(self.store.open())
        self.seq = _Seq()

    def teardown(self, sync: str) -> None:
        self.close_opened("store")
        self.teardown_loop()

    def time_single_row_commit_x100(self, sync: str) -> None:
        """100 transactions of one INSERT each, through the writer lane."""
        self.batch(WRITES, lambda: self.store.execute(INSERT, (self.seq.next(),)))

    def time_batched_commit_100_rows(self, sync: str) -> None:
        """One transaction of 100 INSERTs."""
        rows = [(self.seq.next(),) for _ in range(WRITES)]
        self.run(self.store.executemany(INSERT, rows))


class SQLiteRawReference(AsyncBench):
    """The drivers underneath, measured the same way, for side-by-side ratios."""

    def setup(self) -> None:
        self.setup_loop()
        path = Path(self.tmpdir) / "raw.sqlite3"
        self.raw = sqlite3.connect(path, isolation_level=None)
        self.raw.execute("PRAGMA journal_mode = WAL")
        self.raw.execute("PRAGMA synchronous = NORMAL")
        self.raw.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        aiosqlite = require("aiosqlite", "connect")
        self.aio = self.run(aiosqlite.connect(path))

    def teardown(self) -> None:
        self.close_opened("aio")
        raw = getattr(self, "raw", None)
        if raw is not None:
            raw.close()
        self.teardown_loop()

    def time_sqlite3_commit_x100(self) -> None:
        for _ in range(WRITES):
            self.raw.execute("BEGIN IMMEDIATE")
            self.raw.execute("INSERT INTO t (v) VALUES ('x')")
            self.raw.execute("COMMIT")

    def time_aiosqlite_execute_commit_x100(self) -> None:
        async def many() -> None:
            for _ in range(WRITES):
                await self.aio.execute("INSERT INTO t (v) VALUES ('x')")
                await self.aio.commit()

        self.run(many())


class SQLiteReadsUnderWrite(AsyncBench):
    """Order-summary reads on a seeded database, alone and while a writer commits."""

    params = [[False, True]]
    param_names = ["writer_running"]

    @cache_or_skip
    def setup_cache(self) -> str:
        setup = require("tristore.testing.setup", "seed_files")
        directory = Path("seeded-sqlite").resolve()
        setup.seed_files(directory, "medium", seed=7)
        return str(directory)

    def setup(self, seeded: str, writer_running: bool) -> None:
        skip_if_unavailable(seeded)
        setup = require("tristore.testing.setup", "seed_files", "SeededFiles")
        stores = require("tristore.stores", "SQLiteStore")
        schema = require("tristore.schema", "ORDER_SUMMARY_SQL")
        self.setup_loop()
        files = setup.SeededFiles(
            Path(seeded), Path(seeded) / "tristore.sqlite3", Path(seeded) / "graph.kuzu", {}
        ).copy_to(self.tmpdir)
        self.store: Any = stores.SQLiteStore(files.settings(), apply_schema=False)
        self.run(self.store.open())
        self.sql = schema.ORDER_SUMMARY_SQL
        self.seq = _Seq()
        self.writer: asyncio.Task[None] | None = None
        if writer_running:
            self.writer = self.loop.create_task(self._write_forever())

    async def _write_forever(self) -> None:
        while True:
            await self.store.execute(INSERT, (self.seq.next(),))
            await asyncio.sleep(0)

    def teardown(self, seeded: str, writer_running: bool) -> None:
        if getattr(self, "writer", None) is not None:
            self.writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                self.run(self.writer)
        self.close_opened("store")
        self.teardown_loop()

    def time_order_summary_x20(self, seeded: str, writer_running: bool) -> None:
        async def many() -> None:
            for _ in range(20):
                await self.store.fetchall(self.sql, {"period": "2026-06", "customer_id": None})

        self.run(many())


class SQLiteCheckpoint(AsyncBench):
    def setup(self) -> None:
        stores = require("tristore.stores", "SQLiteStore")
        self.setup_loop()
        self.store: Any = stores.SQLiteStore(settings_in(self.tmpdir))
        self.run(self.store.open())
        self.seq = _Seq()

    def teardown(self) -> None:
        self.close_opened("store")
        self.teardown_loop()

    def time_checkpoint_after_500_rows(self) -> None:
        """Write 500 rows (5 transactions) then TRUNCATE-checkpoint the WAL."""
        for _ in range(5):
            self.run(self.store.executemany(INSERT, [(self.seq.next(),) for _ in range(WRITES)]))
        self.run(self.store.checkpoint("TRUNCATE"))


class SQLiteLoopLag(AsyncBench):
    """How late a 1 ms heartbeat on the event loop wakes while single-row writes run back to back.

    Inline writes run on the loop thread: this is the lag they add (goal: p99 <= 0.5 ms).
    """

    repeat = 1
    number = 1
    BEATS = 400

    def setup(self) -> None:
        stores = require("tristore.stores", "SQLiteStore")
        self.setup_loop()
        self.store: Any = stores.SQLiteStore(settings_in(self.tmpdir))
        self.run(self.store.open())
        self.seq = _Seq()
        self.lags = self.run(self._measure())

    async def _writer(self) -> None:
        while True:
            await self.store.execute(INSERT, (self.seq.next(),))

    async def _measure(self) -> list[float]:
        writer = self.loop.create_task(self._writer())
        lags: list[float] = []
        try:
            for _ in range(self.BEATS):
                start = self.loop.time()
                await asyncio.sleep(0.001)
                lags.append((self.loop.time() - start - 0.001) * 1000)
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        return sorted(lags)

    def teardown(self) -> None:
        self.close_opened("store")
        self.teardown_loop()

    def track_heartbeat_lag_p99_ms(self) -> float:
        return self.lags[int(len(self.lags) * 0.99) - 1]

    track_heartbeat_lag_p99_ms.unit = "ms"  # type: ignore[attr-defined]

    def track_heartbeat_lag_max_ms(self) -> float:
        return self.lags[-1]

    track_heartbeat_lag_max_ms.unit = "ms"  # type: ignore[attr-defined]
