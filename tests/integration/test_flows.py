"""Production data flows on the real stores: the order pipeline, recommendations, scenarios.

Nothing is mocked: orders go through the coordinator into SQLite (whose generated columns and
analytics SQL compute the numbers), Kuzu and the session's Redis. Only the clock is injected
(``at=``) where a test needs orders in a given month.
"""

from __future__ import annotations

import asyncio
import gc
import json
from typing import Any

import pytest

from tristore.coordinator import Coordinator, graph_merge
from tristore.errors import QueryError
from tristore.flows import (
    FlowValidationError,
    OrderPipeline,
    Recommendations,
    analytics_key,
    cache_synchronization,
    check_consistency,
    cross_database_coordination,
    database_stress_test,
    read_events,
)
from tristore.flows.pipeline import NODES_IN_GRAPH_CYPHER, PURCHASE_EDGE_CYPHER
from tristore.flows.recommendations import generation_key, value_key
from tristore.monitor import current_rss
from tristore.schema import ORDER_SUMMARY_SQL, RECOMMENDATIONS_CYPHER, order_amounts_py
from tristore.testing import Stores
from tristore.testing.factories import Factory

EDGES = "MATCH (c:Customer)-[r:PURCHASED]->(p:Product) RETURN r.order_id, c.id, p.id ORDER BY 1"


@pytest.fixture
def pipeline(stores: Stores, coordinator: Coordinator) -> OrderPipeline:
    return OrderPipeline(stores, coordinator)


async def _hash(stores: Stores, key: str) -> dict[str, str]:
    raw = await stores.cache.execute("HGETALL", key)
    return {k.decode(): v.decode() for k, v in raw.items()}


async def test_an_order_reaches_all_three_stores_as_sqlite_computed_it(
    stores: Stores, pipeline: OrderPipeline, factory: Factory
) -> None:
    customer = await factory.customer(tier="gold")  # 10 % tier discount
    product = await factory.product(price=19.99)
    result = await pipeline.place_order(customer.id, product.id, 3, at="2026-11-05 10:00:00")

    assert result.pending == ()
    order = result.order
    # SQLite copied the product's price and the tier's discount, then computed the amounts.
    assert (order["price"], order["quantity"], order["discount"]) == (19.99, 3, 0.1)
    expected = order_amounts_py(19.99, 3, 0.1)
    assert (order["total_price"], order["discount_amount"], order["final_price"]) == expected
    row = await stores.sqlite.fetchone(
        "SELECT total_price, discount_amount, final_price FROM orders WHERE id = ?", (order["id"],)
    )
    assert tuple(row) == expected

    # Analytics recomputed in the same transaction, equal to an independent summary.
    summary = await stores.sqlite.fetchone(
        ORDER_SUMMARY_SQL, {"period": "2026-11", "customer_id": customer.id}
    )
    assert result.analytics["total_orders"] == summary[1] == 1
    assert result.analytics["total_spent"] == summary[2] == expected.final_price

    # Kuzu: nodes merged from SQLite's rows, one edge for the order.
    assert await stores.graph.query_rows(EDGES) == [[order["id"], customer.id, product.id]]
    names = await stores.graph.query_rows(
        "MATCH (c:Customer {id: $c}), (p:Product {id: $p}) RETURN c.name, c.tier, p.price",
        {"c": customer.id, "p": product.id},
    )
    assert names == [[customer.name, "gold", 19.99]]

    # Redis: the analytics hash, versioned by the order id.
    cached = await _hash(stores, analytics_key(customer.id, "2026-11"))
    assert cached["total_orders"] == "1"
    assert float(cached["total_spent"]) == expected.final_price
    assert cached["version"] == str(order["id"])

    await pipeline.validate(result)


