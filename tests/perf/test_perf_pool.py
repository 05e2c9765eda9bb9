"""Pool checkout: one uncontended acquire/release of ``tristore.pool.Pool`` (~2 us)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from _perf import measure, require

pytestmark = pytest.mark.perf

OPS = 500  # checkouts per sample (~1 ms)


@pytest.fixture(scope="module")
def pool(loop: asyncio.AbstractEventLoop) -> Iterator[Any]:
    mod = require("tristore.pool", "Pool", "PoolConfig")
    floor = require("tristore.testing.floor", "NullConnector")
    pool = mod.Pool(floor.NullConnector("perf"), mod.PoolConfig(min_size=1, max_size=1))
    loop.run_until_complete(pool.open())
    yield pool
    loop.run_until_complete(pool.close())


def test_pool_checkout(
    benchmark: Any, request: pytest.FixtureRequest, loop: asyncio.AbstractEventLoop, pool: Any
) -> None:
    async def checkout() -> None:
        async with pool.acquire():
            pass

    measure(benchmark, request, loop, checkout, ops=OPS, rounds=600, warmup=20)
