"""One socket per pooled Redis client: single commands, pipelines and WATCH share it, in turn.

Real redis-server (the plugin's session server). Which socket a command ran on is read from the
server (``CLIENT ID``), not from redis-py's objects.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.exceptions as rexc

from tristore.errors import QueryError, ValueTooLarge
from tristore.stores import CacheStore
from tristore.testing import store_settings


async def test_pipelines_run_on_the_checked_out_socket(redis_store: CacheStore) -> None:
    async with redis_store.client() as conn:
        own = await conn.client_id()
        pipe = conn.pipeline(transaction=False)
        pipe.client_id()
        pipe.set("p", "1")
        assert await pipe.execute() == [own, True]
        multi = conn.pipeline(transaction=True)
        multi.client_id()
        multi.incr("p")
        assert await multi.execute() == [own, 2]
        assert await conn.client_id() == own  # the socket was given back, not replaced


async def test_concurrent_commands_and_pipelines_on_one_checkout_take_turns(
    redis_store: CacheStore,
) -> None:
    async with redis_store.client() as conn:
        own = await conn.client_id()

        async def piped(i: int) -> list[object]:
            pipe = conn.pipeline(transaction=False)
            pipe.set(f"c{i}", i)
            pipe.get(f"c{i}")
            pipe.client_id()
            return list(await pipe.execute())

        async def single(i: int) -> bytes | None:
            await conn.set(f"s{i}", i)
            return await conn.get(f"s{i}")

        results = await asyncio.gather(
            *(piped(i) for i in range(20)), *(single(i) for i in range(20))
        )
        # Every reply reached the request it answers: nothing interleaved on the socket.
        assert results[:20] == [[True, str(i).encode(), own] for i in range(20)]
        assert results[20:] == [str(i).encode() for i in range(20)]


async def test_watch_holds_the_socket_until_the_pipeline_resets(redis_store: CacheStore) -> None:
    async with redis_store.client() as conn:
        own = await conn.client_id()
        await conn.set("w", "1")
        async with conn.pipeline(transaction=True) as pipe:
            await pipe.watch("w")  # immediate: takes the socket now
            assert await pipe.get("w") == b"1"
            pipe.multi()
            pipe.incr("w")
            pipe.client_id()
            assert await pipe.execute() == [2, own]
        assert await conn.get("w") == b"2"  # the client has its socket back

        pipe = conn.pipeline(transaction=True)
        await pipe.watch("w")
        await pipe.reset()  # abandoned without execute(): UNWATCH, then given back
        assert await conn.client_id() == own


async def test_a_failed_pipeline_gives_the_socket_back(redis_store: CacheStore) -> None:
    async with redis_store.client() as conn:
        await conn.set("str", "text")
        pipe = conn.pipeline(transaction=False)
        pipe.incr("str")
        with pytest.raises(rexc.ResponseError):
            await pipe.execute()
        assert await conn.ping()
    with pytest.raises(QueryError, match="not an integer"):
        await redis_store.pipeline([("SET", "n", "1"), ("INCR", "str")])
    assert await redis_store.get("n") == b"1"
    assert redis_store.stats()["pool_size"] == redis_store.stats()["pool_available"]


async def test_a_cancelled_pipeline_leaks_no_socket(redis_store: CacheStore) -> None:
    for delay in (0, 0.0005, 0.002):
        task = asyncio.create_task(
            redis_store.pipeline([("SET", f"x{i}", "v") for i in range(500)])
        )
        await asyncio.sleep(delay)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    # The pool discards a connection cancelled mid-command; the others still answer in order.
    assert await redis_store.pipeline([("SET", "after", "1"), ("GET", "after")]) == [True, b"1"]
    await asyncio.sleep(0)  # let the pool's background closes run
    async with redis_store.client() as conn:
        assert await conn.ping()


async def test_value_checks_measure_whatever_might_be_over_the_limit(tmp_path: Path) -> None:
    # 40 bytes: text of up to 10 characters passes unmeasured, anything longer is measured.
    settings = store_settings(tmp_path, "", redis={"max_value_bytes": 40})
    async with CacheStore(settings) as cache:
        assert await cache.set("k", "x" * 40)  # 40 characters, measured, fits
        assert await cache.set("k", "€" * 13)  # 39 bytes
        assert await cache.pipeline([("SET", "a", "€" * 10), ("SET", "b", b"y" * 40)]) == [
            True,
            True,
        ]
        for value in ("x" * 41, "€" * 14, b"y" * 41, ["z" * 41]):
            with pytest.raises(ValueTooLarge):
                await cache.execute("SET", "k", value)
            with pytest.raises(ValueTooLarge):
                await cache.pipeline([("SET", "ok", "1"), ("SET", "k", value)])
        assert await cache.get("ok") is None  # a rejected pipeline sent nothing
        assert await cache.execute("SET", "n", 7) is True  # not text: measured, fits
