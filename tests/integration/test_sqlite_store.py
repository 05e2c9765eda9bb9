from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from tristore.config import Settings
from tristore.errors import QueryError, StoreUnavailable, ValueTooLarge
from tristore.stores import SQLiteStore
from tristore.stores.sqlite import read_pragmas
from tristore.testing import store_settings


async def _customer(store: SQLiteStore, email: str = "ada@example.com") -> int:
    return await store.execute_insert(
        "INSERT INTO customers (email, name, country, tier, created_at)"
        " VALUES (?, 'Ada', 'GB', 'gold', '2026-11-01')",
        (email,),
    )


async def _product(store: SQLiteStore, price: float = 19.99) -> int:
    return await store.execute_insert(
        "INSERT INTO products (sku, name, category, price, stock)"
        " VALUES ('SKU-1', 'Lamp', 'home', ?, 5)",
        (price,),
    )


async def test_pragmas_applied_on_writer_and_every_reader(sqlite_store: SQLiteStore) -> None:
    eff = await sqlite_store.effective_settings()
    assert isinstance(eff.pop("wal_bytes"), int)  # the WAL file's size now (doctor shows it)
    assert eff == {
        "journal_mode": "WAL",
        "busy_timeout_ms": 30_000,
        "cache_size": 10_000,
        "writer_cache_size": 2_000,
        "synchronous": "NORMAL",
        "foreign_keys": True,
        # Inline writes: the writer connection itself never waits (SQLITE_BUSY goes to the
        # writer thread, which waits busy_timeout_ms), and checkpoints run in the background.
        "writer_busy_timeout_ms": 0,
        "wal_autocheckpoint": 0,
        "write_path": "inline",
        "inline_max_steps": 20_000,
        "checkpoint": "background PASSIVE past 4194304 WAL bytes",
    }

    async def reader_pragmas() -> dict:
        return await sqlite_store.read(read_pragmas)

    seen = await asyncio.gather(*(reader_pragmas() for _ in range(8)))
    assert all(p["busy_timeout_ms"] == 30_000 and p["synchronous"] == "NORMAL" for p in seen)
    assert all(p["cache_size"] == 10_000 for p in seen)


@pytest.mark.parametrize("inline_writes", [True, False])
async def test_writer_and_readers_each_get_their_own_cache_size(
    tmp_path: Path, inline_writes: bool
) -> None:
    # Negative: a size in KiB, passed to SQLite as is; distinct from the readers' page count.
    settings = store_settings(
        tmp_path,
        sqlite={
            "cache_size": 3_000,
            "writer_cache_size": -1024,
            "readers": 2,
            "inline_writes": inline_writes,
        },
    )

    def reader_cache(conn: sqlite3.Connection) -> tuple[int, int]:
        time.sleep(0.05)  # hold the reader so that concurrent reads open the pool's second one
        return id(conn), conn.execute("PRAGMA cache_size").fetchone()[0]

    async with SQLiteStore(settings) as store:
        on_writer = await store.write(lambda c: c.execute("PRAGMA cache_size").fetchone()[0])
        on_readers = dict(await asyncio.gather(*(store.read(reader_cache) for _ in range(4))))
        eff = await store.effective_settings()
    assert eff["write_path"] == ("inline" if inline_writes else "thread")
    assert on_writer == -1024
    assert len(on_readers) == 2  # both reader connections
    assert set(on_readers.values()) == {3_000}
    assert (eff["cache_size"], eff["writer_cache_size"]) == (3_000, -1024)


async def test_generated_columns_computed_by_sqlite(sqlite_store: SQLiteStore) -> None:
    cid, pid = await _customer(sqlite_store), await _product(sqlite_store)
    await sqlite_store.execute(
        "INSERT INTO orders"
        " (customer_id, product_id, price, quantity, discount, created_at, status)"
        " VALUES (?, ?, 19.99, 3, 0.15, '2026-11-02', 'placed')",
        (cid, pid),
    )
    row = await sqlite_store.fetchone(
        "SELECT total_price, discount_amount, final_price FROM orders WHERE customer_id = ?", (cid,)
    )
    assert row[0] == pytest.approx(59.97)
    assert row[1] == pytest.approx(9.0)  # round(59.97 * 0.15, 2) = 9.00
    assert row[2] == pytest.approx(50.97)


async def test_calculate_total_registered_on_readers_and_writer(sqlite_store: SQLiteStore) -> None:
    (on_reader,) = await sqlite_store.fetchone("SELECT calculate_total(10.0, 3, 0.1, 0.2)")
    assert on_reader == pytest.approx(32.4)
    on_writer = await sqlite_store.write(
        lambda c: c.execute("SELECT calculate_total(10.0, 3, 0.1, 0.2)").fetchone()[0]
    )
    assert on_writer == pytest.approx(32.4)


