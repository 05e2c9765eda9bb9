"""Realtime subscriptions: order inserts and analytics updates arrive with SQLite's numbers.

Each event must carry the computed columns exactly (``==`` on floats) as SQLite computed them:
the generated money columns of the order row, and the analytics totals as of that commit.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tristore.coordinator import Coordinator
from tristore.errors import QueryError
from tristore.flows import (
    ANALYTICS_UPDATED,
    ORDER_INSERTED,
    Dashboard,
    Event,
    OrderPipeline,
    read_events,
)
from tristore.flows.events import xadd_command
from tristore.flows.pipeline import ORDER_COLUMNS, SELECT_ORDER_SQL
from tristore.stores.cache import _Client
from tristore.testing import Stores
from tristore.testing.factories import Factory

# Discounts of every tier, prices a hair from a half cent, several quantities: the cases where a
# float formula and SQLite's integer-cent columns could disagree.
CASES = [
    ("standard", 19.99, 1),
    ("silver", 0.05, 3),
    ("gold", 1234.57, 7),
    ("silver", 33.35, 2),
    ("gold", 0.49, 5),
]

# Analytics of one customer and month as of a given order (the order's id is the version):
# what the analytics row held right after that order's commit.
ANALYTICS_AS_OF_SQL = """
SELECT count(*), sum(CAST(final_price * 100 + 0.5 AS INTEGER)) / 100.0
FROM orders
WHERE customer_id = :customer_id AND status <> 'cancelled' AND id <= :version
  AND created_at >= :period || '-01' AND created_at < date(:period || '-01', '+1 month')
