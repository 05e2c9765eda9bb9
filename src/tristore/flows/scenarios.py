"""The specification's load scenarios, each a function with duration and rate parameters.

===========================  =======================================  ========  ==============
scenario                     shape                                    duration  spec target
===========================  =======================================  ========  ==============
database_stress_test         50 concurrent users x 20 ops per session 300 s     success >= 95 %
cross_database_coordination  25 concurrent coordinated transactions   180 s     success >= 99 %
cache_synchronization        100 cache ops/s + 50 db updates/s        240 s     sync <= 100 ms
===========================  =======================================  ========  ==============

Each returns a :class:`ScenarioReport`: throughput, p50/p99/max latency, errors, RSS growth, and
for cache_synchronization the cache-sync lag p50/p99 in ms. Every loop is bounded by the duration
(and the paced ones by their rate); work still in flight at the deadline is awaited (each
operation is bounded by ``op_timeout``), so a run ends within duration + op_timeout.

Latency of a paced (open-loop) operation is measured from the time it was *scheduled*, not from
when it started: if the system falls behind, the queueing shows up in the percentiles instead of
being hidden (coordinated omission).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from tristore.errors import TristoreError
from tristore.flows.dashboard import Dashboard
from tristore.flows.events import ANALYTICS_UPDATED
from tristore.flows.pipeline import (
    OrderPipeline,
    OrderResult,
    analytics_key,
    check_consistency,
)
from tristore.flows.recommendations import Recommendations
from tristore.monitor import LatencyHistogram, Monitor, RssSampler

__all__ = [
    "SCENARIOS",
    "Progress",
    "ScenarioReport",
    "cache_synchronization",
    "cross_database_coordination",
    "database_stress_test",
]

ProgressFn = Callable[["Progress"], None]


@dataclass(frozen=True)
class Progress:
    """What a live progress line shows, once per ``progress_interval``."""

    scenario: str
    elapsed_s: float
    duration_s: float
    operations: int
    errors: int
    throughput_ops_s: float  # over the last interval
    p99_ms: float  # over the run so far


@dataclass
class ScenarioReport:
    scenario: str
    duration_s: float
    operations: int
    errors: int
    error_types: dict[str, int]
    success_rate: float
    throughput_ops_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    rss_start_bytes: int
    rss_end_bytes: int
    rss_peak_bytes: int
    rss_growth_bytes: int  # end - start
    rss_growth_after_warmup_bytes: int  # end - RSS at the end of the warm-up (see _Run)
    rss_growth_second_half_bytes: int  # end - RSS at half the duration (see _Run)
    target: str
    target_met: bool
    sync_lag_p50_ms: float | None = None
    sync_lag_p99_ms: float | None = None
    event_latency_p50_ms: float | None = None
    event_latency_p99_ms: float | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------
# Shared machinery
# --------------------------------------------------------------------------------------------


class _Run:
    """One scenario run: the clock, the monitor, the overall histogram, the progress ticker."""

    def __init__(
        self,
        name: str,
        duration: float,
        progress: ProgressFn | None,
        progress_interval: float,
        op_timeout: float,
    ) -> None:
        if duration <= 0:
            raise ValueError(f"duration: expected seconds > 0, got {duration!r}")
        self.name = name
        self.duration = duration
        self.progress = progress
        self.progress_interval = progress_interval
        self.op_timeout = op_timeout
        self.monitor = Monitor()
        self.latency = LatencyHistogram()
        self.ok = 0
        self.errors = 0
        self.error_types: dict[str, int] = {}
        self.started = time.monotonic()
        self.deadline = self.started + duration
        self.ended: float | None = None
        # Caches fill during the first seconds (Kuzu's buffer pool, SQLite's page cache, the
        # allocator's arenas): growth after that is what a leak would look like.
        self.warmup = min(10.0, duration * 0.1)
        self.rss_after_warmup: int | None = None
        # Caches fill up to their configured caps (SQLite's page cache per connection is the
        # largest: measured, a 10000-page writer cache filled within about 90 s of the stress
        # scenario), so growth over the second half is the figure a leak would show and a cache
        # would not.
        self.rss_at_half: int | None = None
        self.rss_at_end: RssSampler | None = None  # frozen when the load stops

    def attach(self, stores: Any) -> None:
        """Report the pools' stats too when the stores come with them (a PoolManager does)."""
        pools = getattr(stores, "pools", None)
        if callable(pools):
            self.monitor.attach_pools(pools())

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    async def op(
        self, store: str, operation: str, fn: Callable[[], Awaitable[Any]], since: float | None
    ) -> bool:
        """Run one operation, timed from ``since`` (its scheduled start) or from now."""
        start = time.perf_counter() if since is None else since
        try:
            async with asyncio.timeout(self.op_timeout):
                await fn()
        except (TristoreError, TimeoutError, OSError) as exc:
            # Typed store errors and timeouts are the failures a load test counts; anything
            # else is a bug in the scenario and should surface.
            self.errors += 1
            name = type(exc).__name__
            self.error_types[name] = self.error_types.get(name, 0) + 1
            self.monitor.record(store, operation, time.perf_counter() - start, exc)
            return False
        elapsed = time.perf_counter() - start
        self.ok += 1
        self.latency.record_seconds(elapsed)
        self.monitor.record(store, operation, elapsed)
        return True

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        ticker = None
        if self.progress is not None:
            ticker = asyncio.create_task(self._tick(), name=f"tristore-{self.name}-progress")
        marks = asyncio.create_task(self._memory_marks(), name=f"tristore-{self.name}-rss")
        try:
            async with self.monitor.sampling(interval=0.5):
                self.monitor.reset()  # RSS from here: the stores are open and warm
                self.started = time.monotonic()
                self.deadline = self.started + self.duration
                yield
            # Frozen here: a verification pass after the load must not count as its growth.
            self.rss_at_end = dataclasses.replace(self.monitor.rss)
            self.ended = time.monotonic()
        finally:
            for task in (ticker, marks):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    async def _memory_marks(self) -> None:
        """RSS at the end of the warm-up, then at half the duration."""
        await asyncio.sleep(self.warmup)
        self.rss_after_warmup = self.monitor.sample_memory()
        await asyncio.sleep(max(0.0, self.duration / 2 - self.warmup))
        self.rss_at_half = self.monitor.sample_memory()

    async def _tick(self) -> None:
        assert self.progress is not None
        last_ops, last_at = 0, time.monotonic()
        while True:
            await asyncio.sleep(self.progress_interval)
            now = time.monotonic()
            ops = self.ok + self.errors
            self.progress(
                Progress(
                    scenario=self.name,
                    elapsed_s=now - self.started,
                    duration_s=self.duration,
                    operations=ops,
                    errors=self.errors,
                    throughput_ops_s=(ops - last_ops) / max(now - last_at, 1e-9),
                    p99_ms=self.latency.percentile_ms(99),
                )
            )
            last_ops, last_at = ops, now

    def report(
        self,
        target: str,
        target_met: Callable[[float], bool],
        parameters: dict[str, Any],
        **extra: Any,
    ) -> ScenarioReport:
        elapsed = (self.ended or time.monotonic()) - self.started
        ops = self.ok + self.errors
        success = self.ok / ops if ops else 0.0
        rss = self.rss_at_end or self.monitor.rss
        snapshot = self.monitor.snapshot()
        details = {
            "operations": snapshot["operations"],
            "pools": snapshot["pools"],
            "rss_warmup_s": self.warmup,
        } | extra.pop("details", {})
        return ScenarioReport(
            scenario=self.name,
            duration_s=round(elapsed, 3),
            operations=ops,
            errors=self.errors,
            error_types=dict(self.error_types),
            success_rate=success,
            throughput_ops_s=ops / elapsed if elapsed > 0 else 0.0,
            p50_ms=self.latency.percentile_ms(50),
            p99_ms=self.latency.percentile_ms(99),
            max_ms=self.latency.max_ms,
            rss_start_bytes=rss.start,
            rss_end_bytes=rss.latest,
            rss_peak_bytes=rss.peak,
            rss_growth_bytes=rss.growth,
            rss_growth_after_warmup_bytes=rss.latest - (self.rss_after_warmup or rss.start),
            rss_growth_second_half_bytes=rss.latest - (self.rss_at_half or rss.start),
            target=target,
            target_met=target_met(success) and ops > 0,
            parameters=parameters,
            details=details,
            **extra,
        )


