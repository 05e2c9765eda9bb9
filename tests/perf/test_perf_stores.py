"""The stores' hot paths: a SQLite write transaction, a Redis pipeline of 100, a Kuzu read.

Each store is opened once per module on the module's event loop, as an application would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _perf import measure, require

pytestmark = pytest.mark.perf

INSERT = "INSERT INTO perf (v) VALUES (?)"
POINT_LOOKUP = "MATCH (c:Customer) WHERE c.id = $id RETURN c.name"
PIPELINE = [("SET", f"perf:{i}", "v" * 32) for i in range(100)]


@pytest.fixture(scope="module")
def sqlite(
    loop: asyncio.AbstractEventLoop, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    stores = require("tristore.stores", "SQLiteStore")
    setup = require("tristore.testing.setup", "store_settings")
    # No domain schema: one small table keeps the measurement on the write path itself, and
    # independent of schema changes between the two revisions compared.
    store = stores.SQLiteStore(
        setup.store_settings(tmp_path_factory.mktemp("sqlite")), apply_schema=False
    )
    loop.run_until_complete(store.open())
    loop.run_until_complete(
        store.execute("CREATE TABLE perf (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    )
    yield store
    loop.run_until_complete(store.close())


@pytest.fixture(scope="module")
def cache(
    loop: asyncio.AbstractEventLoop, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    stores = require("tristore.stores", "CacheStore")
    setup = require("tristore.testing.setup", "store_settings")
    store = stores.CacheStore(setup.store_settings(tmp_path_factory.mktemp("redis"), redis_url))
    loop.run_until_complete(store.open())
    loop.run_until_complete(store.execute("FLUSHDB"))
    yield store
    loop.run_until_complete(store.close())


@pytest.fixture(scope="module")
def graph(
    loop: asyncio.AbstractEventLoop, seeded_graph: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    stores = require("tristore.stores", "GraphStore")
    files = seeded_graph.copy_to(Path(tmp_path_factory.mktemp("graph")))
    store = stores.GraphStore(files.settings(), apply_schema=False)
    loop.run_until_complete(store.open())
    yield store
    loop.run_until_complete(store.close())


def test_sqlite_write(
    benchmark: Any, request: pytest.FixtureRequest, loop: asyncio.AbstractEventLoop, sqlite: Any
) -> None:
    """One single-row INSERT transaction (BEGIN IMMEDIATE .. COMMIT on the writer lane)."""
    measure(benchmark, request, loop, lambda: sqlite.execute(INSERT, ("x",)), ops=10, rounds=600)


def test_redis_pipeline(
    benchmark: Any, request: pytest.FixtureRequest, loop: asyncio.AbstractEventLoop, cache: Any
) -> None:
    """100 SETs sent as one pipeline (no MULTI)."""
    measure(benchmark, request, loop, lambda: cache.pipeline(PIPELINE), ops=1, rounds=300)


def test_kuzu_read(
    benchmark: Any, request: pytest.FixtureRequest, loop: asyncio.AbstractEventLoop, graph: Any
) -> None:
    """A parameterized point lookup on the small seeded graph, via the reader pool."""
    rows = loop.run_until_complete(graph.query_rows(POINT_LOOKUP, {"id": 42}))
    assert len(rows) == 1  # the lookup finds its node: a broken query must not look fast
    lookup = lambda: graph.query_rows(POINT_LOOKUP, {"id": 42})  # noqa: E731
    measure(benchmark, request, loop, lookup, ops=2, rounds=400)