"""


@pytest.fixture
def pipeline(stores: Stores, coordinator: Coordinator) -> OrderPipeline:
    return OrderPipeline(stores, coordinator)


async def _place_cases(pipeline: OrderPipeline, factory: Factory) -> list[int]:
    ids = []
    for tier, price, quantity in CASES:
        customer = await factory.customer(tier=tier)
        product = await factory.product(price=price)
        result = await pipeline.place_order(customer.id, product.id, quantity)
        # Same customer again: the analytics event of the second order carries a sum of two.
        again = await pipeline.place_order(customer.id, product.id, 1)
        ids += [result.order["id"], again.order["id"]]
    return ids


async def _wait_count(dashboard: Dashboard, n: int, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while dashboard.received < n:
            await dashboard.wait_for(lambda e: True, timeout)
            await asyncio.sleep(0.01)


async def test_order_insert_events_carry_sqlite_computed_columns(
    stores: Stores, pipeline: OrderPipeline, factory: Factory
) -> None:
    async with Dashboard(stores.cache, types={ORDER_INSERTED}) as orders:
        ids = await _place_cases(pipeline, factory)
        await _wait_count(orders, len(ids))
    events = list(orders.events)
    assert [e.data["id"] for e in events] == ids  # commit order, each once
    for event in events:
        row = await stores.sqlite.fetchone(SELECT_ORDER_SQL, (event.data["id"],))
        stored = dict(zip(ORDER_COLUMNS, row, strict=True))
        # Every column, generated ones included, bit for bit.
        assert {k: event.data[k] for k in ORDER_COLUMNS} == stored
        for column in ("total_price", "discount_amount", "final_price"):
            assert type(event.data[column]) is float
            assert event.data[column] == stored[column]
        assert event.data["version"] == stored["id"]
    assert orders.event_latency.count == len(ids)


async def test_analytics_update_events_carry_the_totals_of_their_commit(
    stores: Stores, pipeline: OrderPipeline, factory: Factory
) -> None:
    async with Dashboard(stores.cache, types={ANALYTICS_UPDATED}) as analytics:
        ids = await _place_cases(pipeline, factory)
        await _wait_count(analytics, len(ids))
        await analytics.drain()
    events = list(analytics.events)
    assert [e.data["order_id"] for e in events] == ids
    for event in events:
        data = event.data
        as_of = await stores.sqlite.fetchone(
            ANALYTICS_AS_OF_SQL,
            {
                "customer_id": data["customer_id"],
                "version": data["version"],
                "period": data["period"],
            },
        )
        assert (data["total_orders"], data["total_spent"]) == tuple(as_of)
    # The second order of each customer: the latest analytics row equals its event exactly.
    for event in events[1::2]:
        row = await stores.sqlite.fetchone(
            "SELECT total_orders, total_spent FROM analytics WHERE customer_id = ? AND period = ?",
            (event.data["customer_id"], event.data["period"]),
        )
        assert (event.data["total_orders"], event.data["total_spent"]) == tuple(row)
    # Every announced cache value was seen by an independent reader: the sync lag is measured.
    assert analytics.sync_lag.count == len(ids)
    assert analytics.not_visible == 0


async def test_both_subscriptions_see_one_ordered_stream(
    stores: Stores, pipeline: OrderPipeline, factory: Factory
) -> None:
    customer, product = await factory.customer(), await factory.product()
    seen: list[Event] = []
    async with Dashboard(stores.cache, on_event=seen.append) as everything:
        result = await pipeline.place_order(customer.id, product.id, 2)
        await _wait_count(everything, 2)
    assert [e.type for e in seen] == [ORDER_INSERTED, ANALYTICS_UPDATED]
    assert {e.txid for e in seen} == {result.txid}
    assert seen[0].ts == seen[1].ts == result.commit_ts


async def test_a_late_subscriber_replays_the_stream(
    stores: Stores, pipeline: OrderPipeline, factory: Factory
) -> None:
    customer, product = await factory.customer(), await factory.product()
    first = await pipeline.place_order(customer.id, product.id, 1)
    second = await pipeline.place_order(customer.id, product.id, 1)

    replayed = await read_events(stores.cache)
    assert [(e.type, e.txid) for e in replayed] == [
        (ORDER_INSERTED, first.txid),
        (ANALYTICS_UPDATED, first.txid),
        (ORDER_INSERTED, second.txid),
        (ANALYTICS_UPDATED, second.txid),
    ]
    # A dashboard (re)connecting after the first transaction resumes from where it left off.
    async with Dashboard(stores.cache, from_id=replayed[1].id) as late:
        await _wait_count(late, 2)
    assert [e.data.get("order_id", e.data.get("id")) for e in late.events] == [
        second.order["id"],
        second.order["id"],
    ]
    # A new subscriber (no from_id) sees only what comes after it started.
    async with Dashboard(stores.cache) as fresh:
        await asyncio.sleep(0.05)
    assert fresh.received == 0


async def test_a_rolled_back_order_publishes_nothing(
    stores: Stores, pipeline: OrderPipeline, factory: Factory
) -> None:
    product = await factory.product()
    async with Dashboard(stores.cache) as dashboard:
        with pytest.raises(QueryError):
            await pipeline.place_order(424_242, product.id, 1)
        await asyncio.sleep(0.05)
    assert dashboard.received == 0
    assert await read_events(stores.cache) == []


async def test_a_malformed_entry_is_a_typed_error(stores: Stores) -> None:
    await stores.cache.execute("XADD", "tristore:events", "*", "type", "x")
    with pytest.raises(QueryError, match="malformed event"):
        await read_events(stores.cache)
    command = xadd_command("t", {"a": 0.1 + 0.2}, ts=1.5, txid="abc", stream="s")
    await stores.cache.execute(*command)
    (event,) = await read_events(stores.cache, stream="s")
    assert event.data == {"a": 0.1 + 0.2}  # floats round-trip exactly
    assert (event.ts, event.txid, event.type) == (1.5, "abc", "t")


async def test_stop_returns_even_if_the_readers_cancel_is_lost(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancel of the blocked XREAD can be lost on its way through redis-py (a `make test` run
    hung for good in stop(), the reader still in XREAD). Here the first cancel is swallowed and
    the XREAD returns nothing; stop() must still return."""
    lost: list[bool] = []
    original = _Client.xread

    async def xread_losing_one_cancel(self: _Client, *args: Any, **kwargs: Any) -> Any:
        try:
            return await original(self, *args, **kwargs)
        except asyncio.CancelledError:
            if lost:
                raise
            lost.append(True)
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
            return None

    monkeypatch.setattr(_Client, "xread", xread_losing_one_cancel)
    dashboard = Dashboard(stores.cache, block_ms=60_000)
    await dashboard.start()
    await asyncio.sleep(0.05)  # the reader is blocked in XREAD
    stopping = asyncio.create_task(dashboard.stop())
    done, _ = await asyncio.wait([stopping], timeout=10)  # waits without cancelling stop()
    if not done:  # clean up the hung reader before failing
        stopping.cancel()
    assert done, "stop() did not return after the reader's cancel was lost"
    assert lost == [True]
