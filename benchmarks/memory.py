"""Memory: peak RSS of opening the stores and of running flows, Redis ``used_memory`` after a
run of orders, and RSS per connection for each store's pool.

RSS per connection is the RSS delta of opening N connections in a pool, divided by N
(:meth:`tristore.monitor.Monitor.measure_rss_per_connection`); the specification's lax figures are
10 MB (Kuzu), 2 MB (Redis) and 5 MB (SQLite) per connection.
"""

from __future__ import annotations

import contextlib
from typing import Any

from .common import AsyncBench, require, settings_in

ORDERS = 300  # orders placed before Redis used_memory is read
CONNECTIONS = 16  # connections opened per RSS-per-connection sample

_server: Any = None


def _redis_url() -> str:
    global _server
    if _server is None:
        services = require("tristore.services", "RedisServer")
        _server = services.RedisServer()
        _server.start()
    return str(_server.url)


class PeakMemory(AsyncBench):
    """Peak RSS of the benchmark process (asv ``peakmem_``) while stores open and flows run."""

    def setup(self) -> None:
        self.flows = require("tristore.flows", "open_env", "database_stress_test")
        self.setup_loop()
        self.settings = settings_in(self.tmpdir, redis={"url": _redis_url()})

    def teardown(self) -> None:
        self.teardown_loop()

    async def _in_env(self, body: Any) -> None:
        async with self.flows.open_env(
            self.settings, size="small", seed=7, data_dir=self.tmpdir, embedded_redis=False
        ) as env:
            await env.manager.cache.execute("FLUSHDB")
            await body(env)

    def peakmem_open_stores_and_coordinator(self) -> None:
        """The three stores (default pools) and a coordinator, opened and closed."""

        async def nothing(env: Any) -> None:
            return None

        self.run(self._in_env(nothing))

    def peakmem_place_orders_x300(self) -> None:
        """300 coordinated orders (analytics cache, events, graph edges)."""

        async def orders(env: Any) -> None:
            for n in range(ORDERS):
                await env.pipeline.place_order(1 + n % 200, 1 + (n * 7) % 100, 1)

        self.run(self._in_env(orders))

    def peakmem_stress_50_users_2s(self) -> None:
        """The 50-user stress mix for 2 seconds."""

        async def stress(env: Any) -> None:
            await self.flows.database_stress_test(env.pipeline, duration=2.0)

        self.run(self._in_env(stress))


class RedisMemory(AsyncBench):
    """Redis INFO ``used_memory`` after 300 orders (analytics hashes, events, generations)."""

    number = 1
    repeat = (1, 3, 30.0)

    def setup(self) -> None:
        flows = require("tristore.flows", "open_env")
        self.setup_loop()
        settings = settings_in(self.tmpdir, redis={"url": _redis_url()})
        self.stack = contextlib.AsyncExitStack()
        self.env: Any = self.run(
            self.stack.enter_async_context(
                flows.open_env(
                    settings, size="small", seed=7, data_dir=self.tmpdir, embedded_redis=False
                )
            )
        )
        self.run(self.env.manager.cache.execute("FLUSHDB"))

    def teardown(self) -> None:
        self.close_opened("stack", "aclose")
        self.teardown_loop()

    async def _used_memory(self) -> int:
        info = await self.env.manager.cache.execute("INFO", "memory")
        return int(info["used_memory"])

    def track_redis_used_memory_after_300_orders(self) -> int:
        async def measure() -> int:
            for n in range(ORDERS):
                await self.env.pipeline.place_order(1 + n % 200, 1 + (n * 7) % 100, 1)
            return await self._used_memory()

        return self.run(measure())

    track_redis_used_memory_after_300_orders.unit = "bytes"  # type: ignore[attr-defined]

    async def _key_bytes(self) -> int:
        """Sum of ``MEMORY USAGE`` over every key: the data's own footprint, exact and stable.

        ``used_memory`` deltas also carry client buffers and allocator slack, which on 300 orders
        swamp the data (earlier versions of this benchmark read -33 bytes per order).
        """
        cache = self.env.manager.cache
        total, cursor = 0, b"0"
        while True:
            cursor, keys = await cache.execute("SCAN", cursor, "COUNT", 1000)
            for key in keys:
                total += int(await cache.execute("MEMORY", "USAGE", key, "SAMPLES", 0) or 0)
            if cursor in (0, b"0", "0"):
                return total

    def track_redis_key_bytes_per_order(self) -> float:
        """Growth of the keys' ``MEMORY USAGE`` per order: what the stream, hashes and counters
        cost in Redis."""

        async def measure() -> float:
            before = await self._key_bytes()
            for n in range(ORDERS):
                await self.env.pipeline.place_order(1 + n % 200, 1 + (n * 7) % 100, 1)
            return (await self._key_bytes() - before) / ORDERS

        return self.run(measure())

    track_redis_key_bytes_per_order.unit = "bytes"  # type: ignore[attr-defined]


class RssPerConnection(AsyncBench):
    """RSS delta of opening 16 connections in one store's pool, divided by 16."""

    params = [["sqlite", "graph", "redis"]]
    param_names = ["store"]
    number = 1
    repeat = (1, 5, 30.0)

    def setup(self, store: str) -> None:
        stores = require("tristore.stores", "SQLiteStore", "GraphStore", "CacheStore")
        self.monitor_module = require("tristore.monitor", "Monitor")
        pool = require("tristore.pool", "PoolConfig")
        self.setup_loop()
        empty = pool.PoolConfig(min_size=0, max_size=CONNECTIONS)
        settings = settings_in(
            self.tmpdir, redis={"url": _redis_url(), "pool_min": 0, "pool_max": CONNECTIONS}
        )
        if store == "sqlite":
            self.store: Any = stores.SQLiteStore(settings, reader_pool=empty)
            self.pool = self.store.readers
        elif store == "graph":
            self.store = stores.GraphStore(settings, reader_pool=empty)
            self.pool = self.store.readers
        else:
            self.store = stores.CacheStore(settings)
            self.pool = self.store.pool
        self.run(self.store.open())
        # Open and close once first: the first connection pays for one-off allocations
        # (thread pools, the driver's caches) that are not per connection.
        self.run(self.monitor_module.Monitor().measure_rss_per_connection(store, self.pool, 2))

    def teardown(self, store: str) -> None:
        self.close_opened("store")
        self.teardown_loop()

    def track_rss_per_connection(self, store: str) -> float:
        monitor = self.monitor_module.Monitor()
        result = self.run(monitor.measure_rss_per_connection(store, self.pool, CONNECTIONS))
        return float(result["rss_per_connection_bytes"])

    track_rss_per_connection.unit = "bytes"  # type: ignore[attr-defined]
