"""Probe finding: value limits count UTF-8 bytes, through nested values, on every path.

``"€" * (8 MiB - 1)`` stored 25 MB against an 8 MiB limit (characters were counted), read
parameters were not checked at all, and a string inside a list got through. Here each store's
limit is 1000 bytes, so the same code runs on real stores without allocating megabytes.
"""

from __future__ import annotations

from typing import Any

import pytest

from tristore.config import MiB
from tristore.errors import ValueTooLarge
from tristore.stores import CacheStore, GraphStore, SQLiteStore

LIMIT = 1000
EURO_OVER = "€" * 334  # 334 characters, 1002 UTF-8 bytes
EURO_FITS = "€" * 333  # 999 bytes
ASCII_OVER = "x" * (LIMIT + 1)
CUSTOMER = "INSERT INTO customers (email, name, country, tier) VALUES (?, ?, 'GB', 'silver')"


@pytest.fixture
def tristore_overrides() -> dict[str, Any]:
    return {
        "sqlite": {"readers": 2, "max_value_bytes": LIMIT},
        "graph": {"buffer_pool_bytes": 64 * MiB, "max_value_bytes": LIMIT},
        "redis": {"max_value_bytes": LIMIT},
    }


async def test_redis_counts_utf8_bytes(redis_store: CacheStore) -> None:
    with pytest.raises(ValueTooLarge, match="at least 1002 bytes exceeds the limit of 1000"):
        await redis_store.set("k", EURO_OVER)
    for call in (
        redis_store.execute("SET", "k", EURO_OVER),
        redis_store.pipeline([("SET", "k", EURO_OVER)]),
        redis_store.publish("ch", EURO_OVER),
        redis_store.get(ASCII_OVER),  # a read: its key is a value sent to the server too
    ):
        with pytest.raises(ValueTooLarge):
            await call
    assert await redis_store.get("k") is None
    assert await redis_store.set("k", EURO_FITS)
    assert (await redis_store.get("k")).decode() == EURO_FITS


async def test_sqlite_counts_utf8_bytes_on_writes_and_reads(sqlite_store: SQLiteStore) -> None:
    with pytest.raises(ValueTooLarge, match="parameter 2: a value of at least 1002 bytes"):
        await sqlite_store.execute(CUSTOMER, ("a@example.com", EURO_OVER))
    for call in (
        sqlite_store.fetchall("SELECT length(?)", (ASCII_OVER,)),
        sqlite_store.fetchone("SELECT length(?)", (EURO_OVER,)),
        sqlite_store.fetchall("SELECT length(:v)", {"v": EURO_OVER}),
    ):
        with pytest.raises(ValueTooLarge):
            await call
    assert await sqlite_store.fetchall("SELECT count(*) FROM customers") == [(0,)]
    await sqlite_store.execute(CUSTOMER, ("a@example.com", EURO_FITS))
    assert await sqlite_store.fetchone("SELECT length(CAST(? AS BLOB))", (EURO_FITS,)) == (999,)


async def test_graph_counts_bytes_through_nested_values_on_reads(graph_store: GraphStore) -> None:
    nested = [
        {"s": EURO_OVER},
        {"xs": ["short", ASCII_OVER]},
        {"m": {"inner": [EURO_FITS, "two"]}},  # 999 + 3 bytes + the key
    ]
    for params in nested:
        for call in (graph_store.query, graph_store.query_rows):
            with pytest.raises(ValueTooLarge):
                await call("RETURN 1 AS one", params)
    with pytest.raises(ValueTooLarge, match="parameter 'name'"):
        await graph_store.execute(
            "CREATE (:Customer {id: 1, name: $name, tier: 'silver'})", {"name": EURO_OVER}
        )
    assert await graph_store.query("MATCH (c:Customer) RETURN count(c) AS n") == [{"n": 0}]
    rows = await graph_store.query("RETURN size($xs) AS n", {"xs": ["a", EURO_FITS[:300]]})
    assert rows == [{"n": 2}]


async def test_coordinated_transaction_counts_bytes_and_nesting(coordinator: Any) -> None:
    with pytest.raises(ValueTooLarge):
        async with coordinator.transaction() as tx:
            await tx.sql(CUSTOMER, ("a@example.com", EURO_OVER))
    with pytest.raises(ValueTooLarge):
        async with coordinator.transaction() as tx:
            tx.graph("RETURN $xs AS xs", {"xs": [ASCII_OVER]})
    with pytest.raises(ValueTooLarge):
        async with coordinator.transaction() as tx:
            tx.cache("SET", "k", EURO_OVER)
    assert tx.state == "rolled_back"


async def test_the_probes_figure_8_mib_of_euro_signs(tristore_settings: Any) -> None:
    settings = tristore_settings.replace(redis={"max_value_bytes": 8 * MiB})
    async with CacheStore(settings) as cache:
        with pytest.raises(ValueTooLarge, match=f"at least {3 * (8 * MiB - 1)} bytes"):
            await cache.set("big", "€" * (8 * MiB - 1))
        assert await cache.get("big") is None
