"""In-process A/B of the coordinator's group apply: ``graph_batch_size=1`` (off) against 32 (on).

Two sets of stores in one process share one redis-server; 8 alternating runs of 25 concurrent
clients x 8 orders each (two SQL rows, two graph ops, two cache ops per order), so a machine
state that slows one run slows its neighbour too. Run from the repository root:
    PYTHONPATH=src .venv/bin/python tools/bench/measurements/group_apply_ab.py
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import tempfile
import time
from typing import Any

from tristore.config import Settings
from tristore.coordinator import Coordinator
from tristore.services import RedisServer
from tristore.stores import CacheStore, GraphStore, SQLiteStore

CUSTOMER = "INSERT INTO customers (email, name, country) VALUES (?, ?, 'GB') RETURNING id"
ORDER = (
    "INSERT INTO orders (customer_id, product_id, price, quantity) VALUES (?, ?, 9.5, 2)"
    " RETURNING id"
)
NODE = "CREATE (:Customer {id: $id, name: $name, tier: 'standard'})"
EDGE = (
    "MATCH (c:Customer {id: $cid}), (p:Product {id: $pid})"
    " CREATE (c)-[:PURCHASED {order_id: $oid, quantity: 2}]->(p)"
)
counter = itertools.count(1)


async def open_side(server: RedisServer, **options: Any) -> tuple[Coordinator, list[Any]]:
    settings = Settings(data_dir=tempfile.mkdtemp()).replace(
        redis={"url": str(server.url), "pool_min": 1, "pool_max": 30}
    )
    stores: list[Any] = [SQLiteStore(settings), GraphStore(settings), CacheStore(settings)]
    for store in stores:
        await store.open()
    sqlite, graph, cache = stores
    await sqlite.executemany(
        "INSERT INTO products (id, sku, name, category, price, stock)"
        " VALUES (?, ?, 'p', 'b', 9.5, 100)",
        [(i, f"S{i}") for i in range(1, 6)],
    )
    await graph.write(
        [
            ("CREATE (:Product {id: $id, name: 'p', category: 'b', price: 9.5})", {"id": i})
            for i in range(1, 6)
        ]
    )
    coord = Coordinator(sqlite, graph, cache, recovery_interval=None, **options)
    await coord.open()
    return coord, stores


async def order(coord: Coordinator, latencies: list[float]) -> None:
    n = next(counter)
    started = time.perf_counter()

    def rows(c: Any) -> tuple[int, int]:
        cid = c.execute(CUSTOMER, (f"x{n}@e", f"c{n}")).fetchone()[0]
        return cid, c.execute(ORDER, (cid, 1 + n % 5)).fetchone()[0]

    async with coord.transaction() as tx:
        cid, oid = await tx.sql_fn(rows)
        tx.graph(NODE, {"id": cid, "name": f"c{n}"})
        tx.graph(EDGE, {"cid": cid, "pid": 1 + n % 5, "oid": oid})
        tx.cache("HSET", f"order:{oid}", "customer", cid)
        tx.cache("INCRBY", "stats:orders", 1)
    latencies.append(time.perf_counter() - started)


async def run(coord: Coordinator, clients: int = 25, each: int = 8) -> tuple[float, float]:
    """(transactions per second, p99 latency in ms)."""
    latencies: list[float] = []

    async def client() -> None:
        for _ in range(each):
            await order(coord, latencies)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return clients * each / elapsed, latencies[int(len(latencies) * 0.99)] * 1000


async def main() -> None:
    server = RedisServer()
    server.start()
    off, off_stores = await open_side(server, graph_batch_size=1)
    on, on_stores = await open_side(server)
    for coord in (off, on):
        await run(coord, 5, 4)  # warm-up
    results: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
    for i in range(8):
        sides = [("off", off), ("on", on)]
        for name, coord in sides if i % 2 == 0 else reversed(sides):
            results[name].append(await run(coord))
    for name, values in results.items():
        tps = statistics.median(v[0] for v in values)
        p99 = statistics.median(v[1] for v in values)
        print(f"{name:3s} tx/s median {tps:6.0f}  p99 median {p99:6.1f} ms")
    ratios = [a[0] / b[0] for a, b in zip(results["on"], results["off"], strict=True)]
    print("throughput on/off per pair:", " ".join(f"{r:.2f}" for r in ratios))
    print(f"median {statistics.median(ratios):.2f}")
    stats = on.stats(), off.stats()
    print(
        f"batches: {stats[0]['graph_batches']} committed: {stats[0]['committed']} "
        f"cache trips: {stats[0]['cache_round_trips']} vs off {stats[1]['cache_round_trips']}"
    )
    for coord, stores in ((off, off_stores), (on, on_stores)):
        await coord.close()
        for store in reversed(stores):
            await store.close()
    server.stop()


if __name__ == "__main__":
    asyncio.run(main())