class _Pacer:
    """Open-loop schedule: slot k starts at start + k / rate, whatever happened before."""

    def __init__(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError(f"rate: expected operations/s > 0, got {rate!r}")
        self.interval = 1.0 / rate
        self.next_at = time.monotonic()

    async def wait(self, deadline: float) -> float | None:
        """Sleep until the next slot; return its scheduled time as a perf_counter() value, or
        None (without sleeping past it) if the slot falls after ``deadline`` (monotonic)."""
        scheduled = self.next_at
        if scheduled >= deadline:
            return None
        self.next_at += self.interval
        delay = scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        # The same instant on the perf_counter clock the histograms use.
        return time.perf_counter() - max(time.monotonic() - scheduled, 0.0)


async def _paced(
    run: _Run,
    rate: float,
    make: Callable[[], tuple[str, str, Callable[[], Awaitable[Any]]]],
    max_in_flight: int,
) -> None:
    """Start one operation per slot until the deadline; at most ``max_in_flight`` at once."""
    pacer = _Pacer(rate)
    slots = asyncio.Semaphore(max_in_flight)
    tasks: set[asyncio.Task[bool]] = set()

    async def one(since: float) -> bool:
        try:
            store, operation, fn = make()
            return await run.op(store, operation, fn, since)
        finally:
            slots.release()

    while (since := await pacer.wait(run.deadline)) is not None:
        await slots.acquire()  # falling behind: wait (the delay is charged to the latency)
        task = asyncio.create_task(one(since))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)


