"""The graph applier's batches: commits queued behind each other share one Kuzu transaction.

Outcomes stay per transaction: a member that the graph check rejects rolls back alone before
anything commits; a member that fails only when applied (a duplicate primary key) is applied
alone after its batch failed and dead-lettered, while the other members of its batch are
applied, each with its marker. No test depends on timing: batches are formed by holding the
applier's lock (or the cache turn) from the test while commits queue.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tristore.coordinator import Coordinator, EntityCheck, validate_consistency
from tristore.errors import ConfigError, QueryError
from tristore.testing import Stores

NEW_CUSTOMER = "INSERT INTO customers (email, name, country) VALUES (?, ?, 'GB') RETURNING id"
CUSTOMER_NODE = "CREATE (:Customer {id: $id, name: $name, tier: 'silver'})"
BAD_NODE = "CREATE (:Customer {id: $id, no_such_property: 1})"
TAKEN_ID = 999_999


@pytest.fixture
async def coord(stores: Stores) -> AsyncIterator[Coordinator]:
    coordinator = Coordinator.for_stores(stores, recovery_interval=None)
    await coordinator.open()
    yield coordinator
    await coordinator.close()


async def _customer(coord: Coordinator, n: int, *, node: str = CUSTOMER_NODE, **ids: int) -> Any:
    async with coord.transaction() as tx:
        cid = (await tx.sql(NEW_CUSTOMER, (f"g{n}@example.com", f"c{n}"))).scalar()
        tx.graph(node, {"id": ids.get("node_id", cid), "name": f"c{n}"})
        tx.cache("SET", f"customer:{cid}", f"c{n}")
    return tx


def _check(cid: int) -> EntityCheck:
    return EntityCheck(
        f"customer {cid}",
        sql=("SELECT id FROM customers WHERE id = ?", (cid,)),
        graph=("MATCH (c:Customer {id: $id}) RETURN c.id", {"id": cid}),
        cache=("GET", f"customer:{cid}"),
        normalize={"cache": lambda v, cid=cid: [[cid]] if v is not None else []},
    )


async def _queued(coord: Coordinator, jobs: list[Any]) -> list[Any]:
    """Run ``jobs`` while the applier is held, so that their intents form one queue."""
    applier = coord.graph_applier
    await applier.lock.acquire()
    try:
        tasks = [asyncio.ensure_future(job) for job in jobs]
        # Until every job has committed (its intent queued) or failed.
        while len(applier.queue) + sum(t.done() for t in tasks) < len(jobs):
            await asyncio.sleep(0)
    finally:
        applier.lock.release()
    return await asyncio.gather(*tasks, return_exceptions=True)


async def test_queued_commits_share_one_kuzu_transaction(
    coord: Coordinator, stores: Stores
) -> None:
    before = coord.stats()
    txs = await _queued(coord, [_customer(coord, n) for n in range(10)])
    after = coord.stats()
    assert after["committed"] - before["committed"] == 10
    assert after["graph_batches"] - before["graph_batches"] == 1
    cids = sorted(tx.intent.graph_ops[0][1]["id"] for tx in txs)
    nodes = await stores.graph.query_rows("MATCH (c:Customer) RETURN c.id ORDER BY c.id")
    assert [row[0] for row in nodes] == cids
    markers = await stores.graph.query_rows("MATCH (a:AppliedTx) RETURN count(a)")
    assert markers == [[10]]
    report = await validate_consistency(coord, entities=[_check(c) for c in cids])
    assert report.ok, report.summary()


async def test_a_rejected_op_rolls_back_its_transaction_alone(
    coord: Coordinator, stores: Stores
) -> None:
    results = await _queued(
        coord, [_customer(coord, n, node=BAD_NODE if n == 3 else CUSTOMER_NODE) for n in range(6)]
    )
    failed = [r for r in results if isinstance(r, BaseException)]
    assert len(failed) == 1 and isinstance(failed[0], QueryError)
    assert "no_such_property" in str(failed[0])
    rows = await stores.sqlite.fetchall("SELECT id FROM customers ORDER BY id")
    nodes = await stores.graph.query_rows("MATCH (c:Customer) RETURN c.id ORDER BY c.id")
    assert [r[0] for r in rows] == [n[0] for n in nodes] and len(rows) == 5
    assert coord.stats()["graph_apply_errors"] == 0  # rejected before it could reach a batch


async def test_a_member_failing_at_apply_is_dead_lettered_and_the_batch_applied(
    coord: Coordinator, stores: Stores
) -> None:
    await stores.graph.execute("CREATE (:Customer {id: $id, name: 'taken'})", {"id": TAKEN_ID})
    txs = await _queued(
        coord,
        [_customer(coord, n, **({"node_id": TAKEN_ID} if n == 3 else {})) for n in range(6)],
    )
    assert all(tx.committed for tx in txs)
    bad = txs[3]
    good = [tx for i, tx in enumerate(txs) if i != 3]
    assert "duplicated primary key" in " ".join(bad.apply_errors)
    assert all(tx.pending == () and tx.apply_errors == [] for tx in good)
    good_ids = sorted(tx.intent.graph_ops[0][1]["id"] for tx in good)
    nodes = await stores.graph.query_rows("MATCH (c:Customer) RETURN c.id ORDER BY c.id")
    assert [row[0] for row in nodes] == [*good_ids, TAKEN_ID]
    letters = await coord.dead_letters()
    assert [d.txid for d in letters] == [bad.txid] and "duplicated" in (letters[0].error or "")
    # The cache part of the dead letter was applied; its graph part waits for a retry.
    report = await validate_consistency(coord)
    assert [d.kind for d in report.drift] == ["failed"]

    # After a fix, a retry applies it (exactly once).
    await stores.graph.execute("MATCH (c:Customer {id: $id}) DELETE c", {"id": TAKEN_ID})
    retried = await coord.retry([bad.txid])
    assert (retried.found, retried.applied, retried.failed, retried.pending) == (1, 1, 0, 0)
    assert await coord.dead_letters() == []
    report = await validate_consistency(coord)
    assert report.ok, report.summary()
    nodes = await stores.graph.query_rows(
        "MATCH (c:Customer {id: $id}) RETURN count(c)", {"id": TAKEN_ID}
    )
    assert nodes == [[1]]


async def test_a_dead_letter_that_fails_again_stays_one(coord: Coordinator, stores: Stores) -> None:
    await stores.graph.execute("CREATE (:Customer {id: $id, name: 'taken'})", {"id": TAKEN_ID})
    tx = await _customer(coord, 1, node_id=TAKEN_ID)
    assert tx.apply_errors
    again = await coord.retry()
    assert (again.found, again.failed) == (1, 1)
    letters = await coord.dead_letters()
    assert [d.txid for d in letters] == [tx.txid]
    assert await coord.prune(0.0) == 0  # dead letters are kept until they apply


async def test_a_redis_turn_sends_every_queued_intent_in_one_round_trip(
    coord: Coordinator, stores: Stores
) -> None:
    turns = coord.cache_applier.turns
    before = coord.stats()["cache_round_trips"]
    async with turns.turn(turns.take()):  # ten commits queue behind this turn
        tasks = [asyncio.create_task(_customer(coord, n)) for n in range(10)]
        while coord.stats()["committed"] < 10:
            await asyncio.sleep(0)
    txs = await asyncio.gather(*tasks)
    assert coord.stats()["cache_round_trips"] - before == 1
    cids = [tx.intent.graph_ops[0][1]["id"] for tx in txs]
    values = await stores.cache.execute("MGET", *(f"customer:{c}" for c in cids))
    assert all(v is not None for v in values)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("graph_batch_size", 0),
        ("graph_batch_size", 1025),
        ("graph_batch_size", 2.5),
        ("lock_timeout", 0),
        ("lock_timeout", float("nan")),
        ("max_replays", 0),
        ("graph_wait", -0.001),
        ("graph_wait", 3601.0),
        ("graph_wait", float("nan")),
        ("ordering", "eventually"),
        ("graph_batch_wait", 0.01),  # gone: batches form while the previous one is applied
    ],
)
def test_options_are_bounded(stores: Stores, option: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=option):
        Coordinator.for_stores(stores, **{option: value})


@pytest.mark.parametrize("graph_wait", [0.0, 0.05])
async def test_a_stalled_graph_apply_holds_a_commit_at_most_graph_wait(
    stores: Stores, graph_wait: float
) -> None:
    # The applier held, as a Kuzu checkpoint holds it: the commit returns with the graph pending
    # (after graph_wait; the old wait had no bound and returned only once the apply ended), and
    # tx.applied() waits for the apply, which goes on once the applier is free.
    coord = Coordinator.for_stores(stores, recovery_interval=None, graph_wait=graph_wait)
    await coord.open()
    applier = coord.graph_applier
    try:
        await applier.lock.acquire()
        try:
            # A hang guard, not a speed bound: without the bound the commit never returns here.
            tx = await asyncio.wait_for(_customer(coord, 1), timeout=60)
            assert tx.committed and tx.pending == ("graph",)
            assert coord.stats()["graph_wait_expired"] == 1
            cid = tx.intent.graph_ops[0][1]["id"]
            assert await stores.cache.execute("EXISTS", f"customer:{cid}") == 1  # not held
            rows = "MATCH (c:Customer {id: $id}) RETURN c.id"
            assert await stores.graph.query_rows(rows, {"id": cid}) == []
        finally:
            applier.lock.release()
        await tx.applied(timeout=60)
        assert tx.pending == () and tx.apply_errors == []
        assert await stores.graph.query_rows(rows, {"id": cid}) == [[cid]]
        report = await validate_consistency(coord, entities=[_check(cid)])
        assert report.ok, report.summary()
    finally:
        await coord.close()


async def test_batch_size_one_applies_each_transaction_on_its_own(stores: Stores) -> None:
    coord = Coordinator.for_stores(stores, recovery_interval=None, graph_batch_size=1)
    await coord.open()
    try:
        await _queued(coord, [_customer(coord, n) for n in range(4)])
        assert coord.stats()["graph_batches"] == 4
    finally:
        await coord.close()


async def test_close_applies_what_is_queued(stores: Stores) -> None:
    coord = Coordinator.for_stores(stores, recovery_interval=None)
    await coord.open()
    applier = coord.graph_applier
    await applier.lock.acquire()
    task = asyncio.create_task(_customer(coord, 1))
    while not applier.queue:
        await asyncio.sleep(0)
    assert await stores.graph.query_rows("MATCH (c:Customer) RETURN count(c)") == [[0]]
    applier.lock.release()
    await coord.close()
    tx = await task
    assert tx.committed and tx.pending == ()
    assert await stores.graph.query_rows("MATCH (c:Customer) RETURN count(c)") == [[1]]
