"""Coordinated transactions: commit, rollback, recovery, and the same writes uncoordinated.

One "order" is the unit throughout: a customer and an order row in SQLite, the customer's node and
a ``PURCHASED`` edge in the graph, the order's hash and a counter in Redis. The coordinated version
runs it as one :class:`~tristore.coordinator.Coordinator` transaction (one SQLite hop for the rows,
intent, graph ops validated in a Kuzu transaction before the SQLite commit, one Lua script); the
uncoordinated baseline does the same writes through the three stores directly, one call each,
with no atomicity across them. The difference is the price of the guarantees.

Targets (the specification's): coordinated <= 1.10 x uncoordinated (``track_overhead_ratio``,
measured A/B in one process so machine noise cancels), p99 <= 5 ms with 25 concurrent
transactions (``track_p99_ms_25_concurrent``).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from .common import AsyncBench, registry, require, settings_in

ORDERS = 20  # transactions per timed call
CONCURRENCY = 25
PER_CLIENT = 16  # transactions per client in the concurrent run (400 in all)
# track_concurrency_ratio: interleaved rounds of a short concurrent run (25 clients x 8) and a
# sequential run of about the same duration; the median over rounds of their time-per-order ratio.
RATIO_ROUNDS = 21
RATIO_PER_CLIENT = 8
RATIO_SEQUENTIAL = 50

_server: Any = None


def _redis_url() -> str:
    """One throwaway redis-server per benchmark process (setup runs before every sample)."""
    global _server
    if _server is None:
        services = require("tristore.services", "RedisServer")
        _server = services.RedisServer()
        _server.start()
    return str(_server.url)


# The unit of work is the registry's coordinated order (tristore_bench.workloads), the one the
# instruction counts and the PR gate run: its rows, graph ops and cache ops, defined once.
_ORDER = registry()
PRODUCTS = _ORDER.PRODUCTS
CUSTOMER_NODE = _ORDER.CUSTOMER_NODE
PURCHASE_EDGE = _ORDER.PURCHASE_EDGE
_insert_rows = _ORDER.insert_order_rows


class _Stores(AsyncBench):
    """Opens the three stores and a coordinator in ``tmpdir``, with a few products."""

    def open_stores(self) -> None:
        stores = require("tristore.stores", "SQLiteStore", "GraphStore", "CacheStore")
        self.coordinator_module = require(
            "tristore.coordinator", "Coordinator", "validate_consistency"
        )
        self.setup_loop()
        settings = settings_in(
            self.tmpdir, redis={"url": _redis_url(), "pool_min": 1, "pool_max": 30}
        )
        self.sqlite = stores.SQLiteStore(settings)
        self.graph = stores.GraphStore(settings)
        self.cache = stores.CacheStore(settings)
        for store in (self.sqlite, self.graph, self.cache):
            self.run(store.open())
        self.run(self.cache.execute("FLUSHDB"))
        self.run(_ORDER.seed_products(self.sqlite, self.graph))
        self.coord: Any = None
        self.n = 0

    def open_coordinator(self) -> Any:
        coord = self.coordinator_module.Coordinator(
            self.sqlite, self.graph, self.cache, recovery_interval=None
        )
        self.run(coord.open())
        return coord

    def close_stores(self) -> None:
        if getattr(self, "coord", None) is not None:
            self.run(self.coord.close())
        for name in ("cache", "graph", "sqlite"):
            store = getattr(self, name, None)
            if store is not None:
                self.run(store.close())
        self.teardown_loop()

    # -- the unit of work, both ways --------------------------------------------------------
    async def coordinated(self) -> None:
        self.n += 1
        await _ORDER.coordinated_order(self.coord, self.n)

    async def uncoordinated(self) -> None:
        self.n += 1
        n = self.n
        cid, oid = await self.sqlite.write(lambda c: _insert_rows(c, n))
        await self.graph.write(_ORDER.order_graph_ops(n, cid, oid))
        await self.cache.pipeline(_ORDER.order_cache_ops(cid, oid))

    async def rolled_back(self) -> None:
        self.n += 1
        n = self.n
        try:
            async with self.coord.transaction() as tx:
                cid, _ = await tx.sql_fn(lambda c: _insert_rows(c, n))
                tx.graph(CUSTOMER_NODE, {"id": cid, "name": f"c{n}"})
                tx.cache("INCRBY", "stats:orders", 1)
                raise _Abort
        except _Abort:
            pass

    async def sequence(self, op: Any, count: int) -> float:
        started = time.perf_counter()
        for _ in range(count):
            await op()
        return time.perf_counter() - started


class _Abort(Exception):
    pass


class CoordinatedWrites(_Stores):
    def setup(self) -> None:
        self.open_stores()
        self.coord = self.open_coordinator()
        self.batch(3, self.coordinated)  # warm: prepared statements, script loaded
        self.batch(3, self.uncoordinated)

    def teardown(self) -> None:
        self.close_stores()

    def time_coordinated_commit_x20(self) -> None:
        """20 coordinated orders, one after another."""
        self.batch(ORDERS, self.coordinated)

    def time_uncoordinated_x20(self) -> None:
        """The same 20 orders written to the three stores directly (the baseline)."""
        self.batch(ORDERS, self.uncoordinated)

    def time_rollback_x20(self) -> None:
        """20 transactions that insert rows, stage graph and cache work, then raise."""
        self.batch(ORDERS, self.rolled_back)

    def track_overhead_ratio(self) -> float:
        """Coordinated / uncoordinated time for the same orders, interleaved A/B in-process."""
        coordinated, plain = [], []
        for _ in range(5):
            coordinated.append(self.run(self.sequence(self.coordinated, ORDERS)))
            plain.append(self.run(self.sequence(self.uncoordinated, ORDERS)))
        return statistics.median(coordinated) / statistics.median(plain)

    track_overhead_ratio.unit = "ratio"  # type: ignore[attr-defined]

    def track_p99_ms_25_concurrent(self) -> float:
        """p99 latency of coordinated orders with 25 clients committing at once."""
        return _p99_ms(self.run(_concurrent(self.coordinated))[0])

    track_p99_ms_25_concurrent.unit = "ms"  # type: ignore[attr-defined]

    def track_p99_ms_25_concurrent_uncoordinated(self) -> float:
        """The same 25-client run with uncoordinated writes, for comparison."""
        return _p99_ms(self.run(_concurrent(self.uncoordinated))[0])

    track_p99_ms_25_concurrent_uncoordinated.unit = "ms"  # type: ignore[attr-defined]

    def track_throughput_25_concurrent(self) -> float:
        """Coordinated orders per second with 25 clients committing at once (400 orders)."""
        latencies, seconds = self.run(_concurrent(self.coordinated))
        return len(latencies) / seconds

    track_throughput_25_concurrent.unit = "orders/s"  # type: ignore[attr-defined]

    def track_concurrency_ratio(self) -> float:
        """Time per order with 25 clients committing at once over time per order one at a time.

        The gated concurrency series, the inverse of the orders/s that concurrency buys, so that
        a loss is an increase (asv flags increases only). Both runs are the same coordinated
        order in the same process, in adjacent, alternating batches, so the machine's state
        cancels as in ``ratios.py``; what is left is what concurrency buys: batching the graph
        and cache work of many transactions and keeping the SQLite lane free while they are
        applied. A longer lane hold or a lost batch raises it; a change in the cost of one order
        moves both sides.
        """
        ratios = []
        for i in range(RATIO_ROUNDS):
            if i % 2 == 0:
                concurrent = self._concurrent_rate()
                sequential = self._sequential_rate()
            else:
                sequential = self._sequential_rate()
                concurrent = self._concurrent_rate()
            ratios.append(sequential / concurrent)
        return statistics.median(ratios)

    track_concurrency_ratio.unit = "ratio"  # type: ignore[attr-defined]

    def _concurrent_rate(self) -> float:
        latencies, seconds = self.run(_concurrent(self.coordinated, RATIO_PER_CLIENT))
        return len(latencies) / seconds

    def _sequential_rate(self) -> float:
        return RATIO_SEQUENTIAL / self.run(self.sequence(self.coordinated, RATIO_SEQUENTIAL))


async def _concurrent(op: Any, per_client: int = PER_CLIENT) -> tuple[list[float], float]:
    """CONCURRENCY clients, ``per_client`` ops each: every op's latency (ms), the wall time (s)."""
    latencies: list[float] = []

    async def client() -> None:
        for _ in range(per_client):
            started = time.perf_counter()
            await op()
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CONCURRENCY)))
    return latencies, time.perf_counter() - started