async def test_failed_write_rolls_back_everything(sqlite_store: SQLiteStore) -> None:
    def two_inserts(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO customers (email, name, country, tier, created_at)"
            " VALUES ('a@x.io', 'A', 'FR', 'standard', '2026-01-01')"
        )
        conn.execute(
            "INSERT INTO customers (email, name, country, tier, created_at)"
            " VALUES ('no-at-sign', 'B', 'FR', 'standard', '2026-01-01')"
        )

    with pytest.raises(QueryError, match="constraint"):
        await sqlite_store.write(two_inserts)
    assert await sqlite_store.fetchone("SELECT count(*) FROM customers") == (0,)
    # The writer lane is still usable after the failure.
    await _customer(sqlite_store)
    assert await sqlite_store.fetchone("SELECT count(*) FROM customers") == (1,)


async def test_foreign_keys_enforced(sqlite_store: SQLiteStore) -> None:
    with pytest.raises(QueryError, match="FOREIGN KEY"):
        await sqlite_store.execute(
            "INSERT INTO orders"
            " (customer_id, product_id, price, quantity, discount, created_at, status)"
            " VALUES (999, 999, 1.0, 1, 0, '2026-11-02', 'placed')"
        )


async def test_sql_error_and_wrong_typed_parameter_are_query_errors(
    sqlite_store: SQLiteStore,
) -> None:
    with pytest.raises(QueryError):
        await sqlite_store.fetchall("SELEC 1")
    with pytest.raises(QueryError, match="parameter"):
        await sqlite_store.execute("INSERT INTO customers (email) VALUES (?)", ({"a": 1},))
    with pytest.raises(QueryError):
        await sqlite_store.execute(
            "INSERT INTO products (sku, name, category, price, stock) VALUES ('S', 'n', 'c', ?, 1)",
            ("not a number",),
        )


async def test_oversized_value_refused_before_the_store(tristore_settings: Settings) -> None:
    settings = tristore_settings.replace(sqlite={"max_value_bytes": 1000})
    async with SQLiteStore(settings) as store:
        with pytest.raises(ValueTooLarge):
            await _customer(store, "x" * 2000 + "@example.com")
        assert await store.fetchone("SELECT count(*) FROM customers") == (0,)


async def test_readers_cannot_write(sqlite_store: SQLiteStore) -> None:
    with pytest.raises(QueryError, match="readonly|read-only|query_only|attempt to write"):
        await sqlite_store.fetchall("DELETE FROM customers")


async def test_concurrent_writers_are_serialized(sqlite_store: SQLiteStore) -> None:
    await asyncio.gather(*(_customer(sqlite_store, f"c{i}@example.com") for i in range(50)))
    assert await sqlite_store.fetchone("SELECT count(*) FROM customers") == (50,)


async def test_multi_await_transaction_commits_and_cancellation_rolls_back(
    sqlite_store: SQLiteStore,
) -> None:
    async with sqlite_store.transaction() as conn:
        await conn.aio.execute(
            "INSERT INTO customers (email, name, country, tier, created_at)"
            " VALUES ('t@x.io', 'T', 'DE', 'silver', '2026-01-01')"
        )
    started = asyncio.Event()

    async def cancelled_body() -> None:
        async with sqlite_store.transaction() as conn:
            await conn.aio.execute(
                "INSERT INTO customers (email, name, country, tier, created_at)"
                " VALUES ('u@x.io', 'U', 'DE', 'silver', '2026-01-01')"
            )
            started.set()
            await asyncio.sleep(10)

    task = asyncio.create_task(cancelled_body())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    rows = await sqlite_store.fetchall("SELECT email FROM customers ORDER BY email")
    assert rows == [("t@x.io",)]
    await _customer(sqlite_store)  # the lane is free again


async def test_corrupt_file_is_a_typed_error(tmp_path: Path) -> None:
    settings = store_settings(tmp_path)
    settings.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    settings.sqlite_path.write_bytes(b"this is not a database" * 100)
    store = SQLiteStore(settings)
    with pytest.raises(StoreUnavailable, match="corrupt"):
        await store.open()
    assert store.writer.stats()["pool_size"] == 0


async def test_checkpoint_and_stats(sqlite_store: SQLiteStore) -> None:
    await _customer(sqlite_store)
    busy, log, checkpointed = await sqlite_store.checkpoint("TRUNCATE")
    assert busy == 0 and log == checkpointed
    stats = sqlite_store.stats()
    assert stats["writer"]["pool_max"] == 1
    assert stats["readers"]["requests_num"] >= 0
    with pytest.raises(QueryError):
        await sqlite_store.checkpoint("NOW; DROP TABLE x")
