"""The performance monitor on real stores: histograms, counts, pool stats, RSS, baselines."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tristore.errors import ConfigError, QueryError
from tristore.monitor import Baseline, LatencyHistogram, Monitor, Regression
from tristore.pool import PoolConfig
from tristore.stores import CacheStore, SQLiteStore
from tristore.testing import Stores


def test_histogram_percentiles_are_exact_to_three_figures() -> None:
    hist = LatencyHistogram()
    for ms in range(1, 101):  # 1..100 ms
        hist.record_ms(ms)
    assert hist.count == 100
    assert hist.percentile_ms(50) == pytest.approx(50, rel=1e-3)
    assert hist.percentile_ms(90) == pytest.approx(90, rel=1e-3)
    assert hist.percentile_ms(99) == pytest.approx(99, rel=1e-3)
    assert hist.max_ms == pytest.approx(100, rel=1e-3)


def test_histogram_clamps_instead_of_dropping() -> None:
    hist = LatencyHistogram()
    hist.record_seconds(0.0)  # below 1 µs
    hist.record_seconds(10 * 3600)  # above the hour
    assert hist.count == 2  # hdrh would silently drop both


async def test_track_counts_success_and_typed_failures(stores: Stores) -> None:
    monitor = Monitor()
    for i in range(5):
        async with monitor.track("sqlite", "write"):
            await stores.sqlite.execute(
                "INSERT INTO customers (email, name, country) VALUES (?, ?, ?)",
                (f"m{i}@example.org", f"Monitor {i}", "DE"),
            )
    with pytest.raises(QueryError):
        async with monitor.track("sqlite", "write"):
            # Duplicate email: a real constraint violation, translated to QueryError.
            await stores.sqlite.execute(
                "INSERT INTO customers (email, name, country) VALUES (?, ?, ?)",
                ("m0@example.org", "Again", "DE"),
            )
    get = monitor.wrap("redis", "get", stores.cache.get)
    await stores.cache.set("k", "v")
    assert await get("k") == b"v"

    snap = monitor.snapshot()
    write = snap["operations"]["sqlite.write"]
    assert write["ok"] == 5
    assert write["errors"] == 1
    assert write["error_types"] == {"QueryError": 1}
    assert write["count"] == 5  # failures are not in the histogram
    assert 0 < write["p50_ms"] <= write["p90_ms"] <= write["p99_ms"] <= write["max_ms"]
    assert snap["operations"]["redis.get"]["ok"] == 1
    json.dumps(snap)  # JSON-ready as is


async def test_cancellation_is_not_a_store_failure() -> None:
    monitor = Monitor()

    async def slow() -> None:
        async with monitor.track("redis", "wait"):
            await asyncio.sleep(10)

    task = asyncio.create_task(slow())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    stats = monitor.stats("redis", "wait")
    assert (stats.ok, stats.errors) == (0, 0)


async def test_pool_stats_give_connect_time_and_utilization(stores: Stores) -> None:
    monitor = Monitor()
    monitor.attach_pools(
        {
            "sqlite.readers": stores.sqlite.readers,
            "graph.readers": stores.graph.readers,
            "redis": stores.cache.pool,
        }
    )
    async with stores.cache.client():
        pools = monitor.snapshot()["pools"]
        assert pools["redis"]["in_use"] == 1
        assert pools["redis"]["utilization"] == pytest.approx(1 / pools["redis"]["pool_max"])
    for name in ("sqlite.readers", "graph.readers", "redis"):
        assert pools[name]["connections_num"] >= 1
        assert pools[name]["connect_ms_mean"] >= 0
    assert "pool.redis.connect_ms" in monitor.metrics()


async def test_rss_per_connection_opens_and_closes_connections(tristore_settings) -> None:
    settings = tristore_settings.replace(redis={"pool_min": 0, "pool_max": 12})
    monitor = Monitor()
    async with CacheStore(settings) as cache:
        result = await monitor.measure_rss_per_connection("redis", cache.pool, 12)
        assert result["connections"] == 12
        assert cache.pool.stats()["pool_size"] == 0  # closed again: the pool is as it was
        # Each is a live socket that answered PING when it was made.
        assert cache.pool.stats()["connections_num"] == 12
    async with SQLiteStore(settings, reader_pool=PoolConfig(min_size=0, max_size=8)) as sqlite:
        result = await monitor.measure_rss_per_connection("sqlite.readers", sqlite.readers, 8)
        assert result["connections"] == 8
    snap = monitor.snapshot()
    assert set(snap["memory"]["per_connection"]) == {"redis", "sqlite.readers"}
    assert snap["memory"]["rss_bytes"] > 0
    assert snap["memory"]["rss_peak_bytes"] >= snap["memory"]["rss_start_bytes"]


async def test_sampling_records_rss_while_running() -> None:
    monitor = Monitor()
    async with monitor.sampling(interval=0.01):
        await asyncio.sleep(0.05)
    assert monitor.rss.samples >= 3


def _monitor_with(latencies_ms: list[float], errors: int = 0) -> Monitor:
    monitor = Monitor()
    for ms in latencies_ms:
        monitor.record("sqlite", "write", ms / 1000)
    for _ in range(errors):
        monitor.record("sqlite", "write", 0.001, QueryError("sqlite", "boom"))
    return monitor


def test_baseline_round_trip_and_regressions(tmp_path: Path) -> None:
    base = _monitor_with([1.0] * 99 + [2.0])
    path = Baseline.from_monitor(base, commit="abc").save(tmp_path / "b" / "baseline.json")
    loaded = Baseline.load(path)
    assert loaded.meta == {"commit": "abc"}
    assert loaded.metrics["sqlite.write.p50_ms"] == pytest.approx(1.0, rel=1e-3)
    assert loaded.metrics == pytest.approx(base.metrics())

    same = _monitor_with([1.0] * 99 + [2.0])
    assert not [r for r in same.compare(loaded, tolerance=0.1) if r.metric.startswith("sqlite")]

    slower = _monitor_with([3.0] * 100, errors=5)
    found = {r.metric: r for r in slower.compare(loaded, tolerance=0.1)}
    assert {"sqlite.write.p50_ms", "sqlite.write.p99_ms", "sqlite.write.error_rate"} <= set(found)
    p50 = found["sqlite.write.p50_ms"]
    assert isinstance(p50, Regression)
    assert p50.current == pytest.approx(3.0, rel=1e-3)
    assert p50.ratio == pytest.approx(3.0, rel=1e-2)
    assert "baseline" in str(p50)

    # A generous tolerance lets the same slowdown through (errors have no relative slack: 0 * x).
    lenient = {r.metric for r in slower.compare(loaded, tolerance=5.0)}
    assert lenient & {"sqlite.write.p50_ms", "sqlite.write.p99_ms"} == set()
    assert "sqlite.write.error_rate" in lenient


def test_baseline_load_rejects_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        Baseline.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{", encoding="utf-8")
    with pytest.raises(ConfigError, match="JSON"):
        Baseline.load(bad)
    bad.write_text(json.dumps({"version": 1, "metrics": {"x": "fast"}}), encoding="utf-8")
    with pytest.raises(ConfigError, match="numbers"):
        Baseline.load(bad)
    with pytest.raises(ConfigError, match="tolerance"):
        Baseline({"x": 1.0}).compare({"x": 1.0}, tolerance=-1)


def test_to_json_writes_the_snapshot(tmp_path: Path) -> None:
    monitor = _monitor_with([1.0, 2.0])
    target = tmp_path / "monitor.json"
    monitor.to_json(target)
    data = json.loads(target.read_text(encoding="utf-8"))
    assert data["operations"]["sqlite.write"]["ok"] == 2