async def test_analytics_accumulate_per_month(
    stores: Stores, pipeline: OrderPipeline, factory: Factory
) -> None:
    customer = await factory.customer(tier="silver")
    products = [await factory.product() for _ in range(3)]
    november = [
        await pipeline.place_order(customer.id, p.id, q, at=f"2026-11-{d:02d} 09:00:00")
        for p, q, d in zip(products, (1, 2, 4), (1, 15, 30), strict=True)
    ]
    december = await pipeline.place_order(customer.id, products[0].id, 1, at="2026-12-01 00:00:00")

    cents = sum(round(r.order["final_price"] * 100) for r in november)
    last = november[-1].analytics
    assert (last["period"], last["total_orders"], last["total_spent"]) == (
        "2026-11",
        3,
        cents / 100,
    )
    assert december.analytics["total_orders"] == 1
    assert december.period == "2026-12"
    for result in (*november, december):
        await pipeline.validate(result)  # validates against what the stores hold now
    cached = await _hash(stores, analytics_key(customer.id, "2026-11"))
    assert (cached["total_orders"], float(cached["total_spent"])) == ("3", cents / 100)


async def test_an_order_adds_its_nodes_to_the_graph_before_its_edge(
    stores: Stores, pipeline: OrderPipeline, factory: Factory
) -> None:
    """The order's edge only MATCHes its nodes (so that a batch of orders is one UNWIND
    statement): a customer and a product that SQLite holds and the graph does not get their
    nodes first, from their SQLite rows, in a transaction of their own."""
    ann, x = await factory.customer(), await factory.product()
    ids = {"customer_id": ann.id, "product_id": x.id}
    assert await stores.graph.query_rows(NODES_IN_GRAPH_CYPHER, ids) == [[0, 0]]
    first = await pipeline.place_order(ann.id, x.id, 2)
    await pipeline.validate(first)
    assert await stores.graph.query_rows(
        "MATCH (c:Customer {id: $customer_id})-[r:PURCHASED]->(p:Product {id: $product_id}) "
        "RETURN c.name, c.tier, p.name, p.price, r.order_id",
        ids,
    ) == [[ann.name, ann.tier, x.name, x.price, first.order["id"]]]
    committed = coordinator_committed(pipeline)
    reads = stores.graph.readers.stats()["requests_num"]
    second = await pipeline.place_order(ann.id, x.id, 1)  # known nodes: one transaction, no read
    assert stores.graph.readers.stats()["requests_num"] == reads
    assert coordinator_committed(pipeline) == committed + 1
    await pipeline.validate(second)


def coordinator_committed(pipeline: OrderPipeline) -> int:
    return int(pipeline.coordinator.stats()["committed"])


def test_the_order_edge_is_folded_into_one_statement_per_batch() -> None:
    # What makes a batch of orders one Kuzu statement: no MERGE, SET or WHERE in the edge.
    assert graph_merge.mergeable(PURCHASE_EDGE_CYPHER)


async def test_nodes_the_graph_does_not_take_place_no_order(
    stores: Stores, coordinator: Coordinator, pipeline: OrderPipeline, factory: Factory
) -> None:
    ann, x = await factory.customer(), await factory.product()
    # A deterministic error (the engine rejects the ops): dead-lettered, not kept for a replay.
    refused = RuntimeError("Runtime exception: injected, the graph refuses the nodes")
    coordinator.faults.arm("graph.commit", refused, times=5)
    with pytest.raises(QueryError, match="the graph did not take customer"):
        await pipeline.place_order(ann.id, x.id, 1)
    assert (await stores.sqlite.fetchone("SELECT count(*) FROM orders"))[0] == 0
    coordinator.faults.disarm()
    await coordinator.retry()  # the dead letter, after the fix
    result = await pipeline.place_order(ann.id, x.id, 1)
    await pipeline.validate(result)