class _Shop:
    """Random customers, products and quantities drawn from what SQLite holds (seeded RNG)."""

    def __init__(self, customers: list[int], products: list[int], seed: int) -> None:
        if not customers or not products:
            raise ValueError("the scenarios need customers and products in SQLite: seed first")
        self.rng = random.Random(seed)
        self.customers = customers
        self.products = products

    @classmethod
    async def load(cls, sqlite: Any, seed: int) -> _Shop:
        customers = [row[0] for row in await sqlite.fetchall("SELECT id FROM customers")]
        products = [row[0] for row in await sqlite.fetchall("SELECT id FROM products")]
        return cls(customers, products, seed)

    def customer(self) -> int:
        return self.rng.choice(self.customers)

    def product(self) -> int:
        return self.rng.choice(self.products)

    def quantity(self) -> int:
        return self.rng.choice((1, 1, 1, 2, 2, 3, 5))


async def _place(run: _Run, pipeline: OrderPipeline, shop: _Shop) -> OrderResult:
    """One coordinated order; its phases go into the monitor (where the time goes)."""
    result = await pipeline.place_order(shop.customer(), shop.product(), shop.quantity())
    timings = result.timings
    run.monitor.record("flow", "place_order.sql", timings["sql_ms"] / 1000)
    run.monitor.record("flow", "place_order.commit_apply", timings["commit_apply_ms"] / 1000)
    return result


def _period_now() -> str:
    return time.strftime("%Y-%m", time.gmtime())


# --------------------------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------------------------


