"""Probe finding: a cancelled graph read must stop, and hold its slot until it has.

Real Kuzu, SQLite and Redis. Nothing here depends on how fast the machine is: the assertions are
on counts and states, and every wait has a generous hang guard (HANG_S) instead of a threshold.
Blocking reads use a Python ``fn`` that waits on a ``threading.Event``, which Kuzu cannot
interrupt: that is what makes "still running" a state the test controls, not a race.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any

import psutil

from tristore.coordinator import Coordinator
from tristore.stores import GraphStore
from tristore.testing import Stores

HANG_S = 60.0
# The repro: Kuzu folds range() while binding (about 1.6 GB and seconds, which cannot be
# interrupted); the execution that follows can be.
SLOW_READ = "UNWIND range(1, 3000000) AS x RETURN sum(x)"


class Gate:
    """A read body that blocks its worker thread until opened, counting who is inside."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.lock = threading.Lock()
        self.inside = 0
        self.peak = 0
        self.started = 0

    def body(self, conn: Any) -> int:
        with self.lock:
            self.inside += 1
            self.started += 1
            self.peak = max(self.peak, self.inside)
        try:
            if not self.open.wait(HANG_S):
                raise AssertionError("gate never opened")
            return 1
        finally:
            with self.lock:
                self.inside -= 1


async def _until(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(HANG_S):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_cancelled_slow_reads_are_interrupted_and_bounded(graph_store: GraphStore) -> None:
    limit = graph_store.settings.graph.readers
    rss_before = psutil.Process().memory_info().rss

    async def cancelled_read() -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(graph_store.query(SLOW_READ), 0.02)

    async with asyncio.timeout(HANG_S):
        await asyncio.gather(*(cancelled_read() for _ in range(30)))
        calls = graph_store.calls()
        # Nothing is left running once the cancelled calls have returned, and never more than
        # the pool's limit ran at once.
        assert calls["in_flight"] == 0
        assert calls["peak_in_flight"] <= limit
        # Every read that had started was interrupted (stopped with Kuzu's "Interrupted."),
        # none ran on to its end; the others never reached a thread.
        assert 1 <= calls["interrupts_requested"] <= limit
        assert calls["interrupted"] == calls["interrupts_requested"]
        assert await graph_store.query_rows("RETURN 1") == [[1]]
    stats = graph_store.readers.stats()
    assert stats["pool_size"] <= limit and stats["requests_waiting"] == 0
    # The issue saw 69 MB -> 5 GB (30 such queries at once). Bounded to the pool's limit, and
    # the cancelled queries' memory handed back to the system, it stays far below that.
    growth = psutil.Process().memory_info().rss - rss_before
    assert growth < 1 << 30, f"RSS grew {growth / 2**20:.0f} MiB"


async def test_slot_is_freed_only_when_the_read_really_stopped(graph_store: GraphStore) -> None:
    limit = graph_store.settings.graph.readers
    gate = Gate()
    try:
        first = [asyncio.create_task(graph_store.read(gate.body)) for _ in range(limit)]
        await _until(lambda: gate.started == limit)
        for task in first:
            task.cancel()
        # The cancelled reads are still inside their threads: their slots stay taken, so new
        # reads queue in the pool instead of starting beside them.
        second = [asyncio.create_task(graph_store.read(gate.body)) for _ in range(limit)]
        await asyncio.sleep(0.2)
        assert gate.started == limit
        assert gate.inside == limit
        assert graph_store.calls()["in_flight"] == limit
        assert graph_store.readers.stats()["requests_waiting"] == limit
        assert not any(task.done() for task in first)  # cancelled, but waiting for the thread
        gate.open.set()
        async with asyncio.timeout(HANG_S):
            results = await asyncio.gather(*first, *second, return_exceptions=True)
    finally:
        gate.open.set()
    assert all(isinstance(r, asyncio.CancelledError) for r in results[:limit])
    assert results[limit:] == [1] * limit
    assert gate.peak <= limit
    assert graph_store.calls()["peak_in_flight"] <= limit
    assert graph_store.calls()["in_flight"] == 0


async def test_interruptible_read_has_stopped_when_the_cancel_returns(
    graph_store: GraphStore,
) -> None:
    await graph_store.execute("UNWIND range(1, 3000) AS i CREATE (:Product {id: i, name: 'p'})")
    inside = 0
    outcome: list[str] = []

    def cartesian(conn: Any) -> Any:
        nonlocal inside
        inside += 1
        try:
            # 2.7e10 rows: hours if not interrupted.
            return conn.execute(
                "MATCH (a:Product), (b:Product), (c:Product) "
                "WHERE (a.id * b.id + c.id) % 7 = 3 RETURN count(*)"
            ).get_all()
        except RuntimeError as exc:
            outcome.append(str(exc))
            raise
        finally:
            inside -= 1

    before = graph_store.calls()
    async with asyncio.timeout(HANG_S):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(graph_store.read(cartesian), 0.2)
        # When the cancellation comes back to the caller, the thread is already out.
        assert inside == 0
        assert outcome == ["Interrupted."]
        after = graph_store.calls()
        assert after["interrupted"] == before["interrupted"] + 1
        assert after["in_flight"] == 0
        assert await graph_store.query_rows("RETURN 1") == [[1]]


async def test_coordinator_graph_stage_does_not_queue_behind_reads(
    coordinator: Coordinator, stores: Stores
) -> None:
    graph = stores.graph
    limit = graph.settings.graph.readers
    gate = Gate()
    try:
        # Every reader thread blocked, then cancelled, then more reads queued behind: the
        # backlog that made the coordinator wait for the graph while it held SQLite.
        first = [asyncio.create_task(graph.read(gate.body)) for _ in range(limit)]
        await _until(lambda: gate.started == limit)
        for task in first:
            task.cancel()
        more = [asyncio.create_task(graph.read(gate.body)) for _ in range(limit)]
        async with asyncio.timeout(HANG_S):
            async with coordinator.transaction() as tx:
                cid = (
                    await tx.sql(
                        "INSERT INTO customers (email, name, country, tier)"
                        " VALUES ('cx@example.com', 'Cx', 'GB', 'silver') RETURNING id"
                    )
                ).scalar()
                tx.graph("CREATE (:Customer {id: $id, name: 'Cx', tier: 'silver'})", {"id": cid})
            # The SQLite lane is free again for unrelated writes.
            await stores.sqlite.execute("UPDATE customers SET name = 'Cy' WHERE id = ?", (cid,))
        assert tx.committed and tx.pending == ()
        assert gate.inside == limit  # the reads were still blocked all along
        assert coordinator.stats()["deadlocks"] == 0
        gate.open.set()
        async with asyncio.timeout(HANG_S):
            await asyncio.gather(*first, *more, return_exceptions=True)
    finally:
        gate.open.set()
    assert await graph.query_rows(
        "MATCH (c:Customer) WHERE c.id = $id RETURN c.name", {"id": cid}
    ) == [["Cx"]]
    assert gate.peak <= limit
