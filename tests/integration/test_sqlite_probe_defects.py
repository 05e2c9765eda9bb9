"""SQLite defects found by the independent probe (issue 27, items 4, 7 and 8), on real files.

* A reader holding a snapshot (the store's own ``read()``) while writers write: the writers keep
  completing, none times out waiting for the writer lane, and the WAL's growth is reported.
* A full database (``PRAGMA max_page_count`` gives a real SQLITE_FULL without a small disk): a
  temporary store condition, :class:`StoreFull`, and every acknowledged row is still there.
* A step-by-step transaction whose replay diverges because another store wrote in between: a
  :class:`TransactionConflict`, which says the transaction may be retried.

Nothing here asserts how long anything took; the waits are bounded only so that a regression
fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from tristore.errors import (
    PoolTimeout,
    QueryError,
    StoreFull,
    StoreUnavailable,
    TransactionConflict,
    TristoreError,
)
from tristore.stores import SQLiteStore
from tristore.stores.sqlite import ReplayDiverged, translate
from tristore.testing import store_settings

PADDED = "INSERT INTO customers (email, name, country) VALUES (?, ?, 'GB')"
INSERT = "INSERT INTO customers (email, name, country) VALUES (?, 'Ada', 'GB')"
# ~10 VM steps per row: far past a budget of a few thousand steps.
HEAVY_INSERT = (
    "INSERT INTO customers (email, name, country)"
    " WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r LIMIT 2000)"
    " SELECT 'h' || n || '@x.io', 'H', 'GB' FROM r"
)


async def _open(tmp_path: Path, **sqlite: Any) -> SQLiteStore:
    store = SQLiteStore(store_settings(tmp_path, sqlite=sqlite))
    await store.open()
    return store


async def _count(store: SQLiteStore) -> int:
    (n,) = await store.fetchone("SELECT count(*) FROM customers")
    return int(n)


# -- item 4: a long reader ------------------------------------------------------------------


async def test_a_long_reader_never_stops_the_writers(tmp_path: Path) -> None:
    """The store's own ``read()`` holds a snapshot while four writers write padded rows.

    The WAL cannot restart while the snapshot is held, so it passes the hard limit. The
    RESTART checkpoint that followed used to wait for the reader (up to the busy timeout, 30 s)
    with the writer lane held: no write completed and the writers waiting for the lane failed
    with PoolTimeout. Now no write waits for the reader. The writers' lane timeout (3 s) is
    only there so that a stall shows as a failure: a write holds the lane for microseconds.
    """
    limit = 64 * 1024
    store = await _open(tmp_path, checkpoint_wal_bytes=limit)
    hard = limit * store.stats()["checkpoints"]["hard_factor"]
    wal = Path(f"{store.path}-wal")
    holding = threading.Event()
    release = threading.Event()
    stop = asyncio.Event()
    timeouts: list[BaseException] = []
    written_while_pinned = 0  # writes done while the snapshot is held and the WAL is past hard
    pinned = False
    pad = "p" * 3000  # about a page a write

    def hold(c: sqlite3.Connection) -> int:
        (n,) = c.execute("SELECT count(*) FROM customers").fetchone()  # pins the snapshot
        holding.set()
        release.wait(60)
        return int(n)

    async def writer(w: int) -> None:
        nonlocal written_while_pinned
        i = 0
        while not stop.is_set():
            try:
                await store.write(
                    lambda c, i=i: c.execute(PADDED, (f"{w}.{i}@x.io", pad)), timeout=3
                )
            except PoolTimeout as exc:
                timeouts.append(exc)
                return
            i += 1
            if pinned and not release.is_set():
                written_while_pinned += 1
            await asyncio.sleep(0.005)

    try:
        reader = asyncio.create_task(store.read(hold))
        await asyncio.to_thread(holding.wait, 10)
        assert holding.is_set()
        writers = [asyncio.create_task(writer(w)) for w in range(4)]
        # Past the hard limit, then long enough for a stalled lane to show as a timeout.
        for _ in range(3000):
            if timeouts or os.stat(wal).st_size > hard:
                break
            await asyncio.sleep(0.01)
        assert os.stat(wal).st_size > hard, "the WAL never passed the hard limit"
        pinned = True
        await asyncio.sleep(5)
        during = store.stats()["checkpoints"]
        release.set()
        assert await reader == 0
        await asyncio.sleep(0.2)  # the writers go on after the snapshot is gone
        stop.set()
        await asyncio.gather(*writers)

        assert timeouts == []
        assert written_while_pinned > 0
        # The growth is reported while it lasts: the WAL's size, and the restarts it prevented.
        assert during["wal_bytes"] > hard
        assert during["restarts_refused"] > 0
        assert during["wal_pinned"] is True

        # Once the snapshot is gone, the WAL restarts and is cut back.
        for i in range(2000):
            checkpoints = store.stats()["checkpoints"]
            if checkpoints["restarts"] > 0 and os.stat(wal).st_size <= limit:
                break
            await store.execute(INSERT, (f"after{i}@x.io",))
            await store.wait_checkpoint()
        assert os.stat(wal).st_size <= limit, store.stats()["checkpoints"]
        assert store.stats()["checkpoints"]["wal_pinned"] is False
        assert await store.integrity() == []
    finally:
        release.set()
        stop.set()
        await store.close()


# -- item 7: a full disk ---------------------------------------------------------------------


async def _limit_pages(store: SQLiteStore, extra_pages: int) -> int:
    """Cap the writer's database at its current size plus ``extra_pages``: SQLITE_FULL after."""
    async with store.writer.acquire() as conn:

        def cap(c: sqlite3.Connection) -> int:
            (pages,) = c.execute("PRAGMA page_count").fetchone()
            (cap,) = c.execute(f"PRAGMA max_page_count = {int(pages) + extra_pages}").fetchone()
            return int(cap)

        return await conn.run(cap)


