"""Group apply: commits queued behind each other share one Kuzu COMMIT and one Redis round trip.

Outcomes stay per transaction: a member whose graph ops fail rolls back alone, and the members
its failure took out of the shared Kuzu transaction are replayed, each with its own marker. No
test here depends on timing: batches are closed by "nobody else queues for the SQLite lane" (the
wait bound is set far beyond any run), and the Redis turn is held by the test itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tristore.coordinator import Coordinator, EntityCheck, validate_consistency
from tristore.errors import ConfigError, TristoreError
from tristore.testing import Stores

NEW_CUSTOMER = "INSERT INTO customers (email, name, country) VALUES (?, ?, 'GB') RETURNING id"
CUSTOMER_NODE = "CREATE (:Customer {id: $id, name: $name, tier: 'silver'})"
BAD_NODE = "CREATE (:Customer {id: $id, no_such_property: 1})"
NEVER = 60.0  # graph_batch_wait: a batch closes only when no commit queues behind it


@pytest.fixture
async def batching(stores: Stores) -> AsyncIterator[Coordinator]:
    coord = Coordinator.for_stores(stores, recovery_interval=None, graph_batch_wait=NEVER)
    await coord.open()
    yield coord
    await coord.close()


async def _customer(coord: Coordinator, n: int, *, bad: bool = False) -> int:
    async with coord.transaction() as tx:
        cid = (await tx.sql(NEW_CUSTOMER, (f"g{n}@example.com", f"c{n}"))).scalar()
        tx.graph(BAD_NODE if bad else CUSTOMER_NODE, {"id": cid, "name": f"c{n}"})
        tx.cache("SET", f"customer:{cid}", f"c{n}")
    return int(cid)


def _check(cid: int) -> EntityCheck:
    return EntityCheck(
        f"customer {cid}",
        sql=("SELECT id FROM customers WHERE id = ?", (cid,)),
        graph=("MATCH (c:Customer {id: $id}) RETURN c.id", {"id": cid}),
        cache=("GET", f"customer:{cid}"),
        normalize={"cache": lambda v, cid=cid: [[cid]] if v is not None else []},
    )


async def test_queued_commits_share_one_kuzu_commit(batching: Coordinator, stores: Stores) -> None:
    before = batching.stats()
    cids = await asyncio.gather(*(_customer(batching, n) for n in range(10)))
    after = batching.stats()
    assert after["committed"] - before["committed"] == 10
    # The first commit saw nine queued behind it, ..., the tenth none: one COMMIT for all.
    assert after["graph_batches"] - before["graph_batches"] == 1
    nodes = await stores.graph.query_rows("MATCH (c:Customer) RETURN c.id ORDER BY c.id")
    assert [row[0] for row in nodes] == sorted(cids)
    markers = await stores.graph.query_rows("MATCH (a:AppliedTx) RETURN count(a)")
    assert markers == [[10]]
    report = await validate_consistency(batching, entities=[_check(c) for c in cids])
    assert report.ok, report.summary()


async def test_a_failing_member_rolls_back_alone(batching: Coordinator, stores: Stores) -> None:
    results = await asyncio.gather(
        *(_customer(batching, n, bad=(n == 3)) for n in range(6)), return_exceptions=True
    )
    failed = [r for r in results if isinstance(r, BaseException)]
    assert len(failed) == 1 and isinstance(failed[0], TristoreError)
    assert "no_such_property" in str(failed[0])
    cids = [r for r in results if isinstance(r, int)]
    assert len(cids) == 5
    # Members 0-2 were staged in the shared transaction the failure rolled back: the next batch
    # replayed them (in commit order, each with its marker) before staging its own.
    await batching.recover()
    nodes = await stores.graph.query_rows("MATCH (c:Customer) RETURN c.id ORDER BY c.id")
    assert [row[0] for row in nodes] == sorted(cids)
    rows = await stores.sqlite.fetchall("SELECT id FROM customers ORDER BY id")
    assert [r[0] for r in rows] == sorted(cids)  # the failed one committed nothing
    assert batching.stats()["replayed"] >= 3
    report = await validate_consistency(batching, entities=[_check(c) for c in cids])
    assert report.ok, report.summary()
    assert batching.pending_count() == 0


async def test_a_redis_turn_sends_every_queued_intent_in_one_round_trip(
    stores: Stores,
) -> None:
    coord = Coordinator.for_stores(stores, recovery_interval=None)
    await coord.open()
    try:
        # Hold the cache turn so that ten commits queue behind it, then let it go.
        blocker = coord._turns.take()
        await coord._turns.wait(blocker)
        before = coord.stats()["cache_round_trips"]
        tasks = [asyncio.create_task(_customer(coord, n)) for n in range(10)]
        while coord.stats()["committed"] < 10:
            await asyncio.sleep(0)
        coord._turns.done(blocker)
        cids = await asyncio.gather(*tasks)
        assert coord.stats()["cache_round_trips"] - before == 1
        values = await stores.cache.execute("MGET", *(f"customer:{c}" for c in cids))
        assert all(v is not None for v in values)
    finally:
        await coord.close()


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("graph_batch_size", 0),
        ("graph_batch_size", 1025),
        ("graph_batch_size", 2.5),
        ("graph_batch_wait", 0),
        ("graph_batch_wait", 61),
        ("graph_batch_wait", float("nan")),
    ],
)
def test_batch_options_are_bounded(stores: Stores, option: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=option):
        Coordinator.for_stores(stores, **{option: value})


async def test_batch_size_one_commits_each_transaction_on_its_own(stores: Stores) -> None:
    coord = Coordinator.for_stores(stores, recovery_interval=None, graph_batch_size=1)
    await coord.open()
    try:
        await asyncio.gather(*(_customer(coord, n) for n in range(4)))
        assert coord.stats()["graph_batches"] == 4
    finally:
        await coord.close()


async def test_close_commits_an_open_batch(stores: Stores) -> None:
    coord = Coordinator.for_stores(stores, recovery_interval=None, graph_batch_wait=NEVER)
    await coord.open()
    writer: asyncio.Task[int] | None = None

    async def order() -> int:
        nonlocal writer
        async with coord.transaction() as tx:
            cid = (await tx.sql(NEW_CUSTOMER, ("open@example.com", "open"))).scalar()
            tx.graph(CUSTOMER_NODE, {"id": cid, "name": "open"})
            # A plain write queues for the SQLite lane: at the commit someone is waiting, so the
            # batch stays open for it to join (it never does: it has no graph ops).
            writer = asyncio.create_task(
                stores.sqlite.execute("UPDATE customers SET name = 'plain' WHERE id = ?", (cid,))
            )
            await asyncio.sleep(0)
        return int(cid)

    task = asyncio.create_task(order())
    while writer is None or not writer.done():
        await asyncio.sleep(0)
    assert not task.done()  # its graph part waits in the open batch
    assert await stores.graph.query_rows("MATCH (c:Customer) RETURN count(c)") == [[0]]
    await coord.close()
    cid = await task
    assert await stores.graph.query_rows("MATCH (c:Customer) RETURN c.id") == [[cid]]
    assert coord.stats()["graph_batches"] == 1
