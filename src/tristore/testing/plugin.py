"""pytest plugin (entry point ``tristore``): real stores, isolated per test.

- one embedded ``redis-server`` per session and per xdist worker (each worker is its own process,
  so each gets its own free port and password);
- SQLite and Kuzu files live in the test's own ``tmp_path``, so tests never share rows;
- Redis is flushed before and after each test that uses it (one server per worker, so a flush
  never reaches another worker's keys).

A store that cannot start fails the test at set-up with an error naming the store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tristore.config import Settings
from tristore.errors import TristoreError
from tristore.stores import CacheStore, GraphStore, SQLiteStore
from tristore.testing.setup import Stores, open_stores, store_settings


@pytest.fixture(scope="session")
def tristore_redis_server() -> Iterator[Any]:
    """A throwaway redis-server on loopback for this session (or xdist worker)."""
    from tristore.services import RedisServer

    try:
        server = RedisServer()
        server.start()
    except TristoreError as exc:
        pytest.fail(f"tristore: the redis store could not start: {exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def tristore_settings(tmp_path: Path, tristore_redis_server: Any) -> Settings:
    return store_settings(tmp_path / "stores", tristore_redis_server.url)


async def _opened(store: Any, name: str) -> Any:
    try:
        await store.open()
    except TristoreError as exc:
        pytest.fail(f"tristore: the {name} store could not start: {exc}", pytrace=False)
    return store


@pytest_asyncio.fixture
async def sqlite_store(tristore_settings: Settings) -> AsyncIterator[SQLiteStore]:
    store = await _opened(SQLiteStore(tristore_settings), "sqlite")
    yield store
    await store.close()


@pytest_asyncio.fixture
async def graph_store(tristore_settings: Settings) -> AsyncIterator[GraphStore]:
    store = await _opened(GraphStore(tristore_settings), "graph")
    yield store
    await store.close()


@pytest_asyncio.fixture
async def redis_store(tristore_settings: Settings) -> AsyncIterator[CacheStore]:
    store = await _opened(CacheStore(tristore_settings), "redis")
    await store.execute("FLUSHDB")
    yield store
    await store.execute("FLUSHDB")
    await store.close()


@pytest_asyncio.fixture
async def stores(tristore_settings: Settings) -> AsyncIterator[Stores]:
    try:
        ctx = open_stores(tristore_settings)
        opened = await ctx.__aenter__()
    except TristoreError as exc:
        pytest.fail(f"tristore: a store could not start: {exc}", pytrace=False)
    await opened.cache.execute("FLUSHDB")
    try:
        yield opened
    finally:
        await opened.cache.execute("FLUSHDB")
        await ctx.__aexit__(None, None, None)