def _p99_ms(latencies: list[float]) -> float:
    return statistics.quantiles(latencies, n=100, method="inclusive")[98]


class CoordinatedRecovery(_Stores):
    """Start-up recovery of N intents left pending by a crash right after their SQLite commit."""

    params = [[10, 100]]
    param_names = ["pending"]
    number = 1  # each sample needs fresh pending intents (setup runs before every sample)
    warmup_time = 0.0

    def setup(self, pending: int) -> None:
        log = require("tristore.coordinator.log", "Intent", "insert")
        self.open_stores()
        self.run(self.open_coordinator().close())  # creates the log and the marker table

        def crash_after_commits(conn: Any) -> None:
            for _ in range(pending):
                self.n += 1
                cid, oid = _insert_rows(conn, self.n)
                intent = log.Intent(
                    f"bench-{self.n:08d}",
                    [
                        (CUSTOMER_NODE, {"id": cid, "name": f"c{self.n}"}),
                        (PURCHASE_EDGE, {"cid": cid, "pid": 1 + self.n % PRODUCTS, "oid": oid}),
                    ],
                    [
                        ["HSET", f"order:{oid}", "customer", str(cid)],
                        ["INCRBY", "stats:orders", "1"],
                    ],
                )
                log.insert(conn, intent)

        self.run(self.sqlite.write(crash_after_commits))

    def teardown(self, pending: int) -> None:
        self.close_stores()

    def time_recover(self, pending: int) -> None:
        """Open a coordinator: its start-up recovery applies every pending intent."""
        self.coord = self.open_coordinator()
