"""The pool contract: checkout + return for each store, uncontended and contended.

``PoolFloor`` times a bare ``asyncio.Queue`` pool the same way: the cost a pool cannot go below.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from .common import AsyncBench, require, settings_in, workload

CHECKOUTS = 1000  # checkouts per timed call (uncontended)
CONTENDED_OPS = 20  # checkouts per task (contended)


class _QueuePool:
    """The floor: a bare ``asyncio.Queue`` pool with the same ``async with acquire()`` shape."""

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[object] = asyncio.Queue()
        for _ in range(size):
            self.queue.put_nowait(object())

    def acquire(self) -> _QueueCheckout:
        return _QueueCheckout(self.queue)


class _QueueCheckout:
    __slots__ = ("conn", "queue")

    def __init__(self, queue: asyncio.Queue[object]) -> None:
        self.queue = queue

    async def __aenter__(self) -> object:
        self.conn = await self.queue.get()
        return self.conn

    async def __aexit__(self, *exc: object) -> None:
        self.queue.put_nowait(self.conn)


class PoolFloor(AsyncBench):
    def setup(self) -> None:
        self.setup_loop()
        self.pool = _QueuePool(10)

    def teardown(self) -> None:
        self.teardown_loop()

    def time_queue_pool_x1000(self) -> None:
        async def many() -> None:
            pool = self.pool
            for _ in range(CHECKOUTS):
                async with pool.acquire():
                    pass

        self.run(many())


class PoolCheckout(AsyncBench):
    """tristore's pool with stats on, over connections that cost nothing: the registry's
    ``pool_checkout`` (tristore_bench.workloads), as counted and gated."""

    # The version of the series measured before the workload moved to the registry (asv's hash
    # of this benchmark's source then): the operation is the same, so its history continues.
    version = "97707016ad70ae438dae14ee102d8fe0b04be188a5a845d7a52476defead197e"

    def setup(self) -> None:
        workloads = workload("pool_checkout")
        self.setup_loop()
        self.stack = contextlib.AsyncExitStack()
        ctx = workloads.Context(self.tmpdir)
        self.op: Any = self.run(
            self.stack.enter_async_context(workloads.open_workload("pool_checkout", ctx))
        )

    def teardown(self) -> None:
        self.close_opened("stack", "aclose")
        self.teardown_loop()

    def time_acquire_release_x1000(self) -> None:
        self.batch(CHECKOUTS, self.op)


class StorePoolContended(AsyncBench):
    """``concurrency`` tasks each checking out ``CONTENDED_OPS`` times from a real store's pool."""

    params = [["sqlite", "graph", "redis"], [5, 20], [100]]
    param_names = ["store", "pool_max", "concurrency"]

    def setup(self, store: str, pool_max: int, concurrency: int) -> None:
        stores = require("tristore.stores", "SQLiteStore", "GraphStore", "CacheStore")
        pool_mod = require("tristore.pool", "PoolConfig")
        self.setup_loop()
        config = pool_mod.PoolConfig(min_size=min(5, pool_max), max_size=pool_max)
        settings = settings_in(self.tmpdir, redis={"pool_min": 1, "pool_max": pool_max})
        if store == "sqlite":
            self.store: Any = stores.SQLiteStore(settings, reader_pool=config)
            self.pool = self.store.readers
        elif store == "graph":
            self.store = stores.GraphStore(settings, reader_pool=config)
            self.pool = self.store.readers
        else:
            self.store = stores.CacheStore(settings)
            self.pool = self.store.pool
        self.run(self.store.open())

    def teardown(self, store: str, pool_max: int, concurrency: int) -> None:
        self.close_opened("store")
        self.teardown_loop()

    def time_checkout_return(self, store: str, pool_max: int, concurrency: int) -> None:
        async def task() -> None:
            for _ in range(CONTENDED_OPS):
                async with self.pool.acquire():
                    await asyncio.sleep(0)

        async def all_tasks() -> None:
            await asyncio.gather(*(task() for _ in range(concurrency)))

        self.run(all_tasks())

    def track_pool_size_after_load(self, store: str, pool_max: int, concurrency: int) -> int:
        """Pool size after one contended round: scaling under load, never above max."""
        self.time_checkout_return(store, pool_max, concurrency)
        return int(self.pool.stats()["pool_size"])

    track_pool_size_after_load.unit = "connections"  # type: ignore[attr-defined]
