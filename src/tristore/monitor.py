"""Performance monitor: latency histograms per store operation, pool metrics, memory, baselines.

What it records, and why this way:

- **Latency** per ``(store, operation)`` in an HdrHistogram (microsecond resolution, 3 significant
  figures, 1 µs .. 1 h). A histogram keeps p50/p90/p99/max exact to 0.1 % in constant memory, so a
  load run of millions of operations costs the same as one of a hundred; a list of samples would
  grow with the run and distort the RSS figures this same module reports.
- **Success / failure counts**, failures by error type. A failed operation's latency is kept out
  of the histogram (a fast refusal would flatter the percentiles) but counted.
- **Pool metrics** straight from :meth:`tristore.pool.Pool.stats`, plus what they imply: mean
  connect time (``connections_ms / connections_num``) and utilization (in use / max).
- **Memory**: process RSS sampled over time (start, peak, growth) and RSS per connection,
  measured as the RSS delta of opening N connections divided by N.
- **Baselines**: a flat ``{metric: value}`` map saved as JSON; :meth:`Monitor.compare` reports
  every metric that got worse than the baseline by more than a tolerance.

Every metric a baseline holds is "lower is better" (latencies, error rate, bytes, connect ms), so a
comparison never needs to know which direction a metric improves in.

Usage::

    monitor = Monitor()
    async with monitor.track("sqlite", "write"):
        await store.execute(...)
    fetch = monitor.wrap("redis", "get", cache.get)      # same, as a wrapped coroutine function
    monitor.attach_pools(manager.pools())
    report = monitor.snapshot()                           # JSON-ready dict
    Baseline.from_monitor(monitor).save("baseline.json")
    regressions = monitor.compare(Baseline.load("baseline.json"), tolerance=0.2)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import json
import math
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, Protocol, TypeVar

import psutil
from hdrh.histogram import HdrHistogram

from tristore.errors import ConfigError, TristoreError

__all__ = [
    "Baseline",
    "LatencyHistogram",
    "Monitor",
    "OperationStats",
    "Regression",
    "RssSampler",
    "current_rss",
]

P = ParamSpec("P")
T = TypeVar("T")

# Histogram range in microseconds: 1 µs to one hour, 3 significant figures (HdrHistogram's usual
# setting: percentiles within 0.1 %, ~50 KiB per histogram).
_LOWEST_US = 1
_HIGHEST_US = 3_600_000_000
_SIG_FIGS = 3

BASELINE_VERSION = 1


def current_rss() -> int:
    """This process's resident set size in bytes."""
    return int(psutil.Process(os.getpid()).memory_info().rss)


class LatencyHistogram:
    """An HdrHistogram of durations, fed in seconds or milliseconds, read back in milliseconds."""

    __slots__ = ("_hist",)

    def __init__(self) -> None:
        self._hist = HdrHistogram(_LOWEST_US, _HIGHEST_US, _SIG_FIGS)

    def record_seconds(self, seconds: float) -> None:
        self._record_us(seconds * 1_000_000)

    def record_ms(self, ms: float) -> None:
        self._record_us(ms * 1000)

    def _record_us(self, us: float) -> None:
        # Clamp into the trackable range: hdrh silently drops (returns False for) values outside
        # it, and a dropped sample would make the count disagree with the operations done.
        value = min(max(round(us), _LOWEST_US), _HIGHEST_US)
        self._hist.record_value(value)

    @property
    def count(self) -> int:
        return int(self._hist.get_total_count())

    def percentile_ms(self, q: float) -> float:
        if not self.count:
            return 0.0
        return float(self._hist.get_value_at_percentile(q)) / 1000

    @property
    def max_ms(self) -> float:
        return float(self._hist.get_max_value()) / 1000 if self.count else 0.0

    @property
    def mean_ms(self) -> float:
        return float(self._hist.get_mean_value()) / 1000 if self.count else 0.0

    def merge(self, other: LatencyHistogram) -> None:
        self._hist.add(other._hist)

    def reset(self) -> None:
        self._hist.reset()

    def summary(self) -> dict[str, float | int]:
        return {
            "count": self.count,
            "p50_ms": self.percentile_ms(50),
            "p90_ms": self.percentile_ms(90),
            "p99_ms": self.percentile_ms(99),
            "max_ms": self.max_ms,
            "mean_ms": round(self.mean_ms, 3),
        }


