"""pytest plugin (entry point ``tristore``): the real stores, isolated per test.

Fixtures: ``sqlite_store``, ``graph_store``, ``redis_store``, ``stores`` (all three, sharing one
data directory), ``factory`` / ``graph_factory`` (:mod:`tristore.testing.factories`), and the
plumbing they stand on: ``tristore_redis_server``, ``tristore_templates``, ``tristore_overrides``,
``tristore_data_dir``, ``tristore_settings``. Each store fixture sets up only its own store: a
test of SQLite alone neither starts Redis nor opens Kuzu.

Isolation, per store:

- SQLite: each test gets its own copy of an empty template file (the schema applied once per
  session) and a real :class:`~tristore.stores.SQLiteStore` on it. Why a copy and not an outer
  transaction rolled back at teardown with SAVEPOINTs for nesting: the store's pools belong to the
  test's event loop, so the store is reopened per test either way (~4 ms), and the copy then costs
  only ~0.1 ms more than a BEGIN/ROLLBACK. In exchange the test sees the store exactly as
  production runs it: commits are real and visible to the reader connections (under a rolled-back
  outer transaction readers would see nothing, so reads would have to be rerouted through the
  writer), readers stay ``query_only``, a cancelled ``transaction()`` really rolls back, and code
  that treats a SQLite commit as durable (the coordinator's intent log and its recovery) can be
  tested at all.
- Kuzu: the same, a copy of an empty template database. Kuzu has no nested transactions and its
  writer lane commits each write, so a rollback scheme is not available; the copy opens in ~6 ms.
- Redis: one ``redis-server`` per session and per xdist worker (its own free port, password and
  process), flushed (``FLUSHALL``) before and after every test that uses it. Tests within one
  worker run one at a time, so a flush never reaches a running test's keys.

Under pytest-xdist every worker is its own process with its own session fixtures: its own
Redis port, its own template directory and ``tmp_path`` tree.

A store that cannot start fails the test at set-up with ``tristore: the <store> store could not
start: <why>`` instead of hanging; a session-wide failure (no redis-server binary) is reported once
per test but attempted only once.

The fixtures are ``pytest_asyncio`` fixtures without a fixed loop scope: they run on the loop
pytest-asyncio gives the test, in strict and auto mode alike.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest

from tristore.config import Settings
from tristore.errors import ConfigError
from tristore.stores import CacheStore, GraphStore, SQLiteStore
from tristore.testing.factories import Factory, GraphFactory
from tristore.testing.setup import Stores, StoreTemplates, store_settings

try:
    import pytest_asyncio
except ImportError:  # tristore installed without its test extras: pytest must still start
    pytest_asyncio = None

F = TypeVar("F", bound=Callable[..., Any])

# Settings the plugin owns: each test's files live in its own directory, and Redis is the
# session's standalone server. Overriding them would make tests share state.
_OWNED = {"sqlite": {"path"}, "graph": {"path"}, "redis": {"url", "cluster"}}


def _setup_error(message: str) -> NoReturn:
    """Fail the test at set-up with ``message`` alone: no traceback, no chained driver errors
    (the message already carries their text), so the report says what broke and nothing else."""
    raise pytest.fail.Exception(f"tristore: {message}", pytrace=False) from None


def _fail(store: str, exc: BaseException) -> NoReturn:
    _setup_error(f"the {store} store could not start: {exc}")


def _settings(data_dir: Path, overrides: dict[str, Any], redis_url: str = "") -> Settings:
    """The test's settings: rooted in its own directory, with ``tristore_overrides`` applied."""
    owned: list[str] = []
    for section, values in overrides.items():
        if section == "data_dir":
            owned.append(section)
        elif isinstance(values, dict):
            owned += [f"{section}.{k}" for k in sorted(_OWNED.get(section, set()) & values.keys())]
    if owned:
        _setup_error(
            f"tristore_overrides may not set {', '.join(owned)} (the plugin gives each test "
            "its own files and the session's Redis)"
        )
    try:
        return store_settings(data_dir, redis_url, **overrides)
    except (ConfigError, TypeError) as exc:
        _setup_error(f"bad tristore_overrides: {exc}")


def _async_fixture(fn: F) -> F:
    """``pytest_asyncio.fixture``, or without pytest-asyncio a fixture that says what is missing.

    This module is loaded by every pytest run in an environment where tristore is installed, so
    a missing pytest-asyncio must not break pytest itself, only the tests that need the stores.
    """
    if pytest_asyncio is not None:
        return pytest_asyncio.fixture(fn)  # type: ignore[no-any-return]

    @pytest.fixture(name=fn.__name__)
    def needs_pytest_asyncio() -> None:
        _setup_error(f"{fn.__name__} needs pytest-asyncio: pip install pytest-asyncio")

    return needs_pytest_asyncio  # type: ignore[return-value]


# --- session-wide --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tristore_redis_server() -> Iterator[Any]:
    """A throwaway redis-server on loopback for this session (or xdist worker)."""
    from tristore.services import RedisServer

    try:
        server = RedisServer()
        server.start()
    except Exception as exc:
        _fail("redis", exc)
    yield server
    server.stop()


