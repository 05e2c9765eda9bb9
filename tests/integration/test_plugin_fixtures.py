"""The plugin's fixtures: what each one gives a test, and how the stores are isolated."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tristore.config import Settings
from tristore.errors import QueryError
from tristore.stores import CacheStore, GraphStore, SQLiteStore
from tristore.testing import Stores, StoreTemplates
from tristore.testing.plugin import _settings


async def test_sqlite_store_is_the_real_store_on_a_private_copy(
    sqlite_store: SQLiteStore, tmp_path: Path, tristore_templates: StoreTemplates
) -> None:
    assert sqlite_store.path.is_relative_to(tmp_path)
    effective = await sqlite_store.effective_settings()
    assert isinstance(effective.pop("wal_bytes"), int)  # the WAL's size now, for doctor
    assert effective == {
        "journal_mode": "WAL",
        "busy_timeout_ms": 30_000,
        "cache_size": 10_000,
        "writer_cache_size": 2_000,
        "synchronous": "NORMAL",
        "foreign_keys": True,
        # Inline writes: the writer connection itself never waits (SQLITE_BUSY goes to the
        # writer thread, which waits busy_timeout_ms), and checkpoints run in the background.
        "writer_busy_timeout_ms": 0,
        "wal_autocheckpoint": 0,
        "write_path": "inline",
        "inline_max_steps": 20_000,
        "checkpoint": "background PASSIVE past 4194304 WAL bytes",
    }
    # The schema is there (reference rows included), the business tables are empty.
    assert await sqlite_store.fetchall("SELECT tier FROM pricing_tiers ORDER BY tier") == [
        ("gold",),
        ("silver",),
        ("standard",),
    ]
    assert await sqlite_store.fetchone("SELECT count(*) FROM customers") == (0,)
    # Readers are the production readers: query_only, and they see the writer's commits.
    with pytest.raises(QueryError, match="readonly|query_only|attempt to write"):
        await sqlite_store.fetchall("DELETE FROM customers")
    await sqlite_store.execute(
        "INSERT INTO customers (email, name, country) VALUES ('a@example.com', 'A', 'GB')"
    )
    assert await sqlite_store.fetchone("SELECT count(*) FROM customers") == (1,)
    # ... and the write went to the test's copy, never to the template.
    template = sqlite3.connect(tristore_templates.sqlite_template())
    try:
        assert template.execute("SELECT count(*) FROM customers").fetchone() == (0,)
    finally:
        template.close()


async def test_graph_store_has_the_schema_on_a_private_copy(
    graph_store: GraphStore, tmp_path: Path
) -> None:
    assert graph_store.path.is_relative_to(tmp_path)
    tables = await graph_store.query_rows("CALL show_tables() RETURN name ORDER BY name")
    assert [t[0] for t in tables] == ["Customer", "FOLLOWS", "PURCHASED", "Product", "VIEWED"]
    assert await graph_store.query_rows("MATCH (n) RETURN count(n)") == [[0]]
    await graph_store.execute("CREATE (:Customer {id: 1, name: 'A', tier: 'gold'})")
    assert await graph_store.query_rows("MATCH (n) RETURN count(n)") == [[1]]


async def test_redis_store_is_the_sessions_server_and_starts_empty(
    redis_store: CacheStore, tristore_redis_server: Any
) -> None:
    assert redis_store.where == f"127.0.0.1:{tristore_redis_server.port}"
    assert redis_store.server is None  # the session's server, not one of its own
    assert await redis_store.execute("DBSIZE") == 0
    await redis_store.set("left:behind", "1")


async def test_redis_is_flushed_between_tests(redis_store: CacheStore) -> None:
    # Runs after the test above (file order); with random order it still holds trivially.
    assert await redis_store.get("left:behind") is None


async def test_stores_are_the_single_store_fixtures(
    stores: Stores,
    sqlite_store: SQLiteStore,
    graph_store: GraphStore,
    redis_store: CacheStore,
    tristore_settings: Settings,
    tristore_data_dir: Path,
) -> None:
    assert stores.sqlite is sqlite_store and stores.graph is graph_store
    assert stores.cache is redis_store and stores.settings is tristore_settings
    assert stores.sqlite.path.parent == stores.graph.path.parent == tristore_data_dir
    assert tristore_settings.redis.url.startswith("redis://")


class TestOverrides:
    """``tristore_overrides`` overridden for the tests of this class only."""

    @pytest.fixture
    def tristore_overrides(self) -> dict[str, Any]:
        return {
            "sqlite": {"readers": 2, "cache_size": 5_000},
            "graph": {"readers": 1},
            "redis": {"pool_max": 5},
        }

    async def test_overrides_reach_every_store(self, stores: Stores) -> None:
        assert stores.sqlite.settings.sqlite.readers == 2
        assert (await stores.sqlite.effective_settings())["cache_size"] == 5_000
        assert stores.graph.settings.graph.readers == 1
        assert stores.cache.stats()["pool_max"] == 5


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"sqlite": {"path": "/tmp/shared.db"}}, "may not set sqlite.path"),
        ({"redis": {"url": "redis://elsewhere"}}, "may not set redis.url"),
        ({"data_dir": "/tmp"}, "may not set data_dir"),
        ({"sqlite": {"readers": "many"}}, "bad tristore_overrides: sqlite.readers"),
        ({"sqlite": {"no_such_key": 1}}, "unknown key"),
    ],
)
def test_bad_overrides_fail_with_a_clear_message(
    tmp_path: Path, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(pytest.fail.Exception, match=message):
        _settings(tmp_path, overrides)


def test_a_template_that_cannot_be_built_fails_every_request_at_once(tmp_path: Path) -> None:
    blocker = tmp_path / "templates"
    blocker.write_text("a file where the template directory should be")
    templates = StoreTemplates(blocker)
    with pytest.raises(OSError) as first:
        templates.sqlite_template()
    with pytest.raises(OSError) as second:
        templates.sqlite_template()
    assert second.value is first.value  # not rebuilt per test
