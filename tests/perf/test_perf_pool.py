"""Pool checkout: one uncontended acquire/release of ``tristore.pool.Pool`` (~2 us).

The workload is the registry's ``pool_checkout`` (tristore_bench.workloads), as counted and
tracked in the asv history.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from _perf import measure, workload

pytestmark = pytest.mark.perf

OPS = 500  # checkouts per sample (~1 ms)


@pytest.fixture(scope="module")
def pool_checkout(
    loop: asyncio.AbstractEventLoop, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[], Awaitable[Any]]]:
    yield from workload(loop, "pool_checkout", tmp_path_factory.mktemp("pool"))


def test_pool_checkout(
    benchmark: Any,
    request: pytest.FixtureRequest,
    loop: asyncio.AbstractEventLoop,
    pool_checkout: Callable[[], Awaitable[Any]],
) -> None:
    measure(benchmark, request, loop, pool_checkout, ops=OPS, rounds=600, warmup=20)
