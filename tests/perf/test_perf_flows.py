"""Cross-store paths: one coordinated transaction, and one order through the production flow.

Both are the registry's workloads (tristore_bench.workloads). They need APIs newer than the
stores (tristore.coordinator, tristore.flows): on a base revision without them these benchmarks
are skipped, and the gate reports them as new.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _perf import measure, workload

pytestmark = pytest.mark.perf

Op = Callable[[], Awaitable[Any]]


@pytest.fixture(scope="module")
def coordinated_tx(
    loop: asyncio.AbstractEventLoop, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Op]:
    yield from workload(loop, "coordinated_tx", tmp_path_factory.mktemp("coordinated"), redis_url)


@pytest.fixture(scope="module")
def order_flow(
    loop: asyncio.AbstractEventLoop,
    redis_url: str,
    seeded_graph: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Op]:
    files = seeded_graph.copy_to(Path(tmp_path_factory.mktemp("flow")))
    yield from workload(loop, "order_flow", files.directory, redis_url)


def test_coordinated_tx(
    benchmark: Any,
    request: pytest.FixtureRequest,
    loop: asyncio.AbstractEventLoop,
    coordinated_tx: Op,
) -> None:
    """One transaction over the three stores: 2 rows, 2 graph ops, 2 cache ops."""
    measure(benchmark, request, loop, coordinated_tx, ops=2, rounds=150)


def test_order_flow(
    benchmark: Any, request: pytest.FixtureRequest, loop: asyncio.AbstractEventLoop, order_flow: Op
) -> None:
    """One order placed: SQLite transaction, graph update, analytics cache, change events."""
    measure(benchmark, request, loop, order_flow, ops=1, rounds=200)
