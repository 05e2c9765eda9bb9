"""The stores' hot paths: a SQLite write transaction, a Redis pipeline of 100, a Kuzu read.

Each is the registry's workload (tristore_bench.workloads), opened once per module on the
module's event loop, as an application would.
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
def sqlite_write(
    loop: asyncio.AbstractEventLoop, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Op]:
    yield from workload(loop, "sqlite_write", tmp_path_factory.mktemp("sqlite"))


@pytest.fixture(scope="module")
def redis_pipeline(
    loop: asyncio.AbstractEventLoop, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Op]:
    yield from workload(loop, "redis_pipeline", tmp_path_factory.mktemp("redis"), redis_url)


@pytest.fixture(scope="module")
def graph_point_read(
    loop: asyncio.AbstractEventLoop, seeded_graph: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Op]:
    files = seeded_graph.copy_to(Path(tmp_path_factory.mktemp("graph")))
    yield from workload(loop, "graph_point_read", files.directory)


def test_sqlite_write(
    benchmark: Any,
    request: pytest.FixtureRequest,
    loop: asyncio.AbstractEventLoop,
    sqlite_write: Op,
) -> None:
    """One single-row INSERT transaction (BEGIN IMMEDIATE .. COMMIT on the writer lane)."""
    measure(benchmark, request, loop, sqlite_write, ops=10, rounds=600)


def test_redis_pipeline(
    benchmark: Any,
    request: pytest.FixtureRequest,
    loop: asyncio.AbstractEventLoop,
    redis_pipeline: Op,
) -> None:
    """100 SETs sent as one pipeline (no MULTI)."""
    measure(benchmark, request, loop, redis_pipeline, ops=1, rounds=300)


def test_kuzu_read(
    benchmark: Any,
    request: pytest.FixtureRequest,
    loop: asyncio.AbstractEventLoop,
    graph_point_read: Op,
) -> None:
    """A parameterized point lookup on the small seeded graph, via the reader pool."""
    measure(benchmark, request, loop, graph_point_read, ops=2, rounds=400)
