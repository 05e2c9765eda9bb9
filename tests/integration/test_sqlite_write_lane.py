"""``SQLiteStore.write_lane``: the writer lane as a context manager, for step-by-step writers.

Real SQLite files. What the lane did is read from the store's counters and the writer pool's
stats; the only bounds on time are there so that a regression fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from tristore.errors import PoolTimeout, StoreUnavailable
from tristore.stores import SQLiteStore
from tristore.stores.sqlite import WriterTx, translate
from tristore.testing import store_settings

INSERT = "INSERT INTO customers (email, name, country) VALUES (?, 'Ada', 'GB')"


async def _open(tmp_path: Path, **sqlite: Any) -> SQLiteStore:
    store = SQLiteStore(store_settings(tmp_path, sqlite=sqlite))
    await store.open()
    return store


async def _emails(store: SQLiteStore) -> list[str]:
    return [e for (e,) in await store.fetchall("SELECT email FROM customers ORDER BY id")]


def _discarded(store: SQLiteStore) -> int:
    return int(store.writer.stats()["connections_discarded"])


class _LockHolder:
    """Another connection (its own thread) holding SQLite's write lock until released."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.locked = threading.Event()
        self.release = threading.Event()
        self.thread = threading.Thread(target=self._hold)

    def _hold(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            self.locked.set()
            self.release.wait(60)
            conn.execute("COMMIT")
        finally:
            conn.close()

    async def __aenter__(self) -> _LockHolder:
        self.thread.start()
        await asyncio.to_thread(self.locked.wait, 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        await asyncio.to_thread(self.thread.join)


async def test_steps_commit_inline_and_the_lane_is_given_back(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    try:
        before = store.stats()["writes"]
        async with store.write_lane(5) as tx:
            assert isinstance(tx, WriterTx) and not tx.in_transaction
            rowid = await tx.step(lambda c: c.execute(INSERT, ("l1@x.io",)).lastrowid)
            assert tx.in_transaction
            await asyncio.sleep(0)  # other tasks run between the steps
            await tx.step(lambda c: c.execute(INSERT, ("l2@x.io",)), commit=True)
            assert not tx.in_transaction
        after = store.stats()["writes"]
        assert after["writes_inline"] == before["writes_inline"] + 1
        assert after["writes_thread"] == before["writes_thread"]
        assert store.writer.stats()["pool_available"] == 1
        assert await _emails(store) == ["l1@x.io", "l2@x.io"]
        assert rowid == 1
    finally:
        await store.close()


@pytest.mark.parametrize("sqlite", [{}, {"synchronous": "FULL"}], ids=["inline", "thread"])
async def test_an_exception_rolls_back_and_keeps_the_connection(
    tmp_path: Path, sqlite: dict[str, Any]
) -> None:
    store = await _open(tmp_path, **sqlite)
    try:
        discarded = _discarded(store)
        with pytest.raises(ValueError, match="declined"):
            async with store.write_lane(5) as tx:
                await tx.step(lambda c: c.execute(INSERT, ("gone@x.io",)))
                raise ValueError("declined")
        async with store.write_lane(5) as tx:
            await tx.step(lambda c: c.execute(INSERT, ("left@x.io",)))
            # Left without a commit: rolled back too.
        assert await _emails(store) == []
        assert _discarded(store) == discarded  # the rollback was sure: the connection is kept
        await store.execute(INSERT, ("next@x.io",))
        assert await _emails(store) == ["next@x.io"]
    finally:
        await store.close()


async def test_a_driver_error_comes_out_as_sqlite3_and_translate_types_it(
    tmp_path: Path,
) -> None:
    store = await _open(tmp_path)
    try:
        async with store.write_lane(5) as tx:
            await tx.step(lambda c: c.execute(INSERT, ("dup@x.io",)))
            with pytest.raises(sqlite3.IntegrityError) as caught:
                await tx.step(lambda c: c.execute(INSERT, ("dup@x.io",)))
            await tx.rollback()
        assert "constraint" in str(translate(caught.value))
        assert await _emails(store) == []
    finally:
        await store.close()


async def test_waiting_past_the_timeout_is_the_pools_timeout(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    held = asyncio.Event()
    done = asyncio.Event()

    async def holder() -> None:
        async with store.write_lane(5):
            held.set()
            await done.wait()

    try:
        task = asyncio.create_task(holder())
        await held.wait()
        with pytest.raises(PoolTimeout):
            async with store.write_lane(0.05):
                pytest.fail("the lane is held by another task")
        done.set()
        await task
        async with store.write_lane(5) as tx:
            await tx.step(lambda c: c.execute(INSERT, ("after@x.io",)), commit=True)
        assert await _emails(store) == ["after@x.io"]
    finally:
        done.set()
        await store.close()


async def test_a_cancelled_body_is_rolled_back_and_the_lane_given_back(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    started = asyncio.Event()

    async def body() -> None:
        async with store.write_lane(5) as tx:
            await tx.step(lambda c: c.execute(INSERT, ("cancelled@x.io",)))
            started.set()
            await asyncio.Event().wait()  # awaiting something else (the graph, say)

    try:
        discarded = _discarded(store)
        task = asyncio.create_task(body())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert store.writer.stats()["pool_available"] == 1
        assert _discarded(store) == discarded  # an inline rollback is sure: kept
        async with store.writer.acquire() as conn:
            assert not conn.raw.in_transaction
        assert await _emails(store) == []
    finally:
        await store.close()


async def test_a_hop_cancelled_on_the_thread_discards_the_connection_without_waiting(
    tmp_path: Path,
) -> None:
    """A step that met SQLITE_BUSY waits on the writer thread for the lock. Cancelled, its hop
    may still be running: the lane does not wait behind it (that could take the busy timeout),
    it discards the connection, and the lane is free again at once. Closing the discarded
    connection rolls back what the hop did. (A cancelled ``commit=True`` step may still commit,
    as a cancelled await of any driver may: the SQL is not stopped.)"""
    store = await _open(tmp_path, busy_timeout_ms=60_000)
    try:
        discarded = _discarded(store)
        async with _LockHolder(store.path) as holder:

            async def body() -> None:
                async with store.write_lane(5) as tx:
                    await tx.step(lambda c: c.execute(INSERT, ("busy@x.io",)))
                    await tx.step(lambda c: None, commit=True)

            task = asyncio.create_task(body())
            while store.stats()["writes"]["fallbacks_busy"] == 0:
                await asyncio.sleep(0)
            task.cancel()
            async with asyncio.timeout(30):  # the lock is still held: only a hang would reach it
                with pytest.raises(asyncio.CancelledError):
                    await task
            assert not holder.release.is_set()
            assert _discarded(store) == discarded + 1
        await store.execute(INSERT, ("fresh@x.io",))
        assert await _emails(store) == ["fresh@x.io"]
    finally:
        await store.close()


async def test_the_lane_relieves_the_wal_first(tmp_path: Path) -> None:
    """A due restart runs when the lane is taken; the steps then go to the writer thread (the
    first frame of a restarted WAL is fsynced, which must not stall the loop)."""
    store = await _open(tmp_path)
    try:
        await store.execute(INSERT, ("pre@x.io",))
        await store.wait_checkpoint()
        store._checkpointer.want_restart = True  # what a PASSIVE that copied every frame leaves
        before = store.stats()["writes"]
        async with store.write_lane(5) as tx:
            await tx.step(lambda c: c.execute(INSERT, ("post@x.io",)), commit=True)
        after = store.stats()["writes"]
        assert store.stats()["checkpoints"]["restarts"] == 1
        assert after["writes_thread"] == before["writes_thread"] + 1
        assert after["writes_inline"] == before["writes_inline"]
    finally:
        await store.close()


async def test_busy_past_the_timeout_in_a_lane_is_store_unavailable(tmp_path: Path) -> None:
    store = await _open(tmp_path, busy_timeout_ms=1)
    try:
        async with _LockHolder(store.path), store.write_lane(5) as tx:
            with pytest.raises(sqlite3.OperationalError) as caught:
                await tx.step(lambda c: c.execute(INSERT, ("b@x.io",)), commit=True)
            assert not tx.in_transaction
        assert isinstance(translate(caught.value), StoreUnavailable)
        await store.execute(INSERT, ("after@x.io",))
        assert await _emails(store) == ["after@x.io"]
    finally:
        await store.close()