@pytest.mark.parametrize("sqlite", [{}, {"synchronous": "FULL"}], ids=["inline", "thread"])
async def test_a_full_database_is_store_full_and_loses_nothing(
    tmp_path: Path, sqlite: dict[str, Any]
) -> None:
    store = await _open(tmp_path, **sqlite)
    try:
        await _limit_pages(store, 8)
        acknowledged: list[str] = []
        pad = "f" * 1500
        with pytest.raises(StoreFull, match="full") as caught:
            for i in range(10_000):
                email = f"full{i}@x.io"
                await store.execute(PADDED, (email, pad))
                acknowledged.append(email)
        err = caught.value
        assert isinstance(err, StoreUnavailable) and not isinstance(err, QueryError)
        assert isinstance(err.__cause__, sqlite3.OperationalError)
        assert acknowledged, "the cap left no room for a single row"

        # A multi-statement transaction that runs out of room leaves nothing behind either.
        with pytest.raises(StoreFull):
            await store.write(
                lambda c: [c.execute(PADDED, (f"tx{i}@x.io", pad)) for i in range(50)]
            )

        # Every acknowledged row is there, and nothing else; the file is sound.
        rows = await store.fetchall("SELECT email FROM customers ORDER BY id")
        assert [email for (email,) in rows] == acknowledged
        assert await store.integrity(full=True) == []

        # Room again (the space freed): writes resume on the same connection.
        await _limit_pages(store, 10_000)
        await store.execute(PADDED, ("resumed@x.io", pad))
        assert await _count(store) == len(acknowledged) + 1
    finally:
        await store.close()


# -- item 8: a replay divergence -------------------------------------------------------------


async def test_a_replay_that_diverges_is_a_retryable_conflict(tmp_path: Path) -> None:
    """Two stores on one file. Store A's step-by-step transaction inserts a row (step 1, inline),
    then runs a step past ``inline_max_steps``: SQLite rolls the whole transaction back, and A
    redoes it on its writer thread. Before the redo (A's thread is held up behind other work),
    store B writes a row; A's replayed step 1 then returns another rowid. That is a conflict
    with another writer, not a bad query: it is typed so, and the transaction may be retried."""
    a = await _open(tmp_path, inline_max_steps=2000)
    b = SQLiteStore(a.settings, apply_schema=False)
    await b.open()
    gate = threading.Event()
    try:
        async with a.writer.acquire() as conn:
            wtx = a.writer_tx(conn)
            first = await wtx.step(lambda c: c.execute(INSERT, ("a1@x.io",)).lastrowid)
            # Hold A's writer thread: the redo queues behind this.
            held = asyncio.create_task(conn.run(lambda c: gate.wait(30)))
            await asyncio.sleep(0)
            heavy = asyncio.create_task(wtx.step(lambda c: c.execute(HEAVY_INSERT).rowcount))
            while a.stats()["writes"]["fallbacks_budget"] == 0:
                await asyncio.sleep(0)
            # A's transaction is rolled back and its redo waits: B takes the write lock.
            await b.execute(INSERT, ("b1@x.io",))
            gate.set()
            assert await held is True
            with pytest.raises(TransactionConflict, match="may be retried") as caught:
                await heavy
            assert not wtx.in_transaction
            await wtx.rollback()

        err = caught.value
        assert isinstance(err, ReplayDiverged) and isinstance(err, TristoreError)
        assert not isinstance(err, QueryError)
        # The coordinator translates sqlite3 errors with the store's translate: it passes through.
        assert translate(err) is err

        # A's transaction left nothing; B's row is there; a retry of A's transaction commits.
        emails = [e for (e,) in await a.fetchall("SELECT email FROM customers ORDER BY id")]
        assert emails == ["b1@x.io"]
        assert first is not None
        await a.write(lambda c: c.execute(INSERT, ("a1@x.io",)))
        assert await _count(a) == 2
    finally:
        gate.set()
        await b.close()
        await a.close()
