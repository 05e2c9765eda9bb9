"""Unit tests of the pool's logic, with an in-test connector whose connections are plain objects.

The real-store pools (SQLite, graph, Redis) are tested separately; here every connector call is
instant or a controlled sleep, so the tests can drive races, limits and timeouts precisely. The
behaviours restated from psycopg_pool's and asyncpg's own test suites (close, timeouts, queueing,
cancellation, health, stats) are in test_pool_peers.py, each naming the peer test.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from typing import Any

import pytest

from tristore.errors import (
    ConfigError,
    PoolClosed,
    PoolError,
    PoolTimeout,
    StoreUnavailable,
)
from tristore.pool import Pool, PoolConfig, PoolConfigError

# -- the in-test connector -------------------------------------------------------------------


class FakeConn:
    def __init__(self, ident: int) -> None:
        self.id = ident
        self.closed = False
        self.broken = False  # check() raises
        self.dirty = False  # reset() returns False
        self.tainted = False  # set by a test body while "mid-transaction"

    def __repr__(self) -> str:
        return f"<FakeConn {self.id}>"


class FakeConnector:
    store = "fake"

    def __init__(
        self,
        *,
        connect_delay: float = 0.0,
        fail: int = 0,
        hang: bool = False,
        close_raises: bool = False,
    ) -> None:
        self.connect_delay = connect_delay
        self.fail = fail  # the next `fail` connects raise
        self.hang = hang
        self.close_raises = close_raises
        self.attempts = 0  # connect() calls, failed ones included
        self.made = 0
        self.open = 0  # connections made and not yet closed
        self.peak_open = 0
        self.closed: list[FakeConn] = []
        self.resets = 0

    async def connect(self) -> FakeConn:
        self.attempts += 1
        if self.hang:
            await asyncio.sleep(3600)
        if self.connect_delay:
            await asyncio.sleep(self.connect_delay)
        if self.fail:
            self.fail -= 1
            raise ConnectionRefusedError("connection refused")
        self.made += 1
        self.open += 1
        self.peak_open = max(self.peak_open, self.open)
        return FakeConn(self.made)

    async def close(self, conn: FakeConn) -> None:
        assert not conn.closed, f"{conn} closed twice"
        conn.closed = True
        self.open -= 1
        self.closed.append(conn)
        if self.close_raises:
            raise OSError("close failed")

    async def check(self, conn: FakeConn) -> None:
        assert not conn.closed, f"{conn} pinged after close"
        if conn.broken:
            raise ConnectionResetError("connection reset by peer")

    async def reset(self, conn: FakeConn) -> bool:
        assert not conn.closed, f"{conn} reset after close"
        self.resets += 1
        return not conn.dirty


def make_pool(connector: FakeConnector | None = None, **config: Any) -> Pool[FakeConn]:
    return Pool(connector or FakeConnector(), PoolConfig(**config), name="test")


async def settle(pool: Pool[Any], *, limit: float = 2.0) -> None:
    """Let background connects and closes finish."""
    end = time.monotonic() + limit
    while pool._connects or pool._tasks:
        assert time.monotonic() < end, "pool background tasks did not settle"
        await asyncio.sleep(0.001)


def assert_consistent(pool: Pool[Any], connector: FakeConnector) -> None:
    """Every open connection is idle or in use, and the connector agrees on the count."""
    stats = pool.stats()
    assert stats["pool_size"] == stats["pool_available"] + len(pool._in_use())
    assert connector.open == stats["pool_size"]
    assert stats["pool_size"] <= stats["pool_max"]
    assert stats["requests_waiting"] == 0
    assert all(not h.conn.closed for h in pool._idle)


# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_size": 0}, "max_size"),
        ({"min_size": 0, "max_size": -1}, "max_size"),
        ({"min_size": 5, "max_size": 2}, "min_size"),
        ({"min_size": -1}, "min_size"),
        ({"timeout": -1.0}, "timeout"),
        ({"timeout": math.nan}, "timeout"),
        ({"connect_timeout": 0}, "connect_timeout"),
        ({"close_timeout": -0.5}, "close_timeout"),
        ({"max_lifetime": -1}, "max_lifetime"),
        ({"max_idle": 0}, "max_idle"),
        ({"max_waiting": -1}, "max_waiting"),
        ({"max_uses": -3}, "max_uses"),
        ({"lifetime_jitter": 1.0}, "lifetime_jitter"),
        ({"max_size": 2.5}, "max_size"),
    ],
)
def test_bad_config_raises_pool_error_naming_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(PoolError, match=field) as info:
        PoolConfig(**kwargs)
    assert isinstance(info.value, ConfigError)
    assert isinstance(info.value, PoolConfigError)


def test_size_zero_message() -> None:
    with pytest.raises(PoolError, match="pool size must be >= 1"):
        PoolConfig(min_size=0, max_size=0)


def test_good_config_and_infinite_limits() -> None:
    cfg = PoolConfig(min_size=0, max_size=1, timeout=0, max_lifetime=math.inf, max_idle=math.inf)
    assert cfg.max_size == 1


# -- open / close / misuse -------------------------------------------------------------------


async def test_stats_has_the_documented_keys() -> None:
    async with make_pool(min_size=1, max_size=3) as pool:
        stats = pool.stats()
    assert set(stats) == {
        "pool_min",
        "pool_max",
        "pool_size",
        "pool_available",
        "requests_waiting",
        "requests_num",
        "requests_queued",
        "requests_wait_ms",
        "requests_errors",
        "connections_num",
        "connections_ms",
        "connections_errors",
        "connections_lost",
        "returns_bad",
        "usage_ms",
        "connections_reused",
        "reuse_rate",
        "requests_cancelled",
        "connections_discarded",
    }
    assert stats["pool_min"] == 1 and stats["pool_max"] == 3


async def test_close_errors_are_swallowed() -> None:
    connector = FakeConnector(close_raises=True)
    pool = make_pool(connector, min_size=3, max_size=3)
    await pool.open()
    await pool.close()
    assert len(connector.closed) == 3


# -- concurrency and limits -------------------------------------------------------------------


@pytest.mark.parametrize(("min_size", "max_size"), [(10, 50), (5, 20)])
@pytest.mark.parametrize("tasks", [10, 25, 50, 75, 100])
async def test_concurrent_acquires(min_size: int, max_size: int, tasks: int) -> None:
    connector = FakeConnector(connect_delay=0.001)
    pool = make_pool(connector, min_size=min_size, max_size=max_size, timeout=5)
    in_use = peak = 0
    seen: set[int] = set()

    async def worker(i: int) -> int:
        nonlocal in_use, peak
        async with pool.acquire() as conn:
            assert not conn.closed
            in_use += 1
            peak = max(peak, in_use)
            seen.add(conn.id)
            await asyncio.sleep(random.uniform(0, 0.01))
            in_use -= 1
        return i

    async with pool:
        results = await asyncio.gather(*(worker(i) for i in range(tasks)))
        assert results == list(range(tasks))
        await settle(pool)
        stats = pool.stats()
        assert peak <= max_size and connector.peak_open <= max_size
        assert stats["pool_size"] == connector.open <= max_size
        assert stats["pool_available"] == stats["pool_size"]  # everything came back
        assert stats["requests_num"] == tasks
        assert stats["requests_errors"] == 0
        assert stats["connections_num"] == connector.attempts == connector.made >= len(seen)
        assert stats["connections_reused"] + connector.made >= tasks
        assert stats["usage_ms"] > 0
        if tasks > max_size:
            assert stats["requests_queued"] > 0
            assert stats["pool_size"] == max_size
        assert_consistent(pool, connector)
    assert connector.open == 0


async def test_returned_conn_goes_to_waiter_not_to_a_newcomer() -> None:
    async with make_pool(min_size=1, max_size=1, timeout=5) as pool:
        conn = await pool.getconn()
        waiter = asyncio.create_task(pool.getconn())
        await asyncio.sleep(0)
        await pool.putconn(conn)  # handed to the waiter's future, not parked in idle
        assert pool.stats()["pool_available"] == 0
        newcomer = asyncio.create_task(pool.getconn())
        assert await waiter is conn
        await asyncio.sleep(0.01)
        assert not newcomer.done()
        await pool.putconn(conn)
        assert await newcomer is conn
        await pool.putconn(conn)


# -- cancellation --------------------------------------------------------------------------


async def test_cancellation_storm_leaks_nothing() -> None:
    rng = random.Random(1234)
    connector = FakeConnector(connect_delay=0.0005)
    pool = make_pool(connector, min_size=5, max_size=20, timeout=10)
    tainted_seen: list[FakeConn] = []
    completed = 0

    async def worker() -> None:
        nonlocal completed
        async with pool.acquire() as conn:
            if conn.tainted or conn.closed:
                tainted_seen.append(conn)
            conn.tainted = True  # "mid-transaction": only a clean exit clears it
            await asyncio.sleep(rng.uniform(0, 0.004))
            conn.tainted = False
        completed += 1

    async with pool:
        loop = asyncio.get_running_loop()
        tasks = [asyncio.create_task(worker()) for _ in range(1000)]
        victims = rng.sample(tasks, 500)
        for task in victims:  # cancelled while queued, while being handed over, or mid-use
            loop.call_later(rng.uniform(0, 0.15), task.cancel)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        cancelled = sum(isinstance(r, asyncio.CancelledError) for r in results)
        assert cancelled + completed == 1000
        assert not [r for r in results if isinstance(r, Exception)]
        assert cancelled > 50  # the storm really happened
        await settle(pool)

        assert tainted_seen == []  # a conn cancelled mid-use was never handed out again
        stats = pool.stats()
        assert stats["pool_size"] == stats["pool_available"] + len(pool._in_use())
        assert len(pool._in_use()) == 0
        assert connector.open == stats["pool_size"]
        assert connector.peak_open <= 20
        assert stats["requests_cancelled"] > 0 and stats["connections_discarded"] > 0
        assert_consistent(pool, connector)
        tainted_closed = [c for c in connector.closed if c.tainted]
        assert tainted_closed and all(c.closed for c in tainted_closed)
        assert not any(h.conn.tainted for h in pool._idle)

        # Still serves, at full width.
        conns = await asyncio.gather(*(pool.getconn(timeout=2) for _ in range(20)))
        assert len({c.id for c in conns}) == 20
        for conn in conns:
            await pool.putconn(conn)
    assert connector.open == 0


async def test_cancelled_during_reset_discards() -> None:
    class SlowReset(FakeConnector):
        async def reset(self, conn: FakeConn) -> bool:
            await asyncio.sleep(10)
            return True

    connector = SlowReset()
    async with make_pool(connector, min_size=1, max_size=1) as pool:
        conn = await pool.getconn()
        task = asyncio.create_task(pool.putconn(conn))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await settle(pool)
        assert conn.closed and pool.size == 1 and connector.open == 1
        assert_consistent(pool, connector)


async def test_cancelled_waiter_leaves_the_queue() -> None:
    async with make_pool(min_size=1, max_size=1, timeout=5) as pool:
        conn = await pool.getconn()
        waiter = asyncio.create_task(pool.getconn())
        await asyncio.sleep(0.01)
        assert pool.stats()["requests_waiting"] == 1
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert pool.stats()["requests_waiting"] == 0
        await pool.putconn(conn)
        assert pool.stats()["pool_available"] == 1


# -- return path: reset, discard ----------------------------------------------------------


async def test_discard_marks_conn_for_closing() -> None:
    connector = FakeConnector()
    async with make_pool(connector, min_size=0, max_size=2) as pool:
        async with pool.acquire() as conn:
            pool.discard(conn)  # e.g. a Kuzu BEGIN failed on it
        other = await pool.getconn()
        await pool.putconn(other, discard=True)
        await settle(pool)
        assert conn.closed and other.closed and connector.resets == 0
        assert pool.size == 0 and pool.stats()["connections_discarded"] == 2


async def test_waiter_gets_replacement_when_returned_conn_is_discarded() -> None:
    connector = FakeConnector()
    async with make_pool(connector, min_size=0, max_size=1, timeout=2) as pool:
        conn = await pool.getconn()
        waiter = asyncio.create_task(pool.getconn())
        await asyncio.sleep(0)
        await pool.putconn(conn, discard=True)
        fresh = await waiter
        assert fresh is not conn and not fresh.closed
        await pool.putconn(fresh)
        assert_consistent(pool, connector)


# -- recycling ------------------------------------------------------------------------------


async def test_max_uses_recycles() -> None:
    connector = FakeConnector()
    async with make_pool(connector, min_size=1, max_size=1, max_uses=3) as pool:
        ids = []
        for _ in range(7):
            async with pool.acquire() as conn:
                ids.append(conn.id)
            await settle(pool)
        assert ids == [1, 1, 1, 2, 2, 2, 3]
        assert connector.open == 1 and pool.size == 1


async def test_lifetime_jitter_spreads_deadlines() -> None:
    async with make_pool(min_size=20, max_size=20, max_lifetime=100, lifetime_jitter=0.1) as pool:
        deadlines = [h.deadline for h in pool._idle]
        spans = [d - min(deadlines) for d in deadlines]
        assert max(spans) > 0.5  # jittered, not all equal
        assert max(spans) <= 10.5


# -- connect failures ------------------------------------------------------------------------


async def test_open_failure_raises_and_leaves_pool_unopened() -> None:
    connector = FakeConnector(fail=1)
    pool = make_pool(connector, min_size=3, max_size=3)
    with pytest.raises(StoreUnavailable):
        await pool.open()
    await settle(pool)
    assert pool.closed and pool.size == 0 and connector.open == 0
    await pool.open()  # retry works
    assert pool.size == 3
    await pool.close()
    assert connector.open == 0


async def test_open_without_wait_fills_in_background() -> None:
    connector = FakeConnector(connect_delay=0.01)
    pool = make_pool(connector, min_size=3, max_size=3)
    await pool.open(wait=False)
    assert pool.size == 3 and connector.open == 0  # slots taken, connections coming
    await settle(pool)
    assert connector.open == 3 and pool.stats()["pool_available"] == 3
    assert pool.stats()["connections_ms"] >= 10
    await pool.close()


async def test_connect_timeout() -> None:
    connector = FakeConnector(hang=True)
    async with make_pool(connector, min_size=0, max_size=1, connect_timeout=0.05) as pool:
        with pytest.raises(StoreUnavailable, match=r"timed out after 0\.05s"):
            await pool.getconn(timeout=1)
        assert pool.size == 0


async def test_cancelled_requester_does_not_waste_the_new_connection() -> None:
    connector = FakeConnector(connect_delay=0.05)
    async with make_pool(connector, min_size=0, max_size=1, timeout=2) as pool:
        task = asyncio.create_task(pool.getconn())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await settle(pool)
        assert pool.stats()["pool_available"] == 1 and connector.open == 1


# -- close ----------------------------------------------------------------------------------


async def test_force_closed_connections_come_back_quietly_once() -> None:
    connector = FakeConnector()
    pool = make_pool(connector, min_size=2, max_size=2)
    await pool.open()
    cm = pool.acquire()
    by_cm = await cm.__aenter__()
    by_getconn = await pool.getconn()
    await pool.close(timeout=0.01)
    assert by_cm.closed and by_getconn.closed and pool._in_use() == []
    pool.discard(by_cm)  # an error handler may still mark it: a no-op now
    await cm.__aexit__(None, None, None)
    await pool.putconn(by_getconn)
    with pytest.raises(PoolError, match="not checked out"):  # a second return is still a bug
        await pool.putconn(by_getconn)
    assert pool._holders == {} and pool.stats()["connections_discarded"] == 0


async def test_putconn_inside_the_context_manager_is_reported() -> None:
    async with make_pool(min_size=1, max_size=1) as pool:
        with pytest.raises(PoolError, match="already returned with putconn"):
            async with pool.acquire() as conn:
                await pool.putconn(conn)
        assert pool.stats()["pool_available"] == 1 and pool._in_use() == []


async def test_concurrent_close_calls_both_wait() -> None:
    connector = FakeConnector()
    pool = make_pool(connector, min_size=1, max_size=1)
    await pool.open()
    conn = await pool.getconn()
    first = asyncio.create_task(pool.close())
    second = asyncio.create_task(pool.close())
    await asyncio.sleep(0.02)
    assert not first.done() and not second.done()
    await pool.putconn(conn)
    await asyncio.gather(first, second)
    assert connector.open == 0


# -- reuse ------------------------------------------------------------------------------------


async def test_reuse_rate() -> None:
    async with make_pool(min_size=1, max_size=1) as pool:
        for _ in range(10):
            async with pool.acquire():
                pass
        stats = pool.stats()
        assert stats["connections_reused"] == 9
        assert stats["reuse_rate"] == pytest.approx(0.9)
        assert stats["requests_num"] == 10 and stats["connections_num"] == 1


# -- more races and edges --------------------------------------------------------------------


async def test_timer_firing_after_handover_is_a_no_op() -> None:
    connector = FakeConnector()
    async with make_pool(connector, min_size=1, max_size=1, timeout=5) as pool:
        conn = await pool.getconn()
        waiter = asyncio.create_task(pool.getconn(timeout=0.5))
        await asyncio.sleep(0)
        fut = pool._waiting[0]
        await pool.putconn(conn)  # the hand-over resolves the future...
        pool._on_wait_timeout(fut, 0.5)  # ...and the timer fires in the same tick
        assert await waiter is conn
        assert pool.stats()["requests_errors"] == 0
        await pool.putconn(conn)
        assert_consistent(pool, connector)


async def test_base_exception_in_body_discards() -> None:
    class Interrupt(BaseException):
        pass

    connector = FakeConnector()
    async with make_pool(connector, min_size=1, max_size=1) as pool:
        with pytest.raises(Interrupt):
            async with pool.acquire() as conn:
                raise Interrupt
        await settle(pool)
        assert conn.closed and connector.resets == 0
        assert_consistent(pool, connector)


async def test_close_cancels_pending_connects_and_fails_their_waiters() -> None:
    connector = FakeConnector(hang=True)
    pool = make_pool(connector, min_size=0, max_size=2, timeout=10)
    await pool.open()
    waiter = asyncio.create_task(pool.getconn())
    await asyncio.sleep(0.01)
    assert pool.size == 1  # the slot of the connect under way
    await asyncio.wait_for(pool.close(), 1)
    with pytest.raises(PoolClosed):
        await waiter
    assert pool.size == 0 and pool._connects == set()


async def test_check_cancelled_mid_ping_leaks_nothing() -> None:
    class SlowCheck(FakeConnector):
        async def check(self, conn: FakeConn) -> None:
            await asyncio.sleep(10)

    connector = SlowCheck()
    async with make_pool(connector, min_size=3, max_size=3) as pool:
        task = asyncio.create_task(pool.check())
        await asyncio.sleep(0.01)
        assert pool.stats()["pool_available"] == 0  # taken out while pinged
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await settle(pool)
        assert pool.size == 3 and connector.open == 3
        assert_consistent(pool, connector)


async def test_connect_failure_goes_to_the_oldest_waiter() -> None:
    connector = FakeConnector(connect_delay=0.01, fail=1)
    async with make_pool(connector, min_size=0, max_size=2, timeout=2) as pool:
        first = asyncio.create_task(pool.getconn())
        await asyncio.sleep(0)
        second = asyncio.create_task(pool.getconn())
        with pytest.raises(StoreUnavailable):
            await first
        conn = await second
        await pool.putconn(conn)
        stats = pool.stats()
        assert stats["connections_errors"] == 1 and stats["pool_size"] == 1
        assert stats["requests_num"] == 2 and stats["requests_errors"] == 1


async def test_failed_connects_free_their_slots_for_the_waiters_behind() -> None:
    # max_size=2, three requests: the third queues behind two connects, and both fail. Their
    # freed slots must give it an attempt of its own (which works: the store is back), not leave
    # it waiting out its acquire timeout. The 30 s timeout only shows a stranded waiter as a
    # PoolTimeout; nothing here depends on how fast the machine is.
    connector = FakeConnector(fail=2)
    async with make_pool(connector, min_size=0, max_size=2, timeout=30) as pool:
        results = await asyncio.wait_for(
            asyncio.gather(*(pool.getconn() for _ in range(3)), return_exceptions=True), 60
        )
        assert [type(r) for r in results] == [StoreUnavailable, StoreUnavailable, FakeConn]
        assert connector.attempts == 3 and connector.made == 1
        await pool.putconn(results[2])
        stats = pool.stats()
        assert stats["connections_errors"] == 2 and stats["requests_errors"] == 2
        assert stats["pool_size"] == 1
        assert_consistent(pool, connector)


@pytest.mark.parametrize("requests", [3, 10])
async def test_dead_store_fails_every_waiter_fast_with_one_attempt_each(requests: int) -> None:
    connector = FakeConnector(fail=1000)
    async with make_pool(connector, min_size=0, max_size=2, timeout=30) as pool:
        results = await asyncio.wait_for(
            asyncio.gather(*(pool.getconn() for _ in range(requests)), return_exceptions=True),
            60,
        )
        assert all(type(r) is StoreUnavailable for r in results), results
        # One attempt per request: no waiter stranded, and no retry loop against a dead store.
        assert connector.attempts == requests
        await settle(pool)
        assert connector.attempts == requests
        stats = pool.stats()
        assert stats["pool_size"] == 0 and stats["requests_errors"] == requests
        assert stats["requests_waiting"] == 0


async def test_failed_min_size_refill_is_not_retried() -> None:
    # A discarded connection is replaced to keep min_size; when that replacement fails, nothing
    # retries it in the background (the next request or check() will).
    connector = FakeConnector()
    async with make_pool(connector, min_size=1, max_size=2) as pool:
        connector.fail = 1000
        conn = await pool.getconn()
        await pool.putconn(conn, discard=True)
        await settle(pool)
        assert connector.attempts == 2 and pool.size == 0


async def test_requests_num_counts_failures_and_waits() -> None:
    async with make_pool(min_size=1, max_size=1) as pool:
        conn = await pool.getconn()
        with pytest.raises(PoolTimeout):
            await pool.getconn(timeout=0.01)
        waiter = asyncio.create_task(pool.getconn(timeout=1))
        await asyncio.sleep(0)
        assert pool.stats()["requests_num"] == 3  # one served, one failed, one waiting
        await pool.putconn(conn)
        await pool.putconn(await waiter)
        stats = pool.stats()
        assert stats["requests_num"] == 3 and stats["requests_queued"] == 2
        assert stats["connections_reused"] == 1


async def test_negative_acquire_timeout_is_rejected() -> None:
    async with make_pool(min_size=1, max_size=1) as pool:
        conn = await pool.getconn()
        with pytest.raises(PoolError, match="timeout"):
            await pool.getconn(timeout=-1)
        await pool.putconn(conn)


async def test_grow_adds_connections_within_max() -> None:
    connector = FakeConnector()
    async with make_pool(connector, min_size=0, max_size=3) as pool:
        assert await pool.grow(2) == 2 and pool.size == 2
        assert await pool.grow(5) == 1 and pool.size == 3
        assert await pool.grow(1) == 0
        assert_consistent(pool, connector)
    assert await pool.grow(1) == 0


async def test_check_probes_an_empty_pool() -> None:
    connector = FakeConnector(fail=1)
    async with make_pool(connector, min_size=0, max_size=2) as pool:
        result = await pool.check()
        assert not result["ok"] and "cannot connect" in result["error"]
        assert pool.size == 0
        result = await pool.check()
        assert result == {"ok": True, "checked": 0, "discarded": 0, "error": None}
        assert pool.stats()["pool_available"] == 1


async def test_an_open_pool_lost_without_close_warns() -> None:
    import gc

    pool = make_pool(FakeConnector(), min_size=0, max_size=1)
    await pool.open()
    with pytest.warns(ResourceWarning, match="garbage-collected while open"):
        del pool
        gc.collect()


_TIMING_STATS = {"requests_wait_ms", "connections_ms", "usage_ms", "reuse_rate"}


async def _scenario(pool: Pool[FakeConn], use_context_manager: bool) -> list[int]:
    """One script of checkouts (plain, contended, a failing body, recycled by max_uses)."""

    async def checkout(fail: bool = False, hold: float = 0.0) -> int:
        if use_context_manager:
            try:
                async with pool.acquire() as conn:
                    await asyncio.sleep(hold)
                    if fail:
                        raise ValueError("the body failed")
                    return id(conn)
            except ValueError:
                return -1
        conn = await pool.getconn()
        await asyncio.sleep(hold)
        await pool.putconn(conn)
        return -1 if fail else id(conn)

    ids = [await checkout() for _ in range(5)]
    ids += await asyncio.gather(*(checkout(hold=0.001) for _ in range(6)))
    ids.append(await checkout(fail=True))
    ids += [await checkout() for _ in range(5)]
    await settle(pool)
    return ids


@pytest.mark.parametrize("reset", [True, False])
async def test_both_checkout_paths_give_the_same_stats(reset: bool) -> None:
    # The context manager inlines the checkout and return for speed (one coroutine frame less
    # per call on a ~2 us path); this proves it keeps the same books as getconn/putconn.
    results = []
    for use_cm in (True, False):
        connector = FakeConnector()
        connector.reset_on_return = reset  # type: ignore[attr-defined]
        async with make_pool(connector, min_size=1, max_size=3, max_uses=4) as pool:
            ids = await _scenario(pool, use_cm)
            stats = {k: v for k, v in pool.stats().items() if k not in _TIMING_STATS}
            results.append((len(set(ids) - {-1}), stats, connector.made, connector.resets))
            assert_consistent(pool, connector)
    assert results[0] == results[1]