async def database_stress_test(
    pipeline: OrderPipeline,
    *,
    duration: float = 300.0,
    users: int = 50,
    ops_per_user: int = 20,
    rate: float | None = None,
    seed: int = 1,
    op_timeout: float = 10.0,
    progress: ProgressFn | None = None,
    progress_interval: float = 1.0,
) -> ScenarioReport:
    """``users`` concurrent users, each running sessions of ``ops_per_user`` mixed operations
    (SQLite reads and writes, graph reads, cache reads and writes, recommendations, coordinated
    orders) until ``duration`` is over. ``rate`` caps all users together at that many
    operations/s (None: as fast as the stores allow). Target: success >= 95 %."""
    run = _Run("database_stress_test", duration, progress, progress_interval, op_timeout)
    run.attach(pipeline.stores)
    stores = pipeline.stores
    shop = await _Shop.load(stores.sqlite, seed)
    recs = Recommendations(stores.graph, stores.cache)
    reads = stores.graph
    pacer: _Pacer | None = None
    sessions = 0

    def mix(user: int) -> tuple[str, str, Callable[[], Awaitable[Any]]]:
        pick = shop.rng.random()
        cid, pid = shop.customer(), shop.product()
        if pick < 0.25:
            return "redis", "get", lambda: stores.cache.get(f"tristore:session:{user}")
        if pick < 0.40:
            return (
                "redis",
                "set",
                lambda: stores.cache.set(f"tristore:session:{user}", str(pid), ex=600),
            )
        if pick < 0.60:
            return (
                "sqlite",
                "read",
                lambda: stores.sqlite.fetchone(
                    "SELECT id, name, price, rating FROM products WHERE id = ?", (pid,)
                ),
            )
        if pick < 0.70:
            return (
                "sqlite",
                "write",
                lambda: stores.sqlite.execute(
                    "UPDATE products SET stock = stock + 1 WHERE id = ?", (pid,)
                ),
            )
        if pick < 0.80:
            return (
                "graph",
                "read",
                lambda: reads.query_rows(
                    "MATCH (c:Customer {id: $id})-[:PURCHASED]->(p:Product) RETURN count(p)",
                    {"id": cid},
                ),
            )
        if pick < 0.90:
            return "flow", "recommendations", lambda: recs.get(pid)
        return "flow", "place_order", lambda: _place(run, pipeline, shop)

    async def user(n: int) -> None:
        nonlocal sessions
        while run.remaining() > 0:
            for _ in range(ops_per_user):
                since = None
                if pacer is not None and (since := await pacer.wait(run.deadline)) is None:
                    return
                if run.remaining() <= 0:
                    return
                store, operation, fn = mix(n)
                await run.op(store, operation, fn, since)
            sessions += 1

    async with run.running():
        pacer = _Pacer(rate) if rate is not None else None
        await asyncio.gather(*(user(n) for n in range(users)))
    params = {"duration": duration, "users": users, "ops_per_user": ops_per_user, "rate": rate}
    return run.report(
        "success >= 95%",
        lambda s: s >= 0.95,
        params,
        details={"sessions": sessions, "recommendation_hit_rate": recs.hit_rate},
    )


async def cross_database_coordination(
    pipeline: OrderPipeline,
    *,
    duration: float = 180.0,
    concurrency: int = 25,
    rate: float | None = None,
    seed: int = 2,
    op_timeout: float = 10.0,
    verify: bool = True,
    progress: ProgressFn | None = None,
    progress_interval: float = 1.0,
) -> ScenarioReport:
    """``concurrency`` coordinated transactions at once (order -> SQLite, PURCHASED edge ->
    Kuzu, analytics cache + events -> Redis), back to back until ``duration`` is over, or paced
    at ``rate`` transactions/s. Afterwards every order placed is checked in all three stores.
    Target: success >= 99 % and no inconsistency."""
    run = _Run("cross_database_coordination", duration, progress, progress_interval, op_timeout)
    run.attach(pipeline.stores)
    shop = await _Shop.load(pipeline.stores.sqlite, seed)
    placed: list[int] = []
    txids: list[str] = []

    async def order() -> None:
        result = await _place(run, pipeline, shop)
        placed.append(result.order["id"])
        txids.append(result.txid)

    async def worker() -> None:
        while run.remaining() > 0:
            await run.op("flow", "place_order", order, None)

    async with run.running():
        if rate is None:
            await asyncio.gather(*(worker() for _ in range(concurrency)))
        else:
            await _paced(run, rate, lambda: ("flow", "place_order", order), concurrency)
    problems = await check_consistency(pipeline, placed, txids=txids) if verify else []
    params = {"duration": duration, "concurrency": concurrency, "rate": rate}
    report = run.report(
        "success >= 99% and consistent",
        lambda s: s >= 0.99 and not problems,
        params,
        details={"orders_placed": len(placed), "inconsistencies": problems[:20]},
    )
    report.details["inconsistency_count"] = len(problems)
    # How the coordinator batched the work: orders per Kuzu transaction and per Redis round trip.
    report.details["coordinator"] = pipeline.coordinator.stats()
    return report