class _Flusher:
    """Empties the session's Redis with a synchronous client of its own.

    Independent of the test's event loop and pools, so it works even after a test closed or broke
    its store. The socket is closed after every flush: a test that counts the server's clients
    (``CLIENT LIST``) must see only its own connections.
    """

    def __init__(self, url: str) -> None:
        import redis

        # Created once: redis-py resolves its driver info per Connection object (~1 ms).
        self._client = redis.Redis.from_url(url, socket_timeout=5.0, retry=None)

    def flush(self) -> None:
        import redis

        try:
            self._client.flushall()
        except redis.RedisError as exc:
            # Typically a test stopped the session's server; every later test would inherit it.
            _setup_error(f"could not empty the session's redis-server between tests: {exc}")
        finally:
            self._client.connection_pool.disconnect()

    def close(self) -> None:
        self._client.close()


@pytest.fixture(scope="session")
def _tristore_redis_flusher(tristore_redis_server: Any) -> Iterator[_Flusher]:
    flusher = _Flusher(tristore_redis_server.url)
    yield flusher
    flusher.close()


@pytest.fixture(scope="session")
def tristore_templates(tmp_path_factory: pytest.TempPathFactory) -> StoreTemplates:
    """Empty SQLite and graph databases with the schema, built on first use, copied per test."""
    return StoreTemplates(tmp_path_factory.mktemp("tristore-templates"))


# --- per test ------------------------------------------------------------------------------------


@pytest.fixture
def tristore_overrides() -> dict[str, Any]:
    """Settings overrides for the test's stores, as for ``Settings.replace``.

    Override this fixture (any scope) to change them, e.g. in a ``conftest.py``::

        @pytest.fixture
        def tristore_overrides():
            return {"sqlite": {"readers": 2}, "graph": {"buffer_pool_bytes": 64 * 2**20}}
    """
    return {}


@pytest.fixture
def tristore_data_dir(tmp_path: Path) -> Path:
    """Where this test's store files live (inside its ``tmp_path``)."""
    path = tmp_path / "tristore"
    path.mkdir()
    return path


@pytest.fixture
def tristore_settings(
    tristore_data_dir: Path,
    tristore_overrides: dict[str, Any],
    tristore_redis_server: Any,
    _tristore_redis_flusher: _Flusher,
) -> Iterator[Settings]:
    """Settings for this test: its own files, the session's Redis (flushed before and after)."""
    settings = _settings(tristore_data_dir, tristore_overrides, tristore_redis_server.url)
    # Before as well as after: a test that wrote through the server's URL without this fixture
    # must not leak keys into the next one.
    _tristore_redis_flusher.flush()
    yield settings
    _tristore_redis_flusher.flush()


@_async_fixture
async def sqlite_store(
    tristore_data_dir: Path,
    tristore_overrides: dict[str, Any],
    tristore_templates: StoreTemplates,
) -> AsyncIterator[SQLiteStore]:
    """An open SQLiteStore on a private copy of the empty schema."""
    settings = _settings(tristore_data_dir, tristore_overrides)
    try:
        tristore_templates.copy_sqlite(settings)
        store = SQLiteStore(settings, apply_schema=False)
        await store.open()
    except Exception as exc:
        _fail("sqlite", exc)
    try:
        yield store
    finally:
        await store.close()


@_async_fixture
async def graph_store(
    tristore_data_dir: Path,
    tristore_overrides: dict[str, Any],
    tristore_templates: StoreTemplates,
) -> AsyncIterator[GraphStore]:
    """An open GraphStore on a private copy of the empty graph schema."""
    settings = _settings(tristore_data_dir, tristore_overrides)
    try:
        tristore_templates.copy_graph(settings)
        store = GraphStore(settings, apply_schema=False)
        await store.open()
    except Exception as exc:
        _fail("graph", exc)
    try:
        yield store
    finally:
        await store.close()


@_async_fixture
async def redis_store(tristore_settings: Settings) -> AsyncIterator[CacheStore]:
    """An open CacheStore on the session's redis-server, empty at the start of the test."""
    try:
        store = CacheStore(tristore_settings)
        await store.open()
    except Exception as exc:
        _fail("redis", exc)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def stores(
    sqlite_store: SQLiteStore,
    graph_store: GraphStore,
    redis_store: CacheStore,
    tristore_settings: Settings,
) -> Stores:
    """The three stores of this test (the same objects as the single-store fixtures)."""
    return Stores(sqlite_store, graph_store, redis_store, tristore_settings)


def _seed(request: pytest.FixtureRequest) -> int:
    # Stable per test and independent of test order: the same test always gets the same rows.
    return zlib.crc32(request.node.nodeid.encode())


@pytest.fixture
def factory(sqlite_store: SQLiteStore, request: pytest.FixtureRequest) -> Factory:
    """Domain rows in ``sqlite_store``; ``Factory(stores.sqlite, graph=stores.graph)`` mirrors."""
    return Factory(sqlite_store, seed=_seed(request))


@pytest.fixture
def graph_factory(graph_store: GraphStore, request: pytest.FixtureRequest) -> GraphFactory:
    """Nodes and edges in ``graph_store`` alone."""
    return GraphFactory(graph_store, seed=_seed(request))


@_async_fixture
async def coordinator(stores: Stores) -> AsyncIterator[Any]:
    """An open :class:`tristore.coordinator.Coordinator` over ``stores`` (no periodic sweep:
    a test that wants recovery calls ``await coordinator.recover()`` when it chooses)."""
    from tristore.coordinator import Coordinator
    from tristore.errors import TristoreError

    coord = Coordinator.for_stores(stores, recovery_interval=None)
    try:
        await coord.open()
    except TristoreError as exc:
        _fail("coordinator", exc)
    yield coord
    await coord.close()
