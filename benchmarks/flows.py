"""Production data flows: an order through the pipeline, recommendations, the dashboard, and the
load scenarios' figures (sync lag, RSS growth) tracked across commits.

``FlowOps`` times single flows on the seeded ``small`` data set (a private copy per benchmark
process, a throwaway redis-server). ``FlowLoad`` runs two short scenarios once per benchmark run
(in ``setup_cache``) and tracks what they measured: the cache-sync lag at the specification's
rates (100 cache ops/s + 50 db updates/s) and RSS growth under the 50-user stress mix.
Targets (the specification's, not asserted): sync-lag p99 <= 5 ms, flow p99 <= 10 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

from . import common
from .common import AsyncBench, cache_or_skip, require, settings_in, skip_if_unavailable

ORDERS = 20  # orders per timed call
READS = 50  # cached recommendation reads per timed call
LOAD_SECONDS = 3.0  # each scenario in FlowLoad.setup_cache (the suite has 5 min per commit)

_server: Any = None
_REGISTRY = common.registry()


def _redis_url() -> str:
    """One throwaway redis-server per benchmark process (setup runs before every sample)."""
    global _server
    if _server is None:
        services = require("tristore.services", "RedisServer")
        _server = services.RedisServer()
        _server.start()
    return str(_server.url)


class FlowOps(AsyncBench):
    @cache_or_skip
    def setup_cache(self) -> str:
        setup = require("tristore.testing.setup", "seed_files")
        directory = Path("seeded-flows-small").resolve()
        setup.seed_files(directory, "small", seed=7)
        return str(directory)

    def setup(self, seeded: str) -> None:
        skip_if_unavailable(seeded)
        flows = require("tristore.flows", "open_env", "Recommendations", "Dashboard")
        setup = require("tristore.testing.setup", "SeededFiles")
        self.setup_loop()
        src = Path(seeded)
        setup.SeededFiles(src, src / "tristore.sqlite3", src / "graph.kuzu", {}).copy_to(
            self.tmpdir
        )
        settings = settings_in(self.tmpdir, redis={"url": _redis_url()})
        self.stack = contextlib.AsyncExitStack()
        self.env: Any = self.run(
            self.stack.enter_async_context(
                flows.open_env(settings, size=None, data_dir=self.tmpdir, embedded_redis=False)
            )
        )
        self.run(self.env.manager.cache.execute("FLUSHDB"))
        self.pipeline = self.env.pipeline
        self.recs = flows.Recommendations(self.env.manager.graph, self.env.manager.cache)
        self.dashboard = flows.Dashboard(self.env.manager.cache, check_cache=False)
        self.run(self.dashboard.start())
        self.n = 0
        self.batch(5, self.order)  # warm: prepared statements, the apply script

    def teardown(self, seeded: str) -> None:
        self.close_opened("dashboard", "stop")
        self.close_opened("stack", "aclose")
        self.teardown_loop()

    async def order(self) -> Any:
        # The registry's order_flow order (tristore_bench.workloads), at the clock's time.
        self.n += 1
        return await self.pipeline.place_order(*_REGISTRY.order_args(self.n))

    async def order_seen(self) -> None:
        """An order, until the dashboard has received its analytics event (commit -> event)."""
        result = await self.order()
        await self.dashboard.wait_for(
            lambda e: e.txid == result.txid and e.type == "analytics_updated", timeout=10
        )

    def time_place_order_x20(self, seeded: str) -> None:
        """20 orders through the pipeline (SQLite + Kuzu + Redis), one after another."""
        self.batch(ORDERS, self.order)

    def time_order_to_dashboard_x20(self, seeded: str) -> None:
        """20 orders, each until its change event reached the dashboard subscriber."""
        self.batch(ORDERS, self.order_seen)

    def time_recommendations_cached_x50(self, seeded: str) -> None:
        """50 recommendation reads served from the cache (generation check + JSON)."""
        self.run(self.recs.get(7))
        self.batch(READS, lambda: self.recs.get(7))

    def time_recommendations_invalidated_x20(self, seeded: str) -> None:
        """20 reads each after an invalidation: the graph query plus the cache write."""

        async def one() -> None:
            await self.recs.invalidate([7])
            await self.recs.get(7)

        self.batch(ORDERS, one)

    def track_place_order_p99_ms(self, seeded: str) -> float:
        """p99 of 200 sequential orders (the end-to-end flow; target <= 10 ms)."""
        monitor = require("tristore.monitor", "LatencyHistogram")
        hist = monitor.LatencyHistogram()

        async def many() -> None:
            for _ in range(200):
                started = time.perf_counter()
                await self.order()
                hist.record_seconds(time.perf_counter() - started)

        self.run(many())
        return float(hist.percentile_ms(99))

    track_place_order_p99_ms.unit = "ms"  # type: ignore[attr-defined]


class FlowLoad:
    """Figures of two short load runs, measured once per benchmark run in ``setup_cache``."""

    timeout = 180

    @cache_or_skip
    def setup_cache(self) -> dict[str, float]:
        flows = require("tristore.flows", "open_env", "cache_synchronization")
        config = require("tristore.config", "Settings")

        async def measure() -> dict[str, float]:
            out: dict[str, float] = {}
            async with flows.open_env(config.Settings(), size="small", seed=7) as env:
                sync = await flows.cache_synchronization(env.pipeline, duration=LOAD_SECONDS)
                out["sync_lag_p50_ms"] = sync.sync_lag_p50_ms
                out["sync_lag_p99_ms"] = sync.sync_lag_p99_ms
                out["event_latency_p99_ms"] = sync.event_latency_p99_ms
            async with flows.open_env(config.Settings(), size="small", seed=7) as env:
                stress = await flows.database_stress_test(env.pipeline, duration=LOAD_SECONDS)
                out["stress_rss_growth_bytes"] = float(stress.rss_growth_bytes)
                out["stress_rss_growth_after_warmup_bytes"] = float(
                    stress.rss_growth_after_warmup_bytes
                )
                out["stress_p99_ms"] = stress.p99_ms
            return out

        return asyncio.run(measure())

    def setup(self, figures: dict[str, float]) -> None:
        skip_if_unavailable(figures)

    def track_sync_lag_p99_ms(self, figures: dict[str, float]) -> float:
        """Commit -> cache visible to an independent reader, p99, at 100 + 50 ops/s."""
        return figures["sync_lag_p99_ms"]

    track_sync_lag_p99_ms.unit = "ms"  # type: ignore[attr-defined]

    def track_sync_lag_p50_ms(self, figures: dict[str, float]) -> float:
        return figures["sync_lag_p50_ms"]

    track_sync_lag_p50_ms.unit = "ms"  # type: ignore[attr-defined]

    def track_event_latency_p99_ms(self, figures: dict[str, float]) -> float:
        """Commit -> change event received by the dashboard, p99."""
        return figures["event_latency_p99_ms"]

    track_event_latency_p99_ms.unit = "ms"  # type: ignore[attr-defined]

    def track_stress_rss_growth_bytes(self, figures: dict[str, float]) -> float:
        """RSS growth over a short 50-user stress run (warm-up included)."""
        return figures["stress_rss_growth_bytes"]

    track_stress_rss_growth_bytes.unit = "bytes"  # type: ignore[attr-defined]

    def track_stress_rss_growth_after_warmup_bytes(self, figures: dict[str, float]) -> float:
        """RSS growth over the same run after its warm-up (what a leak would show as)."""
        return figures["stress_rss_growth_after_warmup_bytes"]

    track_stress_rss_growth_after_warmup_bytes.unit = "bytes"  # type: ignore[attr-defined]
