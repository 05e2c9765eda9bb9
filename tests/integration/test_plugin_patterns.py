"""The database-testing patterns of the specification, each against the real stores.

Nothing here is mocked: SQLite computes the generated columns and runs the registered function,
Kuzu holds the graph, redis-server delivers the pub/sub messages. ``place_order`` below stands for
the application code a user of the plugin would test: one order through the three stores.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from typing import Any

import pytest

from tristore.errors import QueryError
from tristore.schema import (
    REFRESH_ANALYTICS_SQL,
    calculate_total_py,
    invoice_amounts_py,
    mean_rating_py,
    order_amounts_py,
    to_cents,
)
from tristore.stores import SQLiteStore
from tristore.testing import (
    Factory,
    Stores,
    assert_absent,
    assert_computed_columns,
    assert_consistent,
    assert_referential_integrity,
)

ORDERS_CHANNEL = "orders"


def order_key(order_id: int) -> str:
    return f"order:{order_id}"


def analytics_key(customer_id: int, period: str) -> str:
    return f"analytics:{customer_id}:{period}"


async def place_order(
    stores: Stores,
    customer_id: int,
    product_id: int,
    quantity: int,
    *,
    at: str = "2026-11-15 12:00:00",
    status: str = "placed",
) -> int:
    """Application code under test: order → analytics in SQLite, edge in Kuzu, cache + event."""
    period = at[:7]

    def write(conn: sqlite3.Connection) -> dict[str, Any]:
        found = conn.execute(
            "SELECT p.price, t.discount FROM products AS p, customers AS c"
            " JOIN pricing_tiers AS t ON t.tier = c.tier WHERE p.id = ? AND c.id = ?",
            (product_id, customer_id),
        ).fetchone()
        price, discount = found if found is not None else (0.0, 0.0)  # FK error follows
        cur = conn.execute(
            "INSERT INTO orders"
            " (customer_id, product_id, price, quantity, discount, status, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING *",
            (customer_id, product_id, price, quantity, discount, status, at),
        )
        order = dict(zip([d[0] for d in cur.description], cur.fetchone(), strict=True))
        cur.close()
        conn.execute(REFRESH_ANALYTICS_SQL, {"period": period, "customer_id": customer_id})
        order["analytics"] = conn.execute(
            "SELECT total_orders, total_spent FROM analytics WHERE customer_id = ? AND period = ?",
            (customer_id, period),
        ).fetchone()
        return order

    order = await stores.sqlite.write(write)
    if status != "cancelled":
        await stores.graph.execute(
            "MATCH (c:Customer {id: $c}), (p:Product {id: $p})"
            " CREATE (c)-[:PURCHASED {order_id: $o, quantity: $q, at: timestamp($at)}]->(p)",
            {"c": customer_id, "p": product_id, "o": order["id"], "q": quantity, "at": at},
        )
    total_orders, total_spent = order["analytics"]
    await stores.cache.pipeline(
        [
            (
                "HSET",
                order_key(order["id"]),
                *("customer_id", customer_id, "quantity", quantity),
                *("final_price", order["final_price"], "status", status),
            ),
            (
                "HSET",
                analytics_key(customer_id, period),
                *("total_orders", total_orders, "total_spent", total_spent),
            ),
        ]
    )
    event = {"event": "order_created", "order_id": order["id"], "customer_id": customer_id}
    await stores.cache.publish(ORDERS_CHANNEL, json.dumps(event))
    return int(order["id"])


# --- computed columns ----------------------------------------------------------------------------

# (price, quantity, discount): charm prices, float-noisy cents (19.99 * 100 = 1998.999...), exact
# half cents of discount (0.10 * 0.05 = 0.5 cent), big totals, no discount and full discount.
AMOUNTS = [
    (19.99, 3, 0.15),
    (0.10, 1, 0.05),
    (0.01, 1, 0.5),
    (1234.56, 5, 0.0),
    (10.05, 7, 0.075),
    (2.67, 1, 0.1),
    (999.99, 2, 1.0),
    (0.0, 4, 0.1),
]


async def test_computed_columns_equal_the_business_rule(
    factory: Factory, sqlite_store: SQLiteStore
) -> None:
    product = await factory.product()
    for price, quantity, discount in AMOUNTS:
        order = await factory.order(
            product=product, price=price, quantity=quantity, discount=discount
        )
        amounts = order_amounts_py(price, quantity, discount)
        assert (order.total_price, order.discount_amount, order.final_price) == amounts
        # The parts add up to the whole, to the cent.
        assert to_cents(order.discount_amount) + to_cents(order.final_price) == to_cents(
            order.total_price
        )
        invoice = await factory.invoice(order=order, tax_rate=0.19)
        assert (invoice.tax_amount, invoice.grand_total) == invoice_amounts_py(
            order.final_price, 0.19
        )
    checked = await assert_computed_columns(sqlite_store)
    assert checked["orders"] == len(AMOUNTS) and checked["invoices"] == len(AMOUNTS)


async def test_computed_columns_follow_an_update(
    factory: Factory, sqlite_store: SQLiteStore
) -> None:
    order = await factory.order(price=19.99, quantity=1, discount=0.0)
    await sqlite_store.execute(
        "UPDATE orders SET quantity = 4, discount = 0.15 WHERE id = ?", (order.id,)
    )
    row = await sqlite_store.fetchone(
        "SELECT total_price, discount_amount, final_price FROM orders WHERE id = ?", (order.id,)
    )
    assert tuple(row) == order_amounts_py(19.99, 4, 0.15)
    await assert_computed_columns(sqlite_store)


async def test_product_rating_is_the_mean_kept_by_triggers(
    factory: Factory, sqlite_store: SQLiteStore
) -> None:
    product = await factory.product()
    stars = [5, 4, 4]
    for n in stars:
        await factory.rating(product=product, rating=n)
    (rating,) = await sqlite_store.fetchone(
        "SELECT rating FROM products WHERE id = ?", (product.id,)
    )
    assert rating == mean_rating_py(stars) == 4.33
    await sqlite_store.execute("DELETE FROM product_ratings WHERE product_id = ?", (product.id,))
    assert await sqlite_store.fetchone(
        "SELECT rating FROM products WHERE id = ?", (product.id,)
    ) == (None,)
    await assert_computed_columns(sqlite_store)


# --- a stored SQL function -----------------------------------------------------------------------


async def test_calculate_total_in_sql_matches_the_rule_and_the_invoice(
    factory: Factory, sqlite_store: SQLiteStore
) -> None:
    for price, quantity, discount in AMOUNTS:
        order = await factory.order(price=price, quantity=quantity, discount=discount)
        invoice = await factory.invoice(order=order, tax_rate=0.0725)
        (in_sql,) = await sqlite_store.fetchone(
            "SELECT calculate_total(price, quantity, discount, ?) FROM orders WHERE id = ?",
            (0.0725, order.id),
        )
        assert in_sql == calculate_total_py(price, quantity, discount, 0.0725)
        assert in_sql == invoice.grand_total
    # SQL semantics: NULL in, NULL out; on the writer lane as on the readers.
    assert await sqlite_store.fetchone("SELECT calculate_total(NULL, 1, 0, 0)") == (None,)
    on_writer = await sqlite_store.write(
        lambda c: c.execute("SELECT calculate_total(10.0, 3, 0.1, 0.2)").fetchone()[0]
    )
    assert on_writer == calculate_total_py(10.0, 3, 0.1, 0.2) == 32.4


@pytest.mark.parametrize(
    "args", [(-1.0, 1, 0.0, 0.0), (1.0, 0, 0.0, 0.0), (1.0, 1, 1.5, 0.0), ("ten", 1, 0.0, 0.0)]
)
async def test_calculate_total_refuses_bad_input_with_a_query_error(
    sqlite_store: SQLiteStore, args: tuple[Any, ...]
) -> None:
    with pytest.raises(QueryError, match="user-defined function raised exception"):
        await sqlite_store.fetchone("SELECT calculate_total(?, ?, ?, ?)", args)


# --- transactional rollback leaves no trace ------------------------------------------------------


async def test_failed_order_leaves_no_trace_in_any_store(stores: Stores) -> None:
    factory = Factory(stores.sqlite, graph=stores.graph)
    customer = await factory.customer()
    missing_product = 999_999
    with pytest.raises(QueryError, match="FOREIGN KEY"):
        await place_order(stores, customer.id, missing_product, 2)
    # The INSERT and the analytics refresh were one transaction: both gone. Nothing reached the
    # graph or the cache, because the application writes them only after the commit.
    assert await stores.sqlite.fetchone("SELECT count(*) FROM orders") == (0,)
    assert await stores.sqlite.fetchone("SELECT count(*) FROM analytics") == (0,)
    assert await stores.graph.query_rows("MATCH ()-[r:PURCHASED]->() RETURN count(r)") == [[0]]
    assert await stores.cache.execute("DBSIZE") == 0
    await assert_absent(stores, "order", 1, cache_key=order_key(1))
    await assert_consistent(stores, "customer", customer.id)  # the customer itself is intact


async def test_rolled_back_transaction_leaves_no_row(
    factory: Factory, sqlite_store: SQLiteStore
) -> None:
    customer = await factory.customer()
    with pytest.raises(RuntimeError, match="payment declined"):
        async with sqlite_store.transaction() as conn:
            await conn.aio.execute(
                "INSERT INTO orders (customer_id, product_id, price, quantity)"
                " SELECT ?, id, price, 1 FROM products",
                (customer.id,),
            )
            await conn.aio.execute(
                "UPDATE customers SET tier = 'gold' WHERE id = ?", (customer.id,)
            )
            raise RuntimeError("payment declined")  # e.g. the (mocked) payment service said no
    assert await sqlite_store.fetchone("SELECT count(*) FROM orders") == (0,)
    assert await sqlite_store.fetchone(
        "SELECT tier FROM customers WHERE id = ?", (customer.id,)
    ) == (customer.tier,)
    await assert_referential_integrity(sqlite_store)


async def test_failed_graph_transaction_applies_nothing(stores: Stores) -> None:
    with pytest.raises(QueryError):
        await stores.graph.write(
            [
                ("CREATE (:Customer {id: 1, name: 'Ada', tier: 'gold'})", None),
                ("CREATE (:Customer {id: 1, name: 'Ada again', tier: 'gold'})", None),  # dup key
            ]
        )
    assert await stores.graph.query_rows("MATCH (c:Customer) RETURN count(c)") == [[0]]


# --- an end-to-end workflow ----------------------------------------------------------------------


async def test_customer_to_order_to_analytics(stores: Stores) -> None:
    factory = Factory(stores.sqlite, graph=stores.graph)
    customer = await factory.customer(tier="silver", created_at="2026-10-01 09:00:00")
    lamp = await factory.product(price=19.99)
    tea = await factory.product(price=4.5)
    november = [
        await place_order(stores, customer.id, lamp.id, 2, at="2026-11-03 10:00:00"),
        await place_order(stores, customer.id, tea.id, 3, at="2026-11-20 18:30:00"),
    ]
    cancelled = await place_order(
        stores, customer.id, lamp.id, 1, at="2026-11-21 08:00:00", status="cancelled"
    )
    december = await place_order(stores, customer.id, tea.id, 1, at="2026-12-01 00:00:00")

    # Analytics for November: the two live orders, at the silver discount, to the cent.
    expected_spent = sum(
        to_cents(order_amounts_py(price, qty, 0.05).final_price)
        for price, qty in ((19.99, 2), (4.5, 3))
    )
    row = await stores.sqlite.fetchone(
        "SELECT total_orders, total_spent FROM analytics WHERE customer_id = ? AND period = ?",
        (customer.id, "2026-11"),
    )
    assert row == (2, expected_spent / 100)
    # The cache holds what SQLite computed; the graph holds the purchases but not the cancellation.
    cached = await stores.cache.execute("HGETALL", analytics_key(customer.id, "2026-11"))
    assert cached == {b"total_orders": b"2", b"total_spent": str(expected_spent / 100).encode()}
    bought = await stores.graph.query_rows(
        "MATCH (c:Customer {id: $id})-[r:PURCHASED]->(:Product)"
        " RETURN r.order_id ORDER BY r.order_id",
        {"id": customer.id},
    )
    assert [r[0] for r in bought] == [*november, december]
    for order_id in [*november, cancelled]:
        await assert_consistent(stores, "order", order_id, cache_key=order_key(order_id))
    await assert_consistent(stores, "customer", customer.id)
    await assert_computed_columns(stores.sqlite)
    await assert_referential_integrity(stores.sqlite)


# --- concurrency ---------------------------------------------------------------------------------


async def test_fifty_concurrent_orders_all_computed_correctly(stores: Stores) -> None:
    factory = Factory(stores.sqlite, graph=stores.graph)
    customers = [await factory.customer() for _ in range(5)]
    products = [await factory.product() for _ in range(7)]
    plan = [(customers[i % 5], products[i % 7], 1 + i % 5) for i in range(50)]
    order_ids = await asyncio.gather(*(place_order(stores, c.id, p.id, q) for c, p, q in plan))
    assert len(set(order_ids)) == 50
    rows = await stores.sqlite.fetchall(
        "SELECT o.id, o.price, o.quantity, o.discount, o.total_price, o.discount_amount,"
        " o.final_price, p.price, t.discount FROM orders AS o"
        " JOIN products AS p ON p.id = o.product_id JOIN customers AS c ON c.id = o.customer_id"
        " JOIN pricing_tiers AS t ON t.tier = c.tier ORDER BY o.id"
    )
    assert len(rows) == 50
    for _, price, quantity, discount, *stored, product_price, tier_discount in rows:
        assert (price, discount) == (product_price, tier_discount)
        assert tuple(stored) == order_amounts_py(price, quantity, discount)
    assert (await assert_computed_columns(stores.sqlite))["orders"] == 50
    assert await stores.graph.query_rows("MATCH ()-[r:PURCHASED]->() RETURN count(r)") == [[50]]
    for order_id in order_ids:
        await assert_consistent(stores, "order", order_id, cache_key=order_key(order_id))
    # Analytics saw every order: per customer, its orders and their final prices.
    for customer in customers:
        mine = [r for r, (c, _, _) in zip(rows, plan, strict=True) if c.id == customer.id]
        total_orders, total_spent = await stores.sqlite.fetchone(
            "SELECT total_orders, total_spent FROM analytics WHERE customer_id = ?",
            (customer.id,),
        )
        assert total_orders == len(mine)
        assert to_cents(total_spent) == sum(to_cents(r[6]) for r in mine)


# --- realtime ------------------------------------------------------------------------------------


async def _next_message(pubsub: Any, timeout: float = 10.0) -> dict[str, Any] | None:
    """The next published message (subscription confirmations skipped), or None on timeout."""
    async with asyncio.timeout(timeout):
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None:
                return message


async def test_subscriber_receives_order_created_event(stores: Stores) -> None:
    factory = Factory(stores.sqlite, graph=stores.graph)
    customer, product = await factory.customer(), await factory.product()
    async with stores.cache.client() as conn:
        pubsub = conn.pubsub()
        await pubsub.subscribe(ORDERS_CHANNEL)
        try:
            # A failed order publishes nothing: the first event is the order that succeeded.
            with pytest.raises(QueryError):
                await place_order(stores, customer.id, 999_999, 1)
            order_id = await place_order(stores, customer.id, product.id, 2)
            message = await _next_message(pubsub)
        finally:
            await pubsub.unsubscribe(ORDERS_CHANNEL)
            await pubsub.aclose()
    assert message is not None and message["channel"] == ORDERS_CHANNEL.encode()
    assert json.loads(message["data"]) == {
        "event": "order_created",
        "order_id": order_id,
        "customer_id": customer.id,
    }
    # What the event announces is already in every store when it arrives.
    await assert_consistent(stores, "order", order_id, cache_key=order_key(order_id))
