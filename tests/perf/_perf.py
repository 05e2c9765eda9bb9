"""Helpers shared by the perf modules (imported as ``_perf``: pytest puts this directory on
``sys.path``, and a relative import from conftest would need a package here)."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

#: Samples per benchmark are multiplied by this option (tests of the gate itself use less).
SCALE_OPTION = "--perf-scale"


def require(module: str, *names: str) -> Any:
    """Import ``module`` from the library under test; skip if it (or one of ``names``) is absent."""
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        pytest.skip(f"{module} is not available in the library under test ({exc})")
    for name in names:
        if not hasattr(mod, name):
            pytest.skip(f"{module}.{name} is not available in the library under test")
    return mod


def samples(request: pytest.FixtureRequest, base: int) -> int:
    """``base`` samples scaled by --perf-scale (at least 10: the gate takes quantiles)."""
    return max(10, round(base * float(request.config.getoption(SCALE_OPTION))))


def batch(
    loop: asyncio.AbstractEventLoop, ops: int, op: Callable[[], Awaitable[Any]]
) -> Callable[[], None]:
    """A callable running ``ops`` awaits of ``op()`` in one ``run_until_complete``."""

    async def many() -> None:
        for _ in range(ops):
            await op()

    def run() -> None:
        loop.run_until_complete(many())

    return run


def measure(
    benchmark: Any,
    request: pytest.FixtureRequest,
    loop: asyncio.AbstractEventLoop,
    op: Callable[[], Awaitable[Any]],
    *,
    ops: int,
    rounds: int,
    warmup: int = 10,
) -> None:
    """Benchmark ``rounds`` samples of ``ops`` operations each; the gate divides by ``ops``."""
    benchmark.extra_info["ops"] = ops
    benchmark.pedantic(
        batch(loop, ops, op), rounds=samples(request, rounds), iterations=1, warmup_rounds=warmup
    )


def workload(
    loop: asyncio.AbstractEventLoop, name: str, data_dir: Path, redis_url: str = ""
) -> Iterator[Callable[[], Awaitable[Any]]]:
    """Yield the operation of the registry's workload ``name`` (tristore_bench.workloads), opened
    on ``loop`` in ``data_dir``; skip when the library under test lacks what it uses."""
    workloads = pytest.importorskip("tristore_bench.workloads")
    lacking = workloads.missing(name)
    if lacking is not None:
        pytest.skip(f"{name}: {lacking} in the library under test")
    opened = workloads.open_workload(name, workloads.Context(str(data_dir), redis_url=redis_url))
    op = loop.run_until_complete(opened.__aenter__())
    try:
        yield op
    finally:
        loop.run_until_complete(opened.__aexit__(None, None, None))