@dataclass
class OperationStats:
    """Everything recorded for one ``store.operation``."""

    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    ok: int = 0
    errors: int = 0
    error_types: dict[str, int] = field(default_factory=dict)

    def record(self, seconds: float, error: BaseException | None = None) -> None:
        if error is None:
            self.ok += 1
            self.latency.record_seconds(seconds)
        else:
            self.errors += 1
            name = type(error).__name__
            self.error_types[name] = self.error_types.get(name, 0) + 1

    @property
    def error_rate(self) -> float:
        total = self.ok + self.errors
        return self.errors / total if total else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "error_types": dict(self.error_types),
            **self.latency.summary(),
        }


class _PoolLike(Protocol):
    """What the monitor needs of a pool (tristore.pool.Pool has it)."""

    def stats(self) -> Mapping[str, int | float]: ...

    async def grow(self, n: int) -> int: ...

    async def shrink_idle(self, *, force: bool = False) -> int: ...


@dataclass
class RssSampler:
    """RSS over time: start, latest, peak; growth = latest - start."""

    start: int = 0
    latest: int = 0
    peak: int = 0
    samples: int = 0

    def sample(self) -> int:
        rss = current_rss()
        if not self.samples:
            self.start = rss
        self.latest = rss
        self.peak = max(self.peak, rss)
        self.samples += 1
        return rss

    @property
    def growth(self) -> int:
        return self.latest - self.start

    def summary(self) -> dict[str, int]:
        return {
            "rss_start_bytes": self.start,
            "rss_bytes": self.latest,
            "rss_peak_bytes": self.peak,
            "rss_growth_bytes": self.growth,
            "samples": self.samples,
        }


@dataclass(frozen=True)
class Regression:
    """One metric worse than its baseline by more than the allowed slack."""

    metric: str
    baseline: float
    current: float
    allowed: float  # the largest value that would have passed

    @property
    def ratio(self) -> float:
        return self.current / self.baseline if self.baseline else math.inf

    def __str__(self) -> str:
        return (
            f"{self.metric}: {self.current:g} vs baseline {self.baseline:g} "
            f"(allowed <= {self.allowed:g}, x{self.ratio:.2f})"
        )


# Absolute slack by unit suffix, added to the relative tolerance: without it a 0.02 ms p50
# "regresses" to 0.03 ms on scheduler noise alone, and an error rate of 0 allows nothing.
DEFAULT_ABS_TOLERANCE: dict[str, float] = {
    "_ms": 0.05,
    "_bytes": 256 * 1024,
    "error_rate": 0.0,
}