async def cache_synchronization(
    pipeline: OrderPipeline,
    *,
    duration: float = 240.0,
    cache_rate: float = 100.0,
    db_rate: float = 50.0,
    seed: int = 3,
    op_timeout: float = 10.0,
    max_in_flight: int = 100,
    progress: ProgressFn | None = None,
    progress_interval: float = 1.0,
) -> ScenarioReport:
    """``cache_rate`` cache operations/s (analytics reads, recommendations, session writes) and
    ``db_rate`` database updates/s (coordinated orders that refresh the analytics cache), both
    open-loop. A dashboard subscriber measures commit -> event and commit -> cache visible (the
    sync lag). Target: sync lag p99 <= 100 ms and no update left invisible."""
    run = _Run("cache_synchronization", duration, progress, progress_interval, op_timeout)
    run.attach(pipeline.stores)
    stores = pipeline.stores
    shop = await _Shop.load(stores.sqlite, seed)
    recs = Recommendations(stores.graph, stores.cache)
    period = _period_now()

    def cache_op() -> tuple[str, str, Callable[[], Awaitable[Any]]]:
        pick = shop.rng.random()
        cid, pid = shop.customer(), shop.product()
        if pick < 0.5:
            return (
                "redis",
                "analytics_get",
                lambda: stores.cache.execute("HGETALL", analytics_key(cid, period)),
            )
        if pick < 0.8:
            return "flow", "recommendations", lambda: recs.get(pid)
        return (
            "redis",
            "session_set",
            lambda: stores.cache.set(f"tristore:session:{cid}", str(pid), ex=600),
        )

    def db_op() -> tuple[str, str, Callable[[], Awaitable[Any]]]:
        return "flow", "place_order", lambda: _place(run, pipeline, shop)

    dashboard = Dashboard(stores.cache, types={ANALYTICS_UPDATED})
    async with dashboard, run.running():
        await asyncio.gather(
            _paced(run, cache_rate, cache_op, max_in_flight),
            _paced(run, db_rate, db_op, max_in_flight),
        )
        await dashboard.drain(timeout=dashboard.visible_timeout + 1)
    lag, events = dashboard.sync_lag, dashboard.event_latency
    lag_p99 = lag.percentile_ms(99)
    params = {"duration": duration, "cache_rate": cache_rate, "db_rate": db_rate}
    return run.report(
        "sync lag p99 <= 100 ms",
        lambda s: lag.count > 0 and lag_p99 <= 100.0 and dashboard.not_visible == 0,
        params,
        sync_lag_p50_ms=lag.percentile_ms(50),
        sync_lag_p99_ms=lag_p99,
        event_latency_p50_ms=events.percentile_ms(50),
        event_latency_p99_ms=events.percentile_ms(99),
        details={
            "dashboard": dashboard.summary(),
            "recommendation_hit_rate": recs.hit_rate,
        },
    )


#: name -> (function, default duration in seconds)
SCENARIOS: dict[str, tuple[Callable[..., Awaitable[ScenarioReport]], float]] = {
    "database_stress_test": (database_stress_test, 300.0),
    "cross_database_coordination": (cross_database_coordination, 180.0),
    "cache_synchronization": (cache_synchronization, 240.0),
}