async def test_nodes_kept_for_a_replay_are_waited_for(
    stores: Stores, coordinator: Coordinator, pipeline: OrderPipeline, factory: Factory
) -> None:
    # A failed Kuzu commit of the nodes' transaction keeps it for a replay: the order waits for
    # the replay, so its edge finds the nodes.
    ann, x = await factory.customer(), await factory.product()
    coordinator.faults.arm("graph.commit", RuntimeError("injected: kuzu write failed"))
    result = await pipeline.place_order(ann.id, x.id, 1)
    assert result.pending == ()
    await pipeline.validate(result)


async def test_a_rejected_order_leaves_no_trace(
    stores: Stores, pipeline: OrderPipeline, factory: Factory
) -> None:
    product = await factory.product()
    with pytest.raises(QueryError, match="no customer 999999"):
        await pipeline.place_order(999_999, product.id, 1)
    customer = await factory.customer()
    with pytest.raises(QueryError):
        # quantity 0 violates orders_quantity_positive: SQLite's CHECK, raised as QueryError.
        await pipeline.place_order(customer.id, product.id, 0)
    assert (await stores.sqlite.fetchone("SELECT count(*) FROM orders"))[0] == 0
    assert (await stores.sqlite.fetchone("SELECT count(*) FROM analytics"))[0] == 0
    assert await stores.graph.query_rows(EDGES) == []
    assert await read_events(stores.cache) == []
    assert await stores.cache.execute("KEYS", "tristore:analytics:*") == []


async def test_validation_reports_drift_in_each_store(
    stores: Stores, pipeline: OrderPipeline, factory: Factory
) -> None:
    customer, product = await factory.customer(), await factory.product()
    result = await pipeline.place_order(customer.id, product.id, 2)
    await pipeline.validate(result)

    await stores.cache.execute("HSET", result.cache_key, "total_orders", "7")
    with pytest.raises(FlowValidationError, match="cache") as info:
        await pipeline.validate(result)
    assert len(info.value.problems) == 1

    await stores.cache.execute("HSET", result.cache_key, "total_orders", "1")
    await pipeline.validate(result)
    await stores.graph.execute(
        "MATCH ()-[r:PURCHASED {order_id: $o}]->() DELETE r", {"o": result.order["id"]}
    )
    with pytest.raises(FlowValidationError, match="graph edges"):
        await pipeline.validate(result)
    problems = await check_consistency(pipeline, [result.order["id"]], txids=[result.txid])
    assert any("graph" in p for p in problems)


async def test_concurrent_orders_stay_consistent(
    stores: Stores, pipeline: OrderPipeline, factory: Factory
) -> None:
    customers = [await factory.customer() for _ in range(3)]
    products = [await factory.product() for _ in range(4)]
    results = await asyncio.gather(
        *(
            pipeline.place_order(customers[i % 3].id, products[i % 4].id, 1 + i % 3)
            for i in range(24)
        )
    )
    ids = [r.order["id"] for r in results]
    assert len(set(ids)) == 24
    assert await check_consistency(pipeline, ids, txids=[r.txid for r in results]) == []
    # The cache holds the analytics of the last commit per customer (commit order is kept).
    for customer in customers:
        mine = [r for r in results if r.order["customer_id"] == customer.id]
        newest = max(mine, key=lambda r: r.order["id"])
        cached = await _hash(stores, newest.cache_key)
        assert cached["version"] == str(newest.order["id"])
        assert int(cached["total_orders"]) == len(mine)


async def test_recommendations_are_cached_and_invalidated_by_orders(
    stores: Stores, pipeline: OrderPipeline, factory: Factory
) -> None:
    ann, ben, cat = [await factory.customer() for _ in range(3)]
    x, y, z = [await factory.product() for _ in range(3)]
    for customer, product in ((ann, x), (ann, y), (ben, x), (ben, y), (ann, z)):
        await pipeline.place_order(customer.id, product.id, 1)
    recs = Recommendations(stores.graph, stores.cache, limit=5)

    first = await recs.get(x.id)
    assert [(r.product_id, r.buyers) for r in first] == [(y.id, 2), (z.id, 1)]
    assert (recs.hits, recs.misses) == (0, 1)
    assert await recs.get(x.id) == first
    assert (recs.hits, recs.misses) == (1, 1)

    # Cat buys x and z: x's answer changes (z now has 2 co-buyers), and so does z's.
    await pipeline.place_order(cat.id, x.id, 1)
    await pipeline.place_order(cat.id, z.id, 1)
    again = await recs.get(x.id)
    assert recs.misses == 2  # invalidated, recomputed from the graph
    assert sorted((r.product_id, r.buyers) for r in again) == [(y.id, 2), (z.id, 2)]
    z_recs = await recs.get(z.id)
    assert sorted((r.product_id, r.buyers) for r in z_recs) == [(x.id, 2), (y.id, 1)]