@dataclass
class Baseline:
    """Lower-is-better metrics frozen at one point, as a flat ``{name: value}`` map."""

    metrics: dict[str, float]
    created_at: float = field(default_factory=time.time)
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_monitor(cls, monitor: Monitor, **meta: Any) -> Baseline:
        return cls(monitor.metrics(), meta=dict(meta))

    def save(self, path: str | os.PathLike[str]) -> Path:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        data = {"version": BASELINE_VERSION, **asdict(self)}
        # Write then rename: a crash mid-write must not leave a half baseline that later
        # "validates" everything.
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(target)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Baseline:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"baseline {path}: not found") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"baseline {path}: not valid JSON ({exc})") from None
        if not isinstance(data, dict) or data.get("version") != BASELINE_VERSION:
            raise ConfigError(f"baseline {path}: expected version {BASELINE_VERSION}")
        metrics = data.get("metrics")
        if not isinstance(metrics, dict) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in metrics.values()
        ):
            raise ConfigError(f"baseline {path}: 'metrics' must map names to numbers")
        return cls(
            {str(k): float(v) for k, v in metrics.items()},
            created_at=float(data.get("created_at", 0.0)),
            meta=dict(data.get("meta") or {}),
        )

    def compare(
        self,
        current: Mapping[str, float],
        *,
        tolerance: float = 0.10,
        abs_tolerance: Mapping[str, float] | None = None,
    ) -> list[Regression]:
        """Metrics in ``current`` above ``baseline * (1 + tolerance) + slack``.

        ``slack`` is the absolute tolerance of the metric's suffix (:data:`DEFAULT_ABS_TOLERANCE`
        unless given). Metrics missing on either side are not compared.
        """
        if tolerance < 0 or math.isnan(tolerance):
            raise ConfigError(f"tolerance: expected a fraction >= 0, got {tolerance!r}")
        slack = DEFAULT_ABS_TOLERANCE if abs_tolerance is None else abs_tolerance
        found: list[Regression] = []
        for name, base in sorted(self.metrics.items()):
            if name not in current:
                continue
            value = float(current[name])
            extra = next((s for suffix, s in slack.items() if name.endswith(suffix)), 0.0)
            allowed = base * (1 + tolerance) + extra
            if value > allowed:
                found.append(Regression(name, base, value, allowed))
        return found


