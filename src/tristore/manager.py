"""PoolManager: the three stores' pools opened, watched, rebalanced and stressed together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from tristore.config import Settings
from tristore.errors import TristoreError
from tristore.pool import Pool
from tristore.stores import CacheStore, GraphStore, SQLiteStore, Store

log = logging.getLogger(__name__)


@dataclass
class Health:
    healthy: bool = True
    last_error: str = ""
    failures: int = 0
    recovered_at: float | None = None


@dataclass
class StressResult:
    pool: str
    ok: int = 0
    errors: int = 0
    error_types: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    peak_size: int = 0
    pool_max: int = 0

    @property
    def success_rate(self) -> float:
        total = self.ok + self.errors
        return self.ok / total if total else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return 0.0
        if len(self.latencies_ms) == 1:
            return self.latencies_ms[0]
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[int(q) - 1]

    def summary(self) -> dict[str, Any]:
        return {
            "pool": self.pool,
            "ok": self.ok,
            "errors": self.errors,
            "error_types": self.error_types,
            "success_rate": self.success_rate,
            "p50_ms": self.percentile(50),
            "p99_ms": self.percentile(99),
            "peak_size": self.peak_size,
            "pool_max": self.pool_max,
        }


class PoolManager:
    """Owns the SQLite, graph and Redis stores and their pools."""

    def __init__(
        self,
        settings: Settings,
        *,
        health_interval: float = 5.0,
        rebalance_interval: float = 30.0,
        max_backoff: float = 2.0,
    ) -> None:
        self.settings = settings
        self.sqlite = SQLiteStore(settings)
        self.graph = GraphStore(settings)
        self.cache = CacheStore(settings)
        self.health_interval = health_interval
        self.rebalance_interval = rebalance_interval
        self.max_backoff = max_backoff
        self.health: dict[str, Health] = {name: Health() for name in self.pools()}
        self._tasks: list[asyncio.Task[None]] = []
        self._opened: list[Store] = []

    def pools(self) -> dict[str, Pool[Any]]:
        return {
            "sqlite.writer": self.sqlite.writer,
            "sqlite.readers": self.sqlite.readers,
            "graph.writer": self.graph.writer,
            "graph.readers": self.graph.readers,
            "redis": self.cache.pool,
        }

    async def open(self, *, monitor: bool = True) -> None:
        try:
            stores: tuple[Store, ...] = (self.sqlite, self.graph, self.cache)
            for store in stores:
                await store.open()
                self._opened.append(store)
        except BaseException:
            await self.close()
            raise
        if monitor:
            self._tasks = [
                asyncio.create_task(self._every(self.health_interval, self.check), name="health"),
                asyncio.create_task(
                    self._every(self.rebalance_interval, self.rebalance), name="rebalance"
                ),
            ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for store in reversed(self._opened):
            await store.close()
        self._opened = []

    async def __aenter__(self) -> PoolManager:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _every(self, interval: float, job: Callable[[], Awaitable[Any]]) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await job()
            except Exception:  # a monitoring pass must never kill the monitor
                log.exception("pool manager: %s failed", getattr(job, "__name__", job))

    # -- health -----------------------------------------------------------------------------
    async def check(self) -> dict[str, Health]:
        """Check every pool; a failing one is reconnected in the background with backoff."""
        for name, pool in self.pools().items():
            health = self.health[name]
            if not health.healthy:
                continue  # its reconnect loop is already running
            result = await pool.check()
            if not result.get("ok", False):
                health.healthy = False
                health.failures += 1
                health.last_error = str(result.get("error") or "health check failed")
                log.warning("pool %s unhealthy: %s", name, health.last_error)
                self._tasks.append(asyncio.create_task(self._reconnect(name, pool)))
        return self.health

    async def _reconnect(self, name: str, pool: Pool[Any]) -> None:
        """Retry the pool's health check with exponential backoff until it passes."""

        async def attempt() -> None:
            result = await pool.check()
            if not result.get("ok", False):
                raise _Unhealthy(str(result.get("error")))

        async for attempt_ctx in AsyncRetrying(
            wait=wait_exponential(multiplier=0.05, max=self.max_backoff),
            retry=retry_if_exception_type((_Unhealthy, TristoreError, OSError)),
            reraise=True,
        ):
            with attempt_ctx:
                await attempt()
        health = self.health[name]
        health.healthy = True
        health.recovered_at = time.monotonic()
        log.info("pool %s recovered", name)

    # -- rebalancing ------------------------------------------------------------------------
    async def rebalance(self) -> dict[str, dict[str, int]]:
        """Shrink idle connections toward min; pre-grow pools whose requests are queueing."""
        report: dict[str, dict[str, int]] = {}
        for name, pool in self.pools().items():
            closed = await pool.shrink_idle()
            stats = pool.stats()
            grown = 0
            waiting = int(stats["requests_waiting"])
            if waiting:
                grown = await pool.grow(waiting)
            report[name] = {
                "closed_idle": closed,
                "grown": grown,
                "size": int(pool.stats()["pool_size"]),
                "waiting": waiting,
            }
        return report

    def stats(self) -> dict[str, dict[str, Any]]:
        return {name: pool.stats() for name, pool in self.pools().items()}

    # -- stress -----------------------------------------------------------------------------
    async def stress(
        self, concurrency: int = 100, ops_per_task: int = 10, timeout: float = 10.0
    ) -> dict[str, StressResult]:
        """``concurrency`` tasks at once on each store, each doing ``ops_per_task`` operations."""
        if concurrency < 1 or ops_per_task < 1:
            raise ValueError("concurrency and ops_per_task must be >= 1")
        ops: dict[str, tuple[Pool[Any], Callable[[], Awaitable[Any]]]] = {
            "sqlite.readers": (self.sqlite.readers, lambda: self.sqlite.fetchone("SELECT 1")),
            "graph.readers": (self.graph.readers, lambda: self.graph.query_rows("RETURN 1")),
            "redis": (self.cache.pool, lambda: self.cache.execute("PING")),
        }
        results = {
            name: StressResult(name, pool_max=pool.config.max_size)
            for name, (pool, _) in ops.items()
        }

        async def worker(name: str, pool: Pool[Any], op: Callable[[], Awaitable[Any]]) -> None:
            result = results[name]
            for _ in range(ops_per_task):
                started = time.perf_counter()
                try:
                    await asyncio.wait_for(op(), timeout)
                except (TristoreError, TimeoutError) as exc:
                    result.errors += 1
                    key = type(exc).__name__
                    result.error_types[key] = result.error_types.get(key, 0) + 1
                else:
                    result.ok += 1
                    result.latencies_ms.append((time.perf_counter() - started) * 1000)
                result.peak_size = max(result.peak_size, int(pool.stats()["pool_size"]))

        await asyncio.gather(
            *(
                worker(name, pool, op)
                for name, (pool, op) in ops.items()
                for _ in range(concurrency)
            )
        )
        return results


class _Unhealthy(Exception):
    pass