async def test_a_repeat_purchase_invalidates_nothing_and_no_answer_goes_stale(
    stores: Stores, pipeline: OrderPipeline, factory: Factory
) -> None:
    """Recommendations count distinct co-buyers: buying a product again changes none of them, so
    the order invalidates nothing, while a first purchase of a product invalidates all of the
    customer's products."""
    ann, ben = await factory.customer(), await factory.customer()
    x, y, z = [await factory.product() for _ in range(3)]
    first = await pipeline.place_order(ann.id, x.id, 1)
    second = await pipeline.place_order(ann.id, y.id, 1)
    assert (first.invalidated, second.invalidated) == ((x.id,), tuple(sorted((x.id, y.id))))
    await pipeline.place_order(ben.id, x.id, 1)
    recs = Recommendations(stores.graph, stores.cache, limit=5)
    cached = {p.id: await recs.get(p.id) for p in (x, y)}

    again = await pipeline.place_order(ann.id, x.id, 2)
    assert again.invalidated == ()
    for product in (x, y):
        assert await recs.get(product.id) == cached[product.id]  # served from the cache
        fresh = Recommendations(stores.graph, stores.cache, limit=5)
        await stores.cache.delete(value_key(product.id))
        assert await fresh.get(product.id) == cached[product.id]  # and what the graph says now
    assert recs.misses == 2 and recs.hits == 2

    # A cancelled order does not count as a purchase (the graph leaves it out too).
    await stores.sqlite.execute(
        "UPDATE orders SET status = 'cancelled' WHERE customer_id = ? AND product_id = ?",
        (ben.id, x.id),
    )
    after_cancel = await pipeline.place_order(ben.id, x.id, 1)
    assert after_cancel.invalidated == (x.id,)
    new_product = await pipeline.place_order(ann.id, z.id, 1)
    assert new_product.invalidated == tuple(sorted((x.id, y.id, z.id)))


async def test_a_stale_answer_written_after_invalidation_is_never_served(
    stores: Stores, pipeline: OrderPipeline, factory: Factory
) -> None:
    """The race plain DEL-on-change loses: a slow reader stores an answer computed before the
    graph changed, after the invalidation. Its generation tag gives it away."""
    ann, ben = await factory.customer(), await factory.customer()
    x, y = await factory.product(), await factory.product()
    await pipeline.place_order(ann.id, x.id, 1)
    await pipeline.place_order(ann.id, y.id, 1)
    recs = Recommendations(stores.graph, stores.cache)
    stale_generation = int(await stores.cache.get(generation_key(x.id)) or 0)

    await pipeline.place_order(ben.id, x.id, 1)  # invalidates x (generation bumped)
    await pipeline.place_order(ben.id, y.id, 1)  # y now has 2 co-buyers with x
    stale = {"gen": stale_generation, "limit": recs.limit, "items": [[y.id, "old", 1]]}
    await stores.cache.set(value_key(x.id), json.dumps(stale))

    fresh = await recs.get(x.id)
    assert [(r.product_id, r.buyers) for r in fresh] == [(y.id, 2)]
    assert recs.misses == 1


# -- scenarios (short runs: behaviour, not speed) --------------------------------------------


