"""Inline SQLite writes: when the event-loop path is taken, and each way back to the thread.

Real SQLite files throughout. Which path a write took is read from ``stats()["writes"]``; nothing
here depends on how long anything takes.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from tristore.coordinator import Coordinator
from tristore.errors import ConfigError, CoordinatorError, StoreUnavailable
from tristore.stores import SQLiteStore
from tristore.stores.sqlite import ReplayDiverged, inline_eligible
from tristore.stores.sqlite import writer as writer_module
from tristore.stores.sqlite.writer import WriteEngine
from tristore.testing import Stores, store_settings

INSERT = (
    "INSERT INTO customers (email, name, country, tier, created_at)"
    " VALUES (?, 'Ada', 'GB', 'gold', '2026-11-01')"
)
# ~10 VM steps per row: far past a budget of a few thousand steps.
HEAVY_INSERT = (
    "INSERT INTO customers (email, name, country, tier, created_at)"
    " WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r LIMIT 2000)"
    " SELECT 'h' || n || '@x.io', 'H', 'GB', 'gold', '2026-11-01' FROM r"
)
HEAVY_SELECT = (
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r LIMIT 20000)"
    " SELECT sum(n) FROM r"
)


def _writes(store: SQLiteStore) -> dict[str, int]:
    return store.stats()["writes"]


async def _open(tmp_path: Path, **sqlite: Any) -> SQLiteStore:
    store = SQLiteStore(store_settings(tmp_path, sqlite=sqlite))
    await store.open()
    return store


async def _count(store: SQLiteStore) -> int:
    (n,) = await store.fetchone("SELECT count(*) FROM customers")
    return int(n)


async def test_inline_path_when_eligible_and_values_round_trip(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    try:
        before = _writes(store)
        values = (7, 2.5, "naïve ✓", b"\x00\xff", None, -(2**63))
        got = await store.write(lambda c: c.execute("SELECT ?, ?, ?, ?, ?, ?", values).fetchone())
        assert got == values
        rowid = await store.execute_insert(INSERT, ("a@x.io",))
        after = _writes(store)
        assert after["writes_inline"] == before["writes_inline"] + 2
        assert after["writes_thread"] == before["writes_thread"]
        row = await store.fetchone("SELECT id, email FROM customers WHERE id = ?", (rowid,))
        assert row == (rowid, "a@x.io")
        assert (await store.effective_settings())["write_path"] == "inline"
    finally:
        await store.close()


@pytest.mark.parametrize("sqlite", [{"synchronous": "FULL"}, {"inline_writes": False}])
async def test_thread_path_under_full_sync_or_when_switched_off(
    tmp_path: Path, sqlite: dict[str, Any]
) -> None:
    store = await _open(tmp_path, **sqlite)
    try:
        before = _writes(store)
        await store.execute(INSERT, ("a@x.io",))
        after = _writes(store)
        assert after["writes_thread"] == before["writes_thread"] + 1
        assert after["writes_inline"] == before["writes_inline"] == 0
        eff = await store.effective_settings()
        assert eff["write_path"] == "thread"
        # The connection keeps the real timeout and SQLite's own autocheckpoint.
        assert eff["writer_busy_timeout_ms"] == eff["busy_timeout_ms"] == 30_000
        assert eff["wal_autocheckpoint"] == 1000
    finally:
        await store.close()


def test_eligibility_is_read_from_the_connection(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "x.sqlite3", isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = DELETE")
        assert not inline_eligible(conn)
        conn.execute("PRAGMA journal_mode = WAL")
        for sync, ok in (("OFF", True), ("NORMAL", True), ("FULL", False), ("EXTRA", False)):
            conn.execute(f"PRAGMA synchronous = {sync}")
            assert inline_eligible(conn) is ok, sync
    finally:
        conn.close()


async def test_effective_settings_report_the_configured_busy_timeout(tmp_path: Path) -> None:
    store = await _open(tmp_path, busy_timeout_ms=1234)
    try:
        eff = await store.effective_settings()
        assert eff["busy_timeout_ms"] == 1234
        assert eff["writer_busy_timeout_ms"] == 0
        assert eff["wal_autocheckpoint"] == 0
        assert eff["write_path"] == "inline"
    finally:
        await store.close()


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
            self.release.wait()
            conn.execute("COMMIT")
        finally:
            conn.close()

    async def __aenter__(self) -> _LockHolder:
        self.thread.start()
        await asyncio.to_thread(self.locked.wait)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        await asyncio.to_thread(self.thread.join)


async def test_busy_falls_back_to_the_thread_which_waits_for_the_lock(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    try:
        before = _writes(store)
        async with _LockHolder(store.path) as holder:
            task = asyncio.create_task(store.execute(INSERT, ("busy@x.io",)))
            while _writes(store)["fallbacks_busy"] == before["fallbacks_busy"]:
                await asyncio.sleep(0)
            assert not task.done()  # waiting on the writer thread with the real busy_timeout
            holder.release.set()
            await task
        after = _writes(store)
        assert after["fallbacks_busy"] == before["fallbacks_busy"] + 1
        assert after["writes_thread"] == before["writes_thread"] + 1
        assert await _count(store) == 1
        # The lock is free again: the next write is inline.
        await store.execute(INSERT, ("next@x.io",))
        assert _writes(store)["writes_inline"] == after["writes_inline"] + 1
    finally:
        await store.close()


async def test_busy_past_the_timeout_is_store_unavailable(tmp_path: Path) -> None:
    store = await _open(tmp_path, busy_timeout_ms=1)
    try:
        async with _LockHolder(store.path):
            with pytest.raises(StoreUnavailable, match="busy_timeout_ms"):
                await store.execute(INSERT, ("busy@x.io",))
        assert _writes(store)["fallbacks_busy"] == 1
        await store.execute(INSERT, ("after@x.io",))
        assert await _count(store) == 1
    finally:
        await store.close()


async def test_budget_interrupts_a_heavy_write_and_reruns_it_on_the_thread(
    tmp_path: Path,
) -> None:
    store = await _open(tmp_path, inline_max_steps=2000)
    try:
        calls: list[bool] = []

        def heavy(c: sqlite3.Connection) -> int:
            calls.append(c.in_transaction)
            c.execute(INSERT, ("first@x.io",))
            return c.execute(HEAVY_INSERT).rowcount

        before = _writes(store)
        assert await store.write(heavy) == 2000
        after = _writes(store)
        assert after["fallbacks_budget"] == before["fallbacks_budget"] + 1
        assert after["writes_thread"] == before["writes_thread"] + 1
        assert calls == [True, True]  # fn ran twice, each time inside a transaction
        assert await _count(store) == 2001  # the first attempt left nothing behind
    finally:
        await store.close()


async def test_budget_on_a_read_statement_and_a_swallowed_interruption(tmp_path: Path) -> None:
    store = await _open(tmp_path, inline_max_steps=2000)
    try:

        def swallowing(c: sqlite3.Connection) -> Any:
            c.execute(INSERT, ("r@x.io",))
            try:
                return c.execute(HEAVY_SELECT).fetchone()
            except sqlite3.OperationalError:
                return "interrupted"  # fn hides the interruption: the store must not commit

        assert await store.write(swallowing) == (20000 * 20001 // 2,)
        assert _writes(store)["fallbacks_budget"] == 1
        assert await _count(store) == 1
    finally:
        await store.close()


async def test_raising_fn_rolls_back_and_leaves_no_transaction(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    try:

        def failing(c: sqlite3.Connection) -> None:
            c.execute(INSERT, ("x@x.io",))
            raise ValueError("declined")

        with pytest.raises(ValueError, match="declined"):
            await store.write(failing)
        async with store.writer.acquire() as conn:
            assert not conn.raw.in_transaction
        assert await _count(store) == 0
        await store.execute(INSERT, ("y@x.io",))
        assert _writes(store)["writes_inline"] >= 1 and await _count(store) == 1
    finally:
        await store.close()


async def test_cancelled_write_on_the_thread_leaves_no_open_transaction(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    try:
        async with _LockHolder(store.path):
            task = asyncio.create_task(store.execute(INSERT, ("c@x.io",)))
            while _writes(store)["fallbacks_busy"] == 0:
                await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        # The connection whose hop was cut short was discarded; a fresh one serves the next write.
        await store.execute(INSERT, ("d@x.io",))
        async with store.writer.acquire() as conn:
            assert not conn.raw.in_transaction
        emails = await store.fetchall("SELECT email FROM customers ORDER BY email")
        assert ("d@x.io",) in emails
    finally:
        await store.close()


async def test_writer_tx_replays_earlier_steps_after_a_budget_fallback(tmp_path: Path) -> None:
    store = await _open(tmp_path, inline_max_steps=2000)
    try:
        async with store.writer.acquire() as conn:
            wtx = store.writer_tx(conn)
            rowid = await wtx.step(lambda c: c.execute(INSERT, ("s1@x.io",)).lastrowid)
            await asyncio.sleep(0)  # other tasks run between the steps
            assert await wtx.step(lambda c: c.execute(HEAVY_INSERT).rowcount) == 2000
            await wtx.step(lambda c: c.execute(INSERT, ("s3@x.io",)).lastrowid, commit=True)
            assert not conn.raw.in_transaction
        w = _writes(store)
        assert w["fallbacks_budget"] == 1 and w["writes_thread"] == 1
        assert await _count(store) == 2002
        row = await store.fetchone("SELECT email FROM customers WHERE id = ?", (rowid,))
        assert row == ("s1@x.io",)
    finally:
        await store.close()


async def test_writer_tx_refuses_a_replay_that_diverges(tmp_path: Path) -> None:
    store = await _open(tmp_path, inline_max_steps=2000)
    try:
        async with store.writer.acquire() as conn:
            wtx = store.writer_tx(conn)
            await wtx.step(lambda c: c.execute(INSERT, ("s1@x.io",)).rowcount)
            await wtx.step(lambda c: c.execute("SELECT random()").fetchone())
            with pytest.raises(ReplayDiverged, match="step 2 returned another result"):
                await wtx.step(lambda c: c.execute(HEAVY_INSERT).rowcount)
            assert not conn.raw.in_transaction
            await wtx.rollback()
        assert await _count(store) == 0
    finally:
        await store.close()


async def test_background_checkpoint_bounds_the_wal(tmp_path: Path) -> None:
    limit = 64 * 1024
    store = await _open(tmp_path, checkpoint_wal_bytes=limit)
    wal = Path(f"{store.path}-wal")
    try:
        pad = "x" * 2000
        for i in range(600):  # ~1.2 MB of rows, ~2 pages per commit: ~5 MB of WAL unchecked
            await store.execute(
                "INSERT INTO customers (email, name, country, tier, created_at)"
                " VALUES (?, ?, 'GB', 'gold', '2026-11-01')",
                (f"w{i}@x.io", pad),
            )
            if i % 50 == 49:
                await store.wait_checkpoint()
        checkpoints = store.stats()["checkpoints"]
        assert checkpoints["runs"] >= 1 and checkpoints["failures"] == 0
        assert checkpoints["last_error"] is None
        # A background run may overlap the next write (then SQLite reports it busy); once the
        # writes stop, a PASSIVE copy takes every frame.
        busy, frames, done = await store.checkpoint("PASSIVE")
        assert busy == 0 and frames == done
        # Only the WAL's growth past the limit starts one: it was read (the file is there).
        assert os.stat(wal).st_size > 0
        async with store.writer.acquire() as conn:
            assert await conn.run(lambda c: c.execute("SELECT count(*) FROM customers").fetchone())

    finally:
        await store.close()
    assert store.stats()["checkpoints"]["running"] is False


async def test_a_pinned_wal_is_restarted_past_the_hard_limit(tmp_path: Path) -> None:
    """A reader holding a snapshot keeps PASSIVE from ever finishing, so the WAL grows for as
    long as it is held: past HARD_FACTOR x the limit, writes try a restart (which the reader
    refuses: nothing waits for it), and the first try after the reader is gone restarts it."""
    limit = 64 * 1024
    store = await _open(tmp_path, checkpoint_wal_bytes=limit)
    wal = Path(f"{store.path}-wal")
    reader = sqlite3.connect(store.path, isolation_level=None)
    hard = limit * store._checkpointer.HARD_FACTOR
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM customers").fetchone()  # pins the snapshot
        pad = "y" * 3000
        i = 0
        while not store._checkpointer.must_restart:
            assert i < 5000, "the hard limit was never noticed"
            await store.execute(
                "INSERT INTO customers (email, name, country) VALUES (?, ?, 'GB')",
                (f"p{i}@x.io", pad),
            )
            i += 1
        assert os.stat(wal).st_size > hard
        reader.execute("ROLLBACK")  # the snapshot goes; the RESTART can now finish
        extra = 0
        while store.stats()["checkpoints"]["restarts"] == 0:
            assert extra < 500, store.stats()["checkpoints"]
            await store.execute(
                "INSERT INTO customers (email, name, country) VALUES (?, 'q', 'GB')",
                (f"q{extra}@x.io",),
            )
            extra += 1
        busy, frames, done = store.stats()["checkpoints"]["last_restart"]
        assert busy == 0 and frames == done
        # The write after the restart began the WAL again, and journal_size_limit cut the file.
        await store.execute(
            "INSERT INTO customers (email, name, country) VALUES ('r@x.io', 'r', 'GB')"
        )
        assert os.stat(wal).st_size <= limit
        assert (await store.fetchone("SELECT count(*) FROM customers"))[0] == i + extra + 1
    finally:
        reader.close()
        await store.close()


async def test_a_finished_checkpoint_restarts_the_wal_at_the_next_write(tmp_path: Path) -> None:
    """Writes that never pause keep adding frames while the PASSIVE copy runs, so the WAL never
    restarted on its own: it stayed over the limit and a checkpoint (with its fsync) started
    every CHECK_EVERY commits until the hard limit (88 copies in 5,000 writes, each write twice
    raw sqlite3's). Now a copy that took every frame makes the next write restart the WAL."""
    limit = 64 * 1024
    store = await _open(tmp_path, checkpoint_wal_bytes=limit)
    checkpointer = store._checkpointer
    wal = Path(f"{store.path}-wal")
    pad = "z" * 3000  # about a page a write: the limit is passed every ~16 writes
    i = 0

    async def write() -> None:
        nonlocal i
        await store.execute(
            "INSERT INTO customers (email, name, country) VALUES (?, ?, 'GB')",
            (f"s{i}@x.io", pad),
        )
        i += 1

    try:
        for cycle in range(1, 4):
            while not store.stats()["checkpoints"]["running"]:
                assert i < 1000 * cycle, store.stats()["checkpoints"]
                await write()
            await checkpointer.wait()  # the copy finishes with no write adding frames meanwhile
            busy, frames, done = store.stats()["checkpoints"]["last_result"]
            assert busy == 0 and frames == done > 0
            await write()  # RESTART first (the copy left nothing), then this write
            assert store.stats()["checkpoints"]["restarts"] == cycle
            await write()  # the first write after a restart begins the WAL again and cuts it
            assert os.stat(wal).st_size <= limit
        checkpoints = store.stats()["checkpoints"]
        assert checkpoints["runs"] == 3, checkpoints  # one copy per cycle, not one per 32 writes
        assert (await store.fetchone("SELECT count(*) FROM customers"))[0] >= i
    finally:
        await store.close()


async def test_the_write_after_a_restart_goes_to_the_writer_thread(tmp_path: Path) -> None:
    """The first frame in a restarted WAL writes the WAL header and, at synchronous = NORMAL,
    fsyncs it. Inline, that fsync stalled the event loop (1-4 ms, once per restart: the
    loop-lag benchmark's p99). So the write that follows a restart runs on the writer thread;
    the next is inline again. (The coordinator's steps: the test after the next one.)
    """
    store = await _open(tmp_path, checkpoint_wal_bytes=64 * 1024)
    checkpointer = store._checkpointer
    pad = "z" * 3000
    i = 0

    async def write() -> None:
        nonlocal i
        i += 1
        await store.execute(
            "INSERT INTO customers (email, name, country) VALUES (?, ?, 'GB')",
            (f"r{i}@x.io", pad),
        )

    async def copy_everything() -> None:
        while not store.stats()["checkpoints"]["running"]:
            await write()
        await checkpointer.wait()
        assert checkpointer.want_restart

    try:
        await copy_everything()
        before = store.stats()["writes"]
        await write()  # RESTART on the thread, then this write there too
        after = store.stats()["writes"]
        assert store.stats()["checkpoints"]["restarts"] == 1
        assert after["writes_thread"] == before["writes_thread"] + 1
        assert after["writes_inline"] == before["writes_inline"]
        await write()
        assert store.stats()["writes"]["writes_inline"] == after["writes_inline"] + 1

        await copy_everything()
        async with store.writer.acquire() as conn:
            assert await store.relieve_wal(conn)
            assert not store.writer_tx(conn, inline=False)._inline
            assert store.writer_tx(conn)._inline
            assert not await store.relieve_wal(conn)  # nothing due any more
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("inline_max_steps", 10, r"sqlite.inline_max_steps: expected an int in \[100, "),
        ("checkpoint_wal_bytes", 1, r"sqlite.checkpoint_wal_bytes: expected an int in \[65536, "),
    ],
)
def test_new_settings_are_validated(tmp_path: Path, key: str, value: int, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        store_settings(tmp_path, sqlite={key: value})


# -- the coordinator's steps -----------------------------------------------------------------
async def test_coordinated_transaction_runs_inline(
    coordinator: Coordinator, stores: Stores
) -> None:
    before = _writes(stores.sqlite)
    async with coordinator.transaction() as tx:
        cid = (await tx.sql(INSERT + " RETURNING id", ("co@x.io",))).scalar()
        await asyncio.sleep(0)
        await tx.sql_fn(
            lambda c: c.execute("UPDATE customers SET tier = 'silver' WHERE id = ?", (cid,))
        )
        tx.cache("SET", f"customer:{cid}", "silver")
    after = _writes(stores.sqlite)
    assert after["writes_inline"] == before["writes_inline"] + 1
    assert after["writes_thread"] == before["writes_thread"]
    assert await stores.sqlite.fetchone("SELECT tier FROM customers WHERE id = ?", (cid,)) == (
        "silver",
    )


async def test_the_coordinated_steps_after_a_restart_run_on_the_writer_thread(
    coordinator: Coordinator, stores: Stores
) -> None:
    """The coordinator takes the SQLite lane through the same restart check as a plain write:
    its steps after a restart go to the writer thread too (the WAL header's fsync stays off the
    loop), and the transaction commits as usual."""
    sqlite = stores.sqlite
    await sqlite.execute(INSERT, ("pre@x.io",))
    await sqlite.wait_checkpoint()
    sqlite._checkpointer.want_restart = True  # what a PASSIVE that copied every frame leaves
    restarts = sqlite._checkpointer.restarts
    before = _writes(sqlite)
    async with coordinator.transaction() as tx:
        cid = (await tx.sql(INSERT + " RETURNING id", ("restart@x.io",))).scalar()
    after = _writes(sqlite)
    assert sqlite._checkpointer.restarts == restarts + 1
    assert after["writes_thread"] == before["writes_thread"] + 1
    assert after["writes_inline"] == before["writes_inline"]
    assert await sqlite.fetchone("SELECT email FROM customers WHERE id = ?", (cid,)) == (
        "restart@x.io",
    )


async def test_cancelled_coordinated_body_leaves_no_open_transaction(
    coordinator: Coordinator, stores: Stores
) -> None:
    started = asyncio.Event()

    async def body() -> None:
        async with coordinator.transaction() as tx:
            await tx.sql(INSERT, ("gone@x.io",))
            started.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(body())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with stores.sqlite.writer.acquire() as conn:
        assert not conn.raw.in_transaction
    assert await _count(stores.sqlite) == 0


async def test_coordinated_step_that_ends_the_transaction_is_still_refused(
    coordinator: Coordinator,
) -> None:
    with pytest.raises(CoordinatorError, match="ended the SQLite transaction"):
        async with coordinator.transaction() as tx:
            await tx.sql(INSERT, ("e@x.io",))
            await tx.sql_fn(lambda c: c.execute("COMMIT"))


async def test_a_back_to_back_inline_writer_lets_a_woken_task_run_before_its_next_slice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task woken while the writer works (a timer firing, a reply arriving) runs before the
    writer's next slice: a wake-up takes two loop turns (callback, then task), so the writer
    yields twice. A slice of 0 makes every write end a slice, so nothing here depends on time."""
    monkeypatch.setattr(writer_module, "INLINE_SLICE_S", 0.0)
    store = await _open(tmp_path)
    loop = asyncio.get_running_loop()
    try:
        woken: asyncio.Future[None] = loop.create_future()
        written = 0
        seen: list[int] = []

        async def woken_task() -> None:
            await woken
            seen.append(written)

        def insert(c: sqlite3.Connection, n: int) -> None:
            nonlocal written
            c.execute(INSERT, (f"w{n}@x.io",))
            written += 1

        async def writer() -> None:
            for n in range(5):
                if n == 1:  # becomes ready while the writer is busy, as a due timer would
                    loop.call_soon(woken.set_result, None)
                await store.write(lambda c, n=n: insert(c, n))

        waiter = asyncio.create_task(woken_task())
        await writer()
        await waiter
        assert seen == [2]  # after the write it was woken during, before the next one
        assert _writes(store)["writes_inline"] >= 5
    finally:
        await store.close()


async def test_an_inline_write_yields_to_the_loop_after_giving_the_lane_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Yielding with the writer lane held would make every queued writer wait through the loop
    turns too (seen as lower throughput of concurrent writes)."""
    store = await _open(tmp_path)
    free_at_yield: list[int] = []
    original = WriteEngine.yield_slice

    async def spy(self: WriteEngine) -> None:
        free_at_yield.append(self.pool.stats()["pool_available"])
        await original(self)

    monkeypatch.setattr(WriteEngine, "yield_slice", spy)
    monkeypatch.setattr(writer_module, "INLINE_SLICE_S", 0.0)
    try:
        await asyncio.gather(*(store.execute(INSERT, (f"y{n}@x.io",)) for n in range(3)))
        assert len(free_at_yield) == 3
        assert all(free == 1 for free in free_at_yield), free_at_yield
    finally:
        await store.close()
