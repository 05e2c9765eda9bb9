"""Failures after the SQLite commit, while graph and cache work is being applied.

Redis is killed for real (``RedisServer.kill()``: SIGKILL) and restarted on the same port; it runs
with an append-only file so that, like a production cache whose data matters, it comes back with
what it had acknowledged (its markers included) and the invariant can be checked in full. A Kuzu
write failing is injected at the coordinator's ``graph.commit`` / ``graph.replay`` points (the
engine itself cannot be made to fail on cue). After each scenario the same invariant as the crash
loop's is checked (``crash_worker.check``): every committed transaction applied exactly once in
every store, nothing of an aborted one anywhere.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from crash_worker import check, ensure_catalogue, one_transaction

from tristore.coordinator import Coordinator, validate_consistency
from tristore.services import RedisServer
from tristore.testing.setup import open_stores, store_settings

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def durable_redis() -> Iterator[RedisServer]:
    # appendonly: acknowledged writes survive a SIGKILL (written before the reply is sent).
    server = RedisServer(extra_args=["--appendonly", "yes"])
    server.start()
    yield server
    server.stop()


@asynccontextmanager
async def coordinated(data_dir: Path, url: str, **options: Any) -> AsyncIterator[Coordinator]:
    settings = store_settings(data_dir, url, redis={"socket_timeout_s": 2.0})
    async with open_stores(settings) as stores:
        coord = Coordinator.for_stores(stores, recovery_interval=None, **options)
        await coord.open()
        try:
            await ensure_catalogue(coord)
            yield coord
        finally:
            await coord.close()


async def recover_until_applied(coord: Coordinator, within: float = 30.0) -> None:
    """Recovery passes until nothing is pending (a pass can meet a stale pooled connection)."""
    deadline = time.monotonic() + within
    while coord.pending_count():
        await coord.recover()
        if time.monotonic() > deadline:
            pytest.fail(f"{coord.pending_count()} intent(s) still pending after {within:g}s")
        await asyncio.sleep(0.05)


async def assert_no_drift(coord: Coordinator, committed: set[str], aborted: set[str]) -> str:
    problems, summary = await check(coord, committed, aborted)
    assert not problems, "\n".join(problems)
    return summary


async def test_redis_killed_exactly_mid_apply(tmp_path: Path, durable_redis: RedisServer) -> None:
    rng = random.Random(11)
    committed: set[str] = set()
    async with coordinated(tmp_path, durable_redis.url) as coord:
        for i in range(10):
            assert await one_transaction(coord, f"before{i}", rng, failures=False) == "committed"
            committed.add(f"before{i}")
        # Redis dies just as the next transaction's cache script is about to be sent.
        coord.faults.arm("cache.apply", action=durable_redis.kill)
        assert await one_transaction(coord, "victim", rng, failures=False) == "pending"
        committed.add("victim")
        # While Redis is down transactions still commit; their cache work queues in order.
        for i in range(5):
            assert await one_transaction(coord, f"down{i}", rng, failures=False) == "pending"
            committed.add(f"down{i}")
        assert coord.stats()["cache_backlog"] == 6
        await asyncio.to_thread(durable_redis.restart)
        await recover_until_applied(coord)
        for i in range(5):
            assert await one_transaction(coord, f"after{i}", rng, failures=False) == "committed"
            committed.add(f"after{i}")
        summary = await assert_no_drift(coord, committed, set())
    print("redis killed mid-apply:", summary)


async def test_redis_killed_at_random_under_concurrent_load(
    tmp_path: Path, durable_redis: RedisServer
) -> None:
    rng = random.Random(12)
    committed: set[str] = set()
    aborted: set[str] = set()
    outcomes: dict[str, int] = {}
    kills = 0
    async with coordinated(tmp_path, durable_redis.url, retry_backoff=0.05) as coord:
        stop = asyncio.Event()

        async def worker(w: int) -> None:
            n = 0
            wrng = random.Random(w)
            while not stop.is_set():
                tag = f"w{w}n{n}"
                n += 1
                outcome = await one_transaction(coord, tag, wrng)
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
                (aborted if outcome == "aborted" else committed).add(tag)

        async def chaos() -> None:
            nonlocal kills
            for _ in range(4):
                await asyncio.sleep(rng.uniform(0.1, 0.4))
                await asyncio.to_thread(durable_redis.kill)
                kills += 1
                await asyncio.sleep(rng.uniform(0.05, 0.3))
                await asyncio.to_thread(durable_redis.restart)
            await asyncio.sleep(0.2)
            stop.set()

        await asyncio.gather(chaos(), *(worker(w) for w in range(6)))
        await recover_until_applied(coord)
        summary = await assert_no_drift(coord, committed, aborted)
    assert kills == 4 and outcomes.get("pending", 0) > 0  # some applies really were cut off
    print(f"redis killed {kills} times under load: {outcomes}; {summary}")


async def test_kuzu_write_failing_mid_apply(
    tmp_path: Path, tristore_redis_server: RedisServer
) -> None:
    rng = random.Random(13)
    committed: set[str] = set()
    aborted: set[str] = set()
    fired = 0

    def fail() -> None:
        nonlocal fired
        fired += 1
        raise RuntimeError("injected: kuzu write failed")

    # A short back-off: the applier retries at once, so the faults keep meeting applies.
    async with coordinated(tmp_path, tristore_redis_server.url, retry_backoff=0.001) as coord:
        await coord.cache.execute("FLUSHDB")
        discarded = coord.graph.writer.stats()["connections_discarded"]
        for i in range(60):
            if rng.random() < 0.2:
                # Fresh intents, or replays of those a failure left in doubt.
                coord.faults.arm(rng.choice(["graph.commit", "graph.replay"]), action=fail)
            tag = f"k{i}"
            outcome = await one_transaction(coord, tag, rng)
            (aborted if outcome == "aborted" else committed).add(tag)
        # A replay that fails too: the transaction behind it commits and waits its turn (a long
        # back-off, so that the applier does not retry before the test looks).
        coord.faults.disarm()
        await recover_until_applied(coord)
        coord.graph_applier.retry_backoff = 3600.0
        coord.faults.arm("graph.commit", RuntimeError("injected: kuzu write failed"))
        assert await one_transaction(coord, "stuck", rng, failures=False) == "pending"
        committed.add("stuck")
        coord.faults.arm("graph.replay", RuntimeError("injected: replay failed"))
        assert await one_transaction(coord, "behind", rng, failures=False) == "pending"
        committed.add("behind")
        await recover_until_applied(coord)
        summary = await assert_no_drift(coord, committed, aborted)
        # Every failed Kuzu write cost its connection (and so did each bad statement).
        assert coord.graph.writer.stats()["connections_discarded"] >= discarded + fired + 2
    assert fired > 5
    print(f"kuzu failed mid-apply {fired + 2} times: {summary}")


async def test_a_graph_intent_that_never_applies_is_given_up_not_blocking(
    tmp_path: Path, tristore_redis_server: RedisServer
) -> None:
    rng = random.Random(14)
    async with coordinated(tmp_path, tristore_redis_server.url, max_replays=3) as coord:
        await coord.cache.execute("FLUSHDB")
        coord.faults.arm("graph.commit", RuntimeError("injected: kuzu write failed"))
        assert await one_transaction(coord, "poison", rng, failures=False) == "pending"
        poison = await coord.sqlite.fetchone(
            "SELECT txid FROM tristore_intents ORDER BY seq DESC LIMIT 1"
        )
        coord.faults.arm("graph.replay", RuntimeError("injected: replay failed"), times=100)
        behind = []
        for i in range(3):  # committed behind it, waiting for their turn
            async with coord.transaction() as tx:
                await tx.sql("SELECT 1")
                tx.graph("CREATE (:Customer {id: $id, name: 'x', tier: 'y'})", {"id": -i})
            assert tx.committed and tx.pending == ("graph",)
            behind.append(tx)
        while not await coord.dead_letters():  # one attempt per pass, max_replays in all
            await coord.recover()
        assert [d.txid for d in await coord.dead_letters()] == [poison[0]]
        coord.faults.disarm()
        await coord.recover()
        assert coord.pending_count() == 0
        for tx in behind:
            await tx.applied(timeout=5)
            assert tx.apply_errors == []
        assert await one_transaction(coord, "later", rng, failures=False) == "committed"
        report = await validate_consistency(coord)
        assert report.kinds() == {"failed": 1}, report.summary()
        rows = await coord.graph.query_rows("MATCH (c:Customer) WHERE c.id <= 0 RETURN c.id")
        assert sorted(r[0] for r in rows) == [-2, -1, 0]
