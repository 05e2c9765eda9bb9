from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from tristore.config import Settings
from tristore.errors import QueryError, StoreUnavailable, ValueTooLarge
from tristore.stores import CacheStore
from tristore.testing import store_settings


async def test_round_trips(redis_store: CacheStore) -> None:
    assert await redis_store.set("k", "v")
    assert await redis_store.get("k") == b"v"
    assert await redis_store.delete("k") == 1
    assert await redis_store.get("k") is None


async def test_pipeline_batches_and_transaction(redis_store: CacheStore) -> None:
    results = await redis_store.pipeline([("INCR", "n") for _ in range(250)])
    assert results == list(range(1, 251))
    multi = await redis_store.pipeline([("SET", "a", "1"), ("INCR", "a")], transaction=True)
    assert multi == [True, 2]


async def test_wrong_type_and_bad_command_are_query_errors(redis_store: CacheStore) -> None:
    await redis_store.set("s", "text")
    with pytest.raises(QueryError, match="WRONGTYPE"):
        await redis_store.execute("LPUSH", "s", "x")
    with pytest.raises(QueryError):
        await redis_store.set("d", {"a": 1})  # type: ignore[arg-type]
    with pytest.raises(QueryError):
        await redis_store.execute("NOSUCHCOMMAND")


async def test_oversized_value(tristore_settings: Settings) -> None:
    settings = tristore_settings.replace(redis={"max_value_bytes": 100})
    async with CacheStore(settings) as cache:
        with pytest.raises(ValueTooLarge):
            await cache.set("big", b"x" * 101)
        assert await cache.get("big") is None


async def test_dead_server_fails_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from redis.asyncio.connection import Connection

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # A spy, not a mock: the real connect runs. Fast means one socket connect per connection,
    # not redis-py's default retries (~4.7 s here); a count, so a loaded machine cannot fail it.
    attempts: list[int] = []
    real_connect = Connection._connect

    async def counted(self: Connection) -> None:
        attempts.append(port)
        await real_connect(self)

    monkeypatch.setattr(Connection, "_connect", counted)
    settings = store_settings(tmp_path, f"redis://127.0.0.1:{port}/0", redis={"pool_min": 1})
    with pytest.raises(StoreUnavailable, match="cannot reach redis"):
        await CacheStore(settings).open()
    assert attempts == [port]


async def test_dead_server_fails_every_waiter_with_one_attempt_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pool_max=2 and three concurrent requests: the third queues behind two connects that fail.
    # Each request must get its own fast StoreUnavailable (one connect attempt each), never a
    # PoolTimeout after waiting out the acquire timeout, and no retry loop against the dead port.
    import asyncio
    import socket

    from redis.asyncio.connection import Connection

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    attempts: list[int] = []
    real_connect = Connection._connect

    async def counted(self: Connection) -> None:
        attempts.append(port)
        await real_connect(self)

    monkeypatch.setattr(Connection, "_connect", counted)
    settings = store_settings(
        tmp_path,
        f"redis://127.0.0.1:{port}/0",
        redis={"pool_min": 0, "pool_max": 2, "socket_timeout_s": 30},
    )
    cache = CacheStore(settings)
    await cache.open()
    try:
        results = await asyncio.wait_for(
            asyncio.gather(*(cache.get(f"k{i}") for i in range(3)), return_exceptions=True), 60
        )
    finally:
        await cache.close()
    assert [type(r) for r in results] == [StoreUnavailable] * 3, results
    assert len(attempts) == 3


async def test_embedded_server_started_and_stopped(tmp_path: Path) -> None:
    settings = store_settings(tmp_path)  # no URL: tristore starts its own server
    cache = CacheStore(settings)
    await cache.open()
    server = cache.server
    assert server is not None
    pid = server.pid
    assert await cache.set("x", "1")
    assert (await cache.effective_settings())["embedded"] is True
    assert server.password not in str(await cache.effective_settings())
    await cache.close()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


async def test_cluster_mode_on_an_embedded_three_node_cluster(tmp_path: Path) -> None:
    settings = store_settings(tmp_path, redis={"cluster": True, "pool_min": 1, "pool_max": 4})
    async with CacheStore(settings) as cache:
        assert cache.server is not None and len(cache.server.nodes) == 3
        # Keys spread over the slots of all three masters.
        for i in range(30):
            assert await cache.set(f"key:{i}", str(i))
        assert [await cache.get(f"key:{i}") for i in range(30)] == [
            str(i).encode() for i in range(30)
        ]
        # Multi-key commands need one slot: hash tags put both keys there.
        assert await cache.execute("MSET", "{user:1}:a", "1", "{user:1}:b", "2")
        assert await cache.execute("MGET", "{user:1}:a", "{user:1}:b") == [b"1", b"2"]
        assert (await cache.version()).count(".") == 2
        stats = cache.stats()
        assert stats["pool_size"] <= 4 and stats["requests_errors"] == 0