class Monitor:
    """Collects operation latencies, pool stats and memory; exports JSON; checks baselines."""

    def __init__(self) -> None:
        self.ops: dict[str, OperationStats] = {}
        self.pools: dict[str, _PoolLike] = {}
        self.rss = RssSampler()
        self.rss_per_connection: dict[str, dict[str, float | int]] = {}
        self.started_at = time.time()
        self.rss.sample()

    # -- recording --------------------------------------------------------------------------
    def stats(self, store: str, operation: str) -> OperationStats:
        key = f"{store}.{operation}"
        found = self.ops.get(key)
        if found is None:
            found = self.ops[key] = OperationStats()
        return found

    def record(
        self, store: str, operation: str, seconds: float, error: BaseException | None = None
    ) -> None:
        """Record an operation timed elsewhere (``error`` set: count it as a failure)."""
        self.stats(store, operation).record(seconds, error)

    @contextlib.asynccontextmanager
    async def track(self, store: str, operation: str) -> AsyncIterator[None]:
        """Time the block; an exception counts as a failure and propagates unchanged.

        Cancellation is not a failure of the store, so it is not counted at all.
        """
        with self.track_sync(store, operation):
            yield

    @contextlib.contextmanager
    def track_sync(self, store: str, operation: str) -> Iterator[None]:
        """:meth:`track` for synchronous code."""
        stats = self.stats(store, operation)
        started = time.perf_counter()
        try:
            yield
        except Exception as exc:
            stats.record(time.perf_counter() - started, exc)
            raise
        stats.record(time.perf_counter() - started)

    def wrap(
        self, store: str, operation: str, fn: Callable[P, Awaitable[T]]
    ) -> Callable[P, Awaitable[T]]:
        """``fn`` (a coroutine function) with every call tracked as ``store.operation``."""

        @functools.wraps(fn)
        async def tracked(*args: P.args, **kwargs: P.kwargs) -> T:
            async with self.track(store, operation):
                return await fn(*args, **kwargs)

        return tracked

    def reset(self) -> None:
        """Forget operations and memory samples (pools stay attached)."""
        self.ops.clear()
        self.rss = RssSampler()
        self.rss.sample()
        self.started_at = time.time()

    # -- pools and memory -------------------------------------------------------------------
    def attach_pools(self, pools: Mapping[str, _PoolLike]) -> None:
        """Pools whose stats go into every snapshot (e.g. ``PoolManager.pools()``)."""
        self.pools.update(pools)

    def sample_memory(self) -> int:
        return self.rss.sample()

    @contextlib.asynccontextmanager
    async def sampling(self, interval: float = 0.5) -> AsyncIterator[None]:
        """Sample RSS every ``interval`` seconds while the block runs (peak RSS needs this)."""
        if interval <= 0:
            raise ConfigError(f"interval: expected seconds > 0, got {interval!r}")

        async def loop() -> None:
            while True:
                self.rss.sample()
                await asyncio.sleep(interval)

        task = asyncio.create_task(loop(), name="tristore-monitor-rss")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self.rss.sample()

    async def measure_rss_per_connection(
        self, name: str, pool: _PoolLike, n: int = 10
    ) -> dict[str, float | int]:
        """RSS delta of opening ``n`` more connections in ``pool``, divided by how many opened.

        The new connections are closed again afterwards (``shrink_idle(force=True)``), so the
        pool ends as it started. Allocator noise makes one connection's delta meaningless: use
        n >= 10 and a pool with room for them (the pool never exceeds its max_size).
        """
        if n < 1:
            raise ConfigError(f"n: expected an int >= 1, got {n!r}")
        gc.collect()
        before = current_rss()
        made = await pool.grow(n)
        gc.collect()
        after = current_rss()
        await pool.shrink_idle(force=True)
        result: dict[str, float | int] = {
            "connections": made,
            "rss_delta_bytes": after - before,
            "rss_per_connection_bytes": (after - before) / made if made else 0.0,
        }
        self.rss_per_connection[name] = result
        return result

    def pool_snapshot(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name, pool in self.pools.items():
            try:
                stats = dict(pool.stats())
            except TristoreError as exc:  # a closed store: report it instead of failing
                out[name] = {"error": str(exc)}
                continue
            made = int(stats.get("connections_num", 0))
            size = int(stats.get("pool_size", 0))
            in_use = size - int(stats.get("pool_available", 0))
            maximum = int(stats.get("pool_max", 0)) or 1
            stats["connect_ms_mean"] = stats.get("connections_ms", 0) / made if made else 0.0
            stats["in_use"] = in_use
            stats["utilization"] = in_use / maximum
            out[name] = stats
        return out

    # -- export -----------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Everything as a JSON-ready dict."""
        self.rss.sample()
        return {
            "started_at": self.started_at,
            "elapsed_s": round(time.time() - self.started_at, 3),
            "operations": {key: stats.summary() for key, stats in sorted(self.ops.items())},
            "pools": self.pool_snapshot(),
            "memory": {
                **self.rss.summary(),
                "per_connection": dict(self.rss_per_connection),
            },
        }

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        text = json.dumps(self.snapshot(), indent=2, sort_keys=True)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text

    def metrics(self) -> dict[str, float]:
        """The flat lower-is-better metrics a :class:`Baseline` stores."""
        out: dict[str, float] = {}
        for key, stats in self.ops.items():
            summary = stats.latency.summary()
            for name in ("p50_ms", "p90_ms", "p99_ms", "max_ms"):
                out[f"{key}.{name}"] = float(summary[name])
            out[f"{key}.error_rate"] = stats.error_rate
        for name, pool in self.pool_snapshot().items():
            if "connect_ms_mean" in pool:
                out[f"pool.{name}.connect_ms"] = float(pool["connect_ms_mean"])
        for name, measured in self.rss_per_connection.items():
            out[f"memory.{name}.rss_per_connection_bytes"] = float(
                measured["rss_per_connection_bytes"]
            )
        out["memory.rss_growth_bytes"] = float(max(self.rss.growth, 0))
        return out

    def compare(
        self,
        baseline: Baseline,
        *,
        tolerance: float = 0.10,
        abs_tolerance: Mapping[str, float] | None = None,
    ) -> list[Regression]:
        """Regressions of the current metrics against ``baseline`` (as :meth:`Baseline.compare`)."""
        return baseline.compare(self.metrics(), tolerance=tolerance, abs_tolerance=abs_tolerance)