async def _catalog(factory: Factory, customers: int = 8, products: int = 6) -> None:
    for _ in range(customers):
        await factory.customer()
    for _ in range(products):
        await factory.product()


def _report_shape(report: Any) -> None:
    data = report.to_dict()
    json.dumps(data)
    assert report.operations > 0
    assert report.errors == 0, report.error_types
    assert report.success_rate == 1.0
    assert report.throughput_ops_s > 0
    assert 0 < report.p50_ms <= report.p99_ms <= report.max_ms
    assert report.rss_start_bytes > 0
    assert report.rss_peak_bytes >= report.rss_start_bytes


async def test_database_stress_test_runs_a_mixed_load(
    pipeline: OrderPipeline, factory: Factory
) -> None:
    await _catalog(factory)
    seen: list[Any] = []
    report = await database_stress_test(
        pipeline,
        duration=1.5,
        users=5,
        ops_per_user=4,
        progress=seen.append,
        progress_interval=0.5,
    )
    _report_shape(report)
    assert report.target_met
    assert report.details["sessions"] >= 5
    ops = report.details["operations"]
    assert {"redis.get", "sqlite.read", "flow.place_order"} <= set(ops)
    assert seen and seen[-1].operations > 0
    assert report.sync_lag_p99_ms is None


async def test_stress_test_respects_its_rate(pipeline: OrderPipeline, factory: Factory) -> None:
    await _catalog(factory)
    report = await database_stress_test(pipeline, duration=1.0, users=4, rate=40)
    _report_shape(report)
    assert report.operations <= 40 * 1.0 + 5  # open-loop slots, never more than the schedule


async def test_cross_database_coordination_checks_every_order(
    pipeline: OrderPipeline, factory: Factory
) -> None:
    await _catalog(factory)
    report = await cross_database_coordination(pipeline, duration=1.5, concurrency=5)
    _report_shape(report)
    assert report.details["orders_placed"] == report.operations
    assert report.details["inconsistency_count"] == 0
    assert report.target_met


async def test_cache_synchronization_measures_sync_lag(
    pipeline: OrderPipeline, factory: Factory
) -> None:
    await _catalog(factory)
    report = await cache_synchronization(pipeline, duration=1.5, cache_rate=40, db_rate=20)
    _report_shape(report)
    dashboard = report.details["dashboard"]
    orders = report.details["operations"]["flow.place_order"]["ok"]
    assert dashboard["received"] == orders  # one analytics event per order
    assert dashboard["sync_lag"]["count"] == orders  # each one seen in the cache
    assert dashboard["not_visible"] == 0
    assert report.sync_lag_p50_ms is not None and report.sync_lag_p99_ms is not None
    assert 0 < report.sync_lag_p50_ms <= report.sync_lag_p99_ms
    # target_met compares the lag with the spec's 100 ms: speed, which tests do not assert.


async def test_scenarios_refuse_nonsense_parameters(pipeline: OrderPipeline) -> None:
    with pytest.raises(ValueError, match="duration"):
        await cross_database_coordination(pipeline, duration=0)
    with pytest.raises(ValueError, match="seed first"):
        await cross_database_coordination(pipeline, duration=0.1)  # no customers yet


async def test_prepared_graph_reads_do_not_grow_memory(stores: Stores) -> None:
    """Kuzu 0.11.3 keeps every statement ``execute(text, params)`` prepares (~57 KiB per
    recommendation query, 85 MiB per 1500 here); GraphStore reuses prepared statements."""
    reads = stores.graph
    for i in range(100):  # warm: the statement, the reader connections, the buffer pool
        await reads.query_rows(RECOMMENDATIONS_CYPHER, {"product_id": i, "limit": 5})
    gc.collect()
    before = current_rss()
    for i in range(1500):
        assert await reads.query_rows(RECOMMENDATIONS_CYPHER, {"product_id": i, "limit": 5}) == []
    gc.collect()
    assert current_rss() - before < 16 * 1024 * 1024
