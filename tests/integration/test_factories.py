"""Factories and assertion helpers against the real stores."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import datetime
from pathlib import Path

import pytest

from tristore.errors import QueryError
from tristore.schema import COUNTRIES, PRICING_TIERS, invoice_amounts_py, order_amounts_py
from tristore.stores import GraphStore, SQLiteStore
from tristore.testing import (
    Factory,
    GraphFactory,
    Row,
    Stores,
    assert_absent,
    assert_consistent,
    assert_referential_integrity,
    check_computed_columns,
    check_referential_integrity,
)


async def _count(store: SQLiteStore, table: str) -> int:
    (n,) = await store.fetchone(f"SELECT count(*) FROM {table}")  # test-owned table names
    return int(n)


# --- SQLite factories ----------------------------------------------------------------------------


async def test_customer_defaults_are_realistic_and_come_back_from_sqlite(
    factory: Factory, sqlite_store: SQLiteStore
) -> None:
    customer = await factory.customer()
    assert isinstance(customer, Row) and isinstance(customer.id, int)
    assert set(customer) == {"id", "email", "name", "country", "tier", "created_at"}
    local, _, domain = customer.email.partition("@")
    assert local and domain.startswith(("example.", "mail.example."))
    assert len(customer.name.split()) == 2
    assert customer.country in COUNTRIES and customer.tier in PRICING_TIERS
    assert (
        datetime(2024, 1, 1) <= datetime.fromisoformat(customer.created_at) < datetime(2026, 1, 1)
    )
    stored = await sqlite_store.fetchone("SELECT * FROM customers WHERE id = ?", (customer.id,))
    assert tuple(customer.values()) == tuple(stored)


async def test_overrides_are_keyword_arguments(factory: Factory) -> None:
    customer = await factory.customer(name="Ada Lovelace", tier="gold", country="GB")
    assert (customer.name, customer.tier, customer.country) == ("Ada Lovelace", "gold", "GB")
    product = await factory.product(price=12.5, category="books", stock=0)
    assert (product.price, product.category, product.stock) == (12.5, "books", 0)
    order = await factory.order(customer=customer, product=product, quantity=4, status="paid")
    assert (order.customer_id, order.product_id, order.quantity) == (customer.id, product.id, 4)
    assert order.status == "paid"


@pytest.mark.parametrize(
    ("method", "field"),
    [
        ("customer", "emial"),
        ("product", "colour"),
        ("order", "qty"),
        ("invoice", "tax"),
        ("rating", "stars"),
    ],
)
async def test_unknown_field_is_a_type_error_naming_it(
    factory: Factory, sqlite_store: SQLiteStore, method: str, field: str
) -> None:
    with pytest.raises(TypeError, match=rf"{method}\(\): unknown field '{field}'"):
        await getattr(factory, method)(**{field: 1})
    for table in ("customers", "products", "orders", "invoices", "product_ratings"):
        assert await _count(sqlite_store, table) == 0  # refused before any SQL ran


@pytest.mark.parametrize(
    ("method", "field"),
    [
        ("order", "total_price"),
        ("order", "final_price"),
        ("invoice", "grand_total"),
        ("product", "rating"),
    ],
)
async def test_computed_columns_cannot_be_set(factory: Factory, method: str, field: str) -> None:
    with pytest.raises(TypeError, match=rf"'{field}' is .*(generated|triggers)"):
        await getattr(factory, method)(**{field: 1.0})


async def test_order_creates_its_parents_and_takes_their_values(
    factory: Factory, sqlite_store: SQLiteStore
) -> None:
    order = await factory.order()
    customer = await sqlite_store.fetchone(
        "SELECT tier, created_at FROM customers WHERE id = ?", (order.customer_id,)
    )
    (price,) = await sqlite_store.fetchone(
        "SELECT price FROM products WHERE id = ?", (order.product_id,)
    )
    assert order.price == price and order.discount == PRICING_TIERS[customer[0]]
    assert order.status == "placed" and 1 <= order.quantity <= 5
    assert datetime.fromisoformat(order.created_at) > datetime.fromisoformat(customer[1])
    assert (order.total_price, order.discount_amount, order.final_price) == order_amounts_py(
        order.price, order.quantity, order.discount
    )
    await assert_referential_integrity(sqlite_store)


async def test_parents_can_be_rows_or_ids(factory: Factory) -> None:
    customer, product = await factory.customer(), await factory.product()
    by_row = await factory.order(customer=customer, product=product)
    by_id = await factory.order(customer=customer.id, product_id=product.id)
    assert (by_row.customer_id, by_row.product_id) == (by_id.customer_id, by_id.product_id)
    with pytest.raises(TypeError, match="not both"):
        await factory.order(customer=customer, customer_id=customer.id)
    with pytest.raises(TypeError, match="row or an int id"):
        await factory.order(customer="ada")


async def test_dangling_parent_meets_the_real_foreign_key(
    factory: Factory, sqlite_store: SQLiteStore
) -> None:
    with pytest.raises(QueryError, match="FOREIGN KEY"):
        await factory.order(customer_id=9_999)
    # The product made for that order was in the same transaction: rolled back with it.
    assert await _count(sqlite_store, "products") == 0
    assert await _count(sqlite_store, "orders") == 0
    with pytest.raises(QueryError, match="FOREIGN KEY"):
        await factory.invoice(order_id=9_999)


async def test_wrong_typed_override_is_refused_by_the_strict_table(factory: Factory) -> None:
    with pytest.raises(QueryError):
        await factory.product(price="cheap")
    with pytest.raises(QueryError, match="CHECK"):
        await factory.order(quantity=0)


async def test_invoice_defaults_follow_the_order_and_country(
    factory: Factory, sqlite_store: SQLiteStore
) -> None:
    customer = await factory.customer(country="DE")
    order = await factory.order(customer=customer, status="shipped")
    invoice = await factory.invoice(order=order)
    assert invoice.order_id == order.id and invoice.subtotal == order.final_price
    assert invoice.tax_rate == COUNTRIES["DE"][1]
    assert (invoice.tax_amount, invoice.grand_total) == invoice_amounts_py(
        invoice.subtotal, invoice.tax_rate
    )
    assert invoice.issued_at > order.created_at
    # Without an order, one is made (paid, as an invoiced order is).
    made = await factory.invoice()
    assert await sqlite_store.fetchone(
        "SELECT status FROM orders WHERE id = ?", (made.order_id,)
    ) == ("paid",)


async def test_same_seed_same_rows_and_factories_never_collide(sqlite_store: SQLiteStore) -> None:
    one, two = Factory(sqlite_store, seed=7), Factory(sqlite_store, seed=7)
    a = [await one.customer() for _ in range(10)]
    b = [await two.customer() for _ in range(10)]  # same seed, same store: no UNIQUE clash

    def looks(rows: list[Row]) -> list[tuple[object, ...]]:
        return [(r.name, r.country, r.tier, r.created_at) for r in rows]

    assert looks(a) == looks(b)
    assert len({r.email for r in a + b}) == 20
    other = Factory(sqlite_store, seed=8)
    assert looks([await other.customer() for _ in range(10)]) != looks(a)


async def test_concurrent_factory_calls_are_safe(
    factory: Factory, sqlite_store: SQLiteStore
) -> None:
    rows = await asyncio.gather(*(factory.order() for _ in range(20)))
    assert len({r.id for r in rows}) == 20
    assert await _count(sqlite_store, "customers") == 20
    await assert_referential_integrity(sqlite_store)


# --- mirrored into the graph ---------------------------------------------------------------------


async def test_mirrored_factory_keeps_the_stores_consistent(stores: Stores) -> None:
    factory = Factory(stores.sqlite, graph=stores.graph)
    customer = await factory.customer()
    product = await factory.product()
    order = await factory.order(customer=customer, product=product, quantity=2)
    cancelled = await factory.order(customer=customer, product=product, status="cancelled")
    implicit = await factory.order()  # parents created on the fly are mirrored too
    await assert_consistent(stores, "customer", customer.id)
    await assert_consistent(stores, "product", product.id)
    for row in (order, cancelled, implicit):
        await assert_consistent(stores, "order", row.id)
    assert await stores.graph.query_rows("MATCH ()-[r:PURCHASED]->() RETURN count(r)") == [[2]]


async def test_graph_factory_ids_edges_and_errors(
    graph_factory: GraphFactory, graph_store: GraphStore
) -> None:
    customers = await asyncio.gather(*(graph_factory.customer() for _ in range(10)))
    assert sorted(c.id for c in customers) == list(range(1, 11))
    edge = await graph_factory.purchased(customer=customers[0], quantity=3)
    assert edge.customer_id == customers[0].id and edge.order_id == 1 and edge.quantity == 3
    second = await graph_factory.purchased(customer=customers[0], product=edge.product_id)
    assert second.order_id == 2
    await graph_factory.follows(follower=customers[0], followee=customers[1])
    await graph_factory.viewed(customer=customers[2])
    rows = await graph_store.query_rows(
        "MATCH (c:Customer {id: $id})-[r:PURCHASED]->(p:Product) RETURN p.id, r.quantity"
        " ORDER BY r.order_id",
        {"id": customers[0].id},
    )
    assert rows[0] == [edge.product_id, 3] and len(rows) == 2
    with pytest.raises(TypeError, match="unknown field 'colour'"):
        await graph_factory.product(colour="red")
    with pytest.raises(QueryError, match="no node for"):
        await graph_factory.follows(follower=customers[0], followee_id=404)


# --- assertion helpers catch what they should ----------------------------------------------------


async def test_assert_consistent_reports_each_disagreement(stores: Stores) -> None:
    sqlite_only = Factory(stores.sqlite)
    customer = await sqlite_only.customer(tier="gold")
    with pytest.raises(AssertionError, match="graph: expected 1 node, found 0"):
        await assert_consistent(stores, "customer", customer.id)
    await stores.graph.execute(
        "CREATE (:Customer {id: $id, name: $name, tier: 'silver'})",
        {"id": customer.id, "name": customer.name},
    )
    with pytest.raises(AssertionError, match="graph: tier='silver', SQLite has 'gold'"):
        await assert_consistent(stores, "customer", customer.id)
    await stores.graph.execute(
        "MATCH (c:Customer {id: $id}) SET c.tier = 'gold'", {"id": customer.id}
    )
    await assert_consistent(stores, "customer", customer.id)
    key = f"customer:{customer.id}"
    with pytest.raises(AssertionError, match="is missing"):
        await assert_consistent(stores, "customer", customer.id, cache_key=key)
    await stores.cache.execute("HSET", key, "tier", "standard", "visits", 3)
    with pytest.raises(AssertionError, match="tier='standard', SQLite has 'gold'"):
        await assert_consistent(stores, "customer", customer.id, cache_key=key)
    await stores.cache.set(key + ":json", f'{{"tier": "gold", "id": {customer.id}}}')
    await assert_consistent(stores, "customer", customer.id, cache_key=key + ":json")
    with pytest.raises(AssertionError, match="no row in SQLite"):
        await assert_consistent(stores, "order", 1)
    with pytest.raises(ValueError, match="unknown kind"):
        await assert_consistent(stores, "invoice", 1)


async def test_assert_absent_finds_leftovers(stores: Stores) -> None:
    await assert_absent(stores, "customer", 1, cache_key="customer:1")
    await stores.graph.execute("CREATE (:Customer {id: 1, name: 'Ghost', tier: 'gold'})")
    await stores.cache.set("customer:1", "{}")
    with pytest.raises(AssertionError, match=r"graph has 1 match.*\n.*redis has key"):
        await assert_absent(stores, "customer", 1, cache_key="customer:1")


def test_check_computed_columns_reports_a_wrong_value(tmp_path: Path) -> None:
    # A plain table shaped like the real one, so a wrong "computed" value can be stored at all.
    conn = sqlite3.connect(tmp_path / "wrong.db")
    conn.executescript(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, price, quantity, discount,"
        " total_price, discount_amount, final_price);"
        "CREATE TABLE invoices (id, subtotal, tax_rate, tax_amount, grand_total);"
        "CREATE TABLE product_ratings (product_id, rating);"
        "CREATE TABLE products (id, rating);"
        "INSERT INTO orders VALUES (1, 19.99, 3, 0.15, 59.97, 9.0, 50.97);"
        "INSERT INTO orders VALUES (2, 19.99, 3, 0.15, 59.97, 8.99, 50.98);"
    )
    with pytest.raises(AssertionError, match=r"1 violation.*\n.*orders\.id=2 .*rule gives"):
        check_computed_columns(conn)
    conn.close()


async def test_referential_integrity_catches_rows_written_without_enforcement(
    factory: Factory, sqlite_store: SQLiteStore
) -> None:
    await factory.order()
    await assert_referential_integrity(sqlite_store)
    # Another connection with enforcement off (say, a careless migration) leaves an orphan.
    raw = sqlite3.connect(sqlite_store.path, isolation_level=None)
    raw.execute("PRAGMA foreign_keys = OFF")
    raw.execute(
        "INSERT INTO orders (customer_id, product_id, price, quantity) VALUES (4242, 1, 1.0, 1)"
    )
    with pytest.raises(AssertionError, match="orders rowid=2 references a missing customers"):
        check_referential_integrity(raw)
    raw.close()
    with pytest.raises(AssertionError, match="referential integrity broken"):
        await assert_referential_integrity(sqlite_store)
