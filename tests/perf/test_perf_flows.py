"""Cross-store paths: one coordinated transaction, and one order through the production flow.

Both need APIs newer than the stores (tristore.coordinator, tristore.flows): on a base revision
without them these benchmarks are skipped, and the gate reports them as new.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _perf import measure, require

pytestmark = pytest.mark.perf


@pytest.fixture(scope="module")
def coordinator(
    loop: asyncio.AbstractEventLoop, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    coordination = require("tristore.coordinator", "Coordinator")
    stores = require("tristore.stores", "SQLiteStore", "GraphStore", "CacheStore")
    setup = require("tristore.testing.setup", "store_settings")
    settings = setup.store_settings(tmp_path_factory.mktemp("coordinated"), redis_url)
    opened = [
        stores.SQLiteStore(settings),
        stores.GraphStore(settings),
        stores.CacheStore(settings),
    ]
    for store in opened:
        loop.run_until_complete(store.open())
    loop.run_until_complete(
        opened[0].execute("CREATE TABLE perf (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    )
    coordinator = coordination.Coordinator(*opened)
    loop.run_until_complete(coordinator.open())
    yield coordinator
    loop.run_until_complete(coordinator.close())
    for store in reversed(opened):
        loop.run_until_complete(store.close())


def test_coordinated_tx(
    benchmark: Any,
    request: pytest.FixtureRequest,
    loop: asyncio.AbstractEventLoop,
    coordinator: Any,
) -> None:
    """One transaction over the three stores: a SQLite row, a graph MERGE, a cache SET."""
    ids = itertools.cycle(range(1, 101))

    async def transaction() -> None:
        customer = next(ids)
        async with coordinator.transaction() as tx:
            await tx.sql("INSERT INTO perf (v) VALUES (?)", ("x",))
            tx.graph(
                "MERGE (c:Customer {id: $id}) SET c.name = $name",
                {"id": customer, "name": "perf"},
            )
            tx.cache("SET", f"perf:customer:{customer}", "x")

    measure(benchmark, request, loop, transaction, ops=2, rounds=150)


@pytest.fixture(scope="module")
def flow(
    loop: asyncio.AbstractEventLoop, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    flows = require("tristore.flows", "open_env", "OrderPipeline")
    env_cm = flows.open_env(size="small", seed=7, data_dir=Path(tmp_path_factory.mktemp("flow")))
    env = loop.run_until_complete(env_cm.__aenter__())
    yield env
    loop.run_until_complete(env_cm.__aexit__(None, None, None))


def test_order_flow(
    benchmark: Any, request: pytest.FixtureRequest, loop: asyncio.AbstractEventLoop, flow: Any
) -> None:
    """One order placed: SQLite transaction, graph update, analytics cache, change events."""
    rows = loop.run_until_complete(
        flow.manager.sqlite.fetchall("SELECT id FROM customers ORDER BY id LIMIT 20")
    )
    products = loop.run_until_complete(
        flow.manager.sqlite.fetchall("SELECT id FROM products ORDER BY id LIMIT 20")
    )
    pairs = itertools.cycle(
        [(c[0], p[0]) for c, p in zip(rows, products, strict=False)] or [(1, 1)]
    )

    async def order() -> None:
        customer, product = next(pairs)
        await flow.pipeline.place_order(customer, product, 1)

    measure(benchmark, request, loop, order, ops=1, rounds=200)
