"""The schema in real stores: SQLite files and Kuzu databases under tmp_path, nothing mocked.

What SQLite computes (generated columns, triggers, views, the registered function) is compared
with the Python business rules in tristore.schema.functions, row by row and with ``==``.
"""

from __future__ import annotations

import random
import sqlite3
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kuzu
import pytest

from tristore.schema import (
    COUNTRIES,
    ORDER_SUMMARY_SQL,
    PRICING_TIERS,
    RANK_PRODUCTS_CYPHER,
    RECOMMENDATIONS_CYPHER,
    REFRESH_ANALYTICS_SQL,
    Customer,
    Dataset,
    Order,
    Product,
    calculate_total_py,
    generate,
    invoice_amounts_py,
    load_graph,
    load_sqlite,
    mean_rating_py,
    order_amounts_py,
    register_functions,
    to_cents,
)
from tristore.schema.load import apply_graph_schema, apply_sqlite_schema

TABLES = (
    "pricing_tiers",
    "customers",
    "products",
    "orders",
    "invoices",
    "analytics",
    "product_ratings",
)


@pytest.fixture(scope="module")
def small() -> Dataset:
    return generate("small", seed=42)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(tmp_path / "shop.db")
    conn.execute("PRAGMA foreign_keys = ON")
    apply_sqlite_schema(conn)
    register_functions(conn)
    yield conn
    conn.close()


@pytest.fixture
def loaded(db: sqlite3.Connection, small: Dataset) -> sqlite3.Connection:
    load_sqlite(db, small)
    return db


@pytest.fixture
def graph(tmp_path: Path) -> Iterator[kuzu.Connection]:
    database = kuzu.Database(str(tmp_path / "g"))
    conn = kuzu.Connection(database)
    apply_graph_schema(conn)
    yield conn
    conn.close()
    database.close()


def counts(conn: sqlite3.Connection) -> dict[str, int]:
    return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}


def rows(conn: kuzu.Connection, query: str, params: dict[str, Any] | None = None) -> list[Any]:
    return conn.execute(query, params or {}).get_all()  # type: ignore[union-attr]


# --------------------------------------------------------------------------------------------
# SQLite: schema
# --------------------------------------------------------------------------------------------


def test_sqlite_is_new_enough() -> None:
    # STRICT tables need 3.37, generated columns 3.31, RETURNING/upsert forms 3.35.
    assert sqlite3.sqlite_version_info >= (3, 37, 0)


def test_schema_applies_twice(db: sqlite3.Connection) -> None:
    apply_sqlite_schema(db)
    apply_sqlite_schema(db)
    names = {
        (kind, name)
        for kind, name in db.execute("SELECT type, name FROM sqlite_master")
        if not name.startswith("sqlite_autoindex")
    }
    assert {("table", t) for t in TABLES} <= names
    assert ("view", "customer_metrics") in names
    assert {
        ("index", "orders_created"),
        ("index", "orders_customer_totals"),
        ("index", "orders_product"),
        ("index", "product_ratings_customer"),
        ("trigger", "product_ratings_after_insert"),
    } <= names
    # The reference rows are seeded once, however often the script runs.
    assert dict(db.execute("SELECT tier, discount FROM pricing_tiers")) == PRICING_TIERS
    strict = {r[1] for r in db.execute("PRAGMA table_list") if r[5]}
    assert set(TABLES) <= strict


# --------------------------------------------------------------------------------------------
# SQLite: computed columns against the business rule
# --------------------------------------------------------------------------------------------


def test_generated_order_columns_on_generated_orders(loaded: sqlite3.Connection) -> None:
    got = loaded.execute(
        "SELECT price, quantity, discount, total_price, discount_amount, final_price FROM orders"
    ).fetchall()
    assert len(got) == 1_000
    for price, quantity, discount, *stored in got:
        assert tuple(stored) == order_amounts_py(price, quantity, discount)
    # Silver customers' 5 % on an odd ten cents is a half cent: the sample has some.
    ties = loaded.execute(
        "SELECT count(*) FROM orders"
        " WHERE CAST(price * 100 + 0.5 AS INTEGER) * quantity * 500 % 10000 = 5000"
        " AND discount = 0.05"
    ).fetchone()[0]
    assert ties > 0


def test_generated_order_columns_on_random_and_tie_values(db: sqlite3.Connection) -> None:
    db.execute(
        "INSERT INTO customers (id, email, name, country) VALUES (1, 'a@b.example', 'A', 'DE')"
    )
    db.execute(
        "INSERT INTO products (id, sku, name, category, price) VALUES (1, 'X-1', 'X', 'toys', 1)"
    )
    rng = random.Random(3)
    cases = [
        (19.90, 1, 0.05),  # 99.5 cents of discount
        (0.25, 1, 0.5),  # 12.5 cents, exact in binary too
        (1.00, 1, 0.125),
        (301.21, 1, 0.5),
        (0.0, 3, 0.1),
        (99999.99, 1000, 0.9999),
    ]
    cases += [
        (
            rng.randrange(0, 1_000_000) / 100,
            rng.randint(1, 100),
            rng.choice([0.0, 0.05, 0.10, rng.randrange(0, 10_001) / 10_000]),
        )
        for _ in range(5_000)
    ]
    db.executemany(
        "INSERT INTO orders (customer_id, product_id, price, quantity, discount)"
        " VALUES (1, 1, ?, ?, ?)",
        cases,
    )
    db.commit()
    got = db.execute(
        "SELECT price, quantity, discount, total_price, discount_amount, final_price"
        " FROM orders ORDER BY id"
    ).fetchall()
    assert [tuple(r[:3]) for r in got] == cases
    for price, quantity, discount, *stored in got:
        assert tuple(stored) == order_amounts_py(price, quantity, discount)
    assert got[0][3:] == (19.9, 1.0, 18.9)
    assert got[1][3:] == (0.25, 0.13, 0.12)
    # The parts always add up to the total, to the cent.
    assert (
        db.execute(
            "SELECT count(*) FROM orders WHERE CAST(total_price * 100 + 0.5 AS INTEGER)"
            " <> CAST(discount_amount * 100 + 0.5 AS INTEGER)"
            " + CAST(final_price * 100 + 0.5 AS INTEGER)"
        ).fetchone()[0]
        == 0
    )


def test_generated_invoice_columns(loaded: sqlite3.Connection, small: Dataset) -> None:
    got = loaded.execute(
        "SELECT i.subtotal, i.tax_rate, i.tax_amount, i.grand_total, o.final_price"
        " FROM invoices AS i JOIN orders AS o ON o.id = i.order_id"
    ).fetchall()
    assert len(got) == len(small.invoices) == 850
    for subtotal, tax_rate, tax, grand, final in got:
        assert (tax, grand) == invoice_amounts_py(subtotal, tax_rate)
        assert subtotal == final  # the generator invoices what SQLite says the order costs
        assert to_cents(grand) == to_cents(subtotal) + to_cents(tax)
    assert {r[1] for r in got} <= {rate for _, rate in COUNTRIES.values()}


def test_cannot_write_generated_columns(db: sqlite3.Connection) -> None:
    with pytest.raises(sqlite3.OperationalError, match="generated column"):
        db.execute(
            "INSERT INTO invoices (order_id, subtotal, tax_rate, grand_total) VALUES (1, 1, 0, 5)"
        )


# --------------------------------------------------------------------------------------------
# SQLite: the registered function
# --------------------------------------------------------------------------------------------


def test_calculate_total_matches_python_rule(loaded: sqlite3.Connection) -> None:
    rng = random.Random(5)
    args = [
        (
            rng.randrange(0, 500_000) / 100,
            rng.randint(1, 30),
            rng.randrange(0, 10_001) / 10_000,
            rng.randrange(0, 3_001) / 10_000,
        )
        for _ in range(2_000)
    ]
    for a in args:
        assert loaded.execute("SELECT calculate_total(?, ?, ?, ?)", a).fetchone()[0] == (
            calculate_total_py(*a)
        )
    # Over the data: the function prices an order line as its invoice does.
    mismatches = loaded.execute(
        "SELECT count(*) FROM orders AS o JOIN invoices AS i ON i.order_id = o.id"
        " WHERE calculate_total(o.price, o.quantity, o.discount, i.tax_rate) <> i.grand_total"
    ).fetchone()[0]
    assert mismatches == 0


def test_calculate_total_null_handling(db: sqlite3.Connection) -> None:
    row = db.execute(
        "SELECT calculate_total(NULL, 1, 0, 0), calculate_total(10, NULL, 0, 0),"
        " calculate_total(10, 1, NULL, 0), calculate_total(10, 1, 0, NULL),"
        " calculate_total(10, 2, 0.5, 0.2)"
    ).fetchone()
    assert row == (None, None, None, None, 12.0)


@pytest.mark.parametrize(
    "args",
    [
        (-1, 1, 0, 0),
        (10, 0, 0, 0),
        (10, 1, 2, 0),
        (10, 1, 0, -0.5),
        ("ten", 1, 0, 0),
        (9.999, 1, 0, 0),
    ],
)
def test_calculate_total_bad_input_is_an_sql_error(
    db: sqlite3.Connection, args: tuple[Any, ...]
) -> None:
    with pytest.raises(sqlite3.OperationalError, match="user-defined function raised exception"):
        db.execute("SELECT calculate_total(?, ?, ?, ?)", args).fetchone()


def test_calculate_total_is_deterministic_for_sqlite(loaded: sqlite3.Connection) -> None:
    # SQLite accepts only deterministic functions in an index expression.
    loaded.execute(
        "CREATE INDEX orders_untaxed_total"
        " ON orders (calculate_total(price, quantity, discount, 0))"
    )
    plan = " ".join(
        str(r[-1])
        for r in loaded.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM orders"
            " WHERE calculate_total(price, quantity, discount, 0) > 1000"
        )
    )
    assert "orders_untaxed_total" in plan


def test_unregistered_connection_cannot_call_it(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "bare.db")
    try:
        with pytest.raises(sqlite3.OperationalError, match="no such function"):
            conn.execute("SELECT calculate_total(1, 1, 0, 0)")
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------
# SQLite: constraints
# --------------------------------------------------------------------------------------------

GOOD_CUSTOMER = "INSERT INTO customers (id, email, name, country, tier) VALUES (?, ?, ?, ?, ?)"
GOOD_PRODUCT = (
    "INSERT INTO products (id, sku, name, category, price, stock) VALUES (?, ?, ?, ?, ?, ?)"
)
ORDER = (
    "INSERT INTO orders (customer_id, product_id, price, quantity, discount, status)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)


@pytest.mark.parametrize(
    ("sql", "params", "message"),
    [
        (GOOD_CUSTOMER, (9, "no-at-sign.example", "Bad", "DE", "gold"), "customers_email_format"),
        (GOOD_CUSTOMER, (9, "A@B.EXAMPLE", "Dup", "DE", "gold"), "UNIQUE"),  # NOCASE duplicate
        (GOOD_CUSTOMER, (9, "z@b.example", "Bad", "DE", "platinum"), "customers_tier"),
        (GOOD_CUSTOMER, (9, "z@b.example", "  ", "DE", "gold"), "customers_name_nonempty"),
        (GOOD_PRODUCT, (9, "S-9", "Bad", "toys", -1.0, 1), "products_price_nonnegative"),
        (GOOD_PRODUCT, (9, "S-9", "Bad", "toys", 9.999, 1), "products_price_cents"),
        (GOOD_PRODUCT, (9, "S-9", "Bad", "toys", 1.0, -1), "products_stock_nonnegative"),
        (GOOD_PRODUCT, (9, "S-1", "Dup", "toys", 1.0, 1), "UNIQUE"),
        (GOOD_PRODUCT, (9, "S-9", "Bad", "toys", "abc", 1), "cannot store TEXT value in REAL"),
        (ORDER, (1, 1, -5.0, 1, 0, "placed"), "orders_price_nonnegative"),
        (ORDER, (1, 1, 5.0, 0, 0, "placed"), "orders_quantity_positive"),
        (ORDER, (1, 1, 5.0, 1, 1.5, "placed"), "orders_discount_range"),
        (ORDER, (1, 1, 5.0, 1, 0.00001, "placed"), "orders_discount_bp"),
        (ORDER, (1, 1, 5.0, 1, 0, "lost"), "orders_status"),
        (ORDER, (999, 1, 5.0, 1, 0, "placed"), "FOREIGN KEY"),
        (ORDER, (1, 999, 5.0, 1, 0, "placed"), "FOREIGN KEY"),
        (
            "INSERT INTO orders (customer_id, product_id, price, quantity, created_at)"
            " VALUES (1, 1, 5, 1, 'yesterday-ish')",
            (),
            "orders_created_at",
        ),
        (
            "INSERT INTO invoices (order_id, subtotal, tax_rate) VALUES (999, 1, 0.1)",
            (),
            "FOREIGN KEY",
        ),
        ("INSERT INTO invoices (order_id, subtotal, tax_rate) VALUES (1, 1, 0.1)", (), "UNIQUE"),
        ("INSERT INTO invoices (order_id, subtotal, tax_rate) VALUES (2, 1, 1.1)", (), "tax_rate"),
        (
            "INSERT INTO analytics (customer_id, period) VALUES (1, '2026-13')",
            (),
            "analytics_period_format",
        ),
        (
            "INSERT INTO product_ratings (product_id, customer_id, rating) VALUES (1, 1, 6)",
            (),
            "product_ratings_range",
        ),
    ],
)
def test_constraints_reject_bad_rows(
    db: sqlite3.Connection, sql: str, params: tuple[Any, ...], message: str
) -> None:
    db.execute(GOOD_CUSTOMER, (1, "a@b.example", "Ann", "DE", "silver"))
    db.execute(GOOD_PRODUCT, (1, "S-1", "Lamp", "home", 19.9, 3))
    db.execute(ORDER, (1, 1, 19.9, 1, 0.05, "paid"))
    db.execute(ORDER, (1, 1, 19.9, 2, 0.05, "placed"))
    db.execute("INSERT INTO invoices (order_id, subtotal, tax_rate) VALUES (1, 18.9, 0.19)")
    db.commit()
    before = counts(db)
    # A good row first in the same transaction: the failure must take it down too.
    db.execute(GOOD_CUSTOMER, (2, "c@d.example", "Cy", "FR", "standard"))
    with pytest.raises(sqlite3.IntegrityError, match=message):
        db.execute(sql, params)
    db.rollback()
    assert counts(db) == before
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []


def test_load_is_all_or_nothing(db: sqlite3.Connection, small: Dataset) -> None:
    bad = small.orders[-1]._replace(quantity=0)
    broken = Dataset(
        customers=small.customers,
        products=small.products,
        orders=(*small.orders[:-1], bad),
        invoices=small.invoices,
    )
    before = counts(db)
    with pytest.raises(sqlite3.IntegrityError, match="orders_quantity_positive"):
        load_sqlite(db, broken)
    assert not db.in_transaction
    assert counts(db) == before


def test_load_checks_foreign_keys_even_when_not_enforced(tmp_path: Path, small: Dataset) -> None:
    conn = sqlite3.connect(tmp_path / "nofk.db")  # foreign_keys is OFF by default
    try:
        apply_sqlite_schema(conn)
        dangling = small.orders[0]._replace(customer_id=10_000)
        ds = Dataset(
            customers=small.customers,
            products=small.products,
            orders=(dangling, *small.orders[1:]),
        )
        before = counts(conn)
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
            load_sqlite(conn, ds)
        assert counts(conn) == before
    finally:
        conn.close()


def test_load_joins_an_open_transaction(db: sqlite3.Connection, small: Dataset) -> None:
    before = counts(db)
    db.execute("BEGIN")
    load_sqlite(db, small)
    assert db.in_transaction  # the caller's transaction: committing is the caller's choice
    assert counts(db)["orders"] == 1_000
    db.rollback()
    assert counts(db) == before


# --------------------------------------------------------------------------------------------
# SQLite: load, triggers, analytics, views
# --------------------------------------------------------------------------------------------


def test_load_sqlite_counts_and_integrity(loaded: sqlite3.Connection, small: Dataset) -> None:
    c = counts(loaded)
    expected = small.counts()
    assert c["customers"] == expected["customers"]
    assert c["products"] == expected["products"]
    assert c["orders"] == expected["orders"]
    assert c["invoices"] == expected["invoices"]
    assert c["product_ratings"] == expected["ratings"]
    assert c["analytics"] == len({(o.customer_id, o.created_at[:7]) for o in small.orders})
    assert loaded.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert loaded.execute("PRAGMA foreign_key_check").fetchall() == []
    # Round trip, O'Neil and Müller included: parameters, never string building.
    assert loaded.execute("SELECT * FROM customers ORDER BY id").fetchall() == [
        tuple(c) for c in small.customers
    ]


def test_rating_triggers_keep_products_rating(loaded: sqlite3.Connection, small: Dataset) -> None:
    stored = dict(loaded.execute("SELECT id, rating FROM products"))
    assert stored == {p.id: p.rating for p in small.products}
    loaded.execute(
        "INSERT INTO products (id, sku, name, category, price)"
        " VALUES (500, 'T-500', 'T', 'toys', 1)"
    )
    rating = "SELECT rating FROM products WHERE id = 500"
    add = "INSERT INTO product_ratings (product_id, customer_id, rating) VALUES (500, ?, ?)"
    loaded.executemany(add, [(1, 4), (2, 4), (3, 4), (4, 5), (5, 5), (6, 5), (7, 5), (8, 5)])
    assert loaded.execute(rating).fetchone()[0] == mean_rating_py([4, 4, 4, 5, 5, 5, 5, 5]) == 4.63
    loaded.execute(
        "UPDATE product_ratings SET rating = 1 WHERE product_id = 500 AND customer_id = 8"
    )
    assert loaded.execute(rating).fetchone()[0] == mean_rating_py([4, 4, 4, 5, 5, 5, 5, 1])
    loaded.execute("DELETE FROM product_ratings WHERE product_id = 500")
    assert loaded.execute(rating).fetchone()[0] is None
    loaded.rollback()


def _summary_py(ds: Dataset, period: str) -> list[tuple[int, int, float, float]]:
    cents: dict[int, list[int]] = defaultdict(list)
    for o in ds.purchases():
        if o.created_at.startswith(period):
            final = order_amounts_py(o.price, o.quantity, o.discount).final_price
            cents[o.customer_id].append(to_cents(final))
    return [
        (cid, len(v), sum(v) / 100, (2 * sum(v) + len(v)) // (2 * len(v)) / 100)
        for cid, v in sorted(cents.items())
    ]


@pytest.mark.parametrize("period", ["2026-11", "2026-06", "2025-02"])
def test_order_summary_and_analytics(
    loaded: sqlite3.Connection, small: Dataset, period: str
) -> None:
    expected = _summary_py(small, period)
    assert expected, "the sample has orders in this month"
    got = loaded.execute(ORDER_SUMMARY_SQL, {"period": period, "customer_id": None}).fetchall()
    assert got == expected
    one = expected[0][0]
    assert loaded.execute(ORDER_SUMMARY_SQL, {"period": period, "customer_id": one}).fetchall() == [
        expected[0]
    ]
    # load_sqlite rebuilt analytics with the same numbers.
    analytics = loaded.execute(
        "SELECT customer_id, total_orders, total_spent FROM analytics"
        " WHERE period = ? AND total_orders > 0 ORDER BY customer_id",
        (period,),
    ).fetchall()
    assert analytics == [row[:3] for row in expected]


def test_refresh_analytics_after_cancellation(loaded: sqlite3.Connection, small: Dataset) -> None:
    period = "2026-11"
    cid = _summary_py(small, period)[0][0]
    loaded.execute(
        "UPDATE orders SET status = 'cancelled' WHERE customer_id = ?"
        " AND created_at >= ? AND created_at < ?",
        (cid, "2026-11-01", "2026-12-01"),
    )
    loaded.execute(REFRESH_ANALYTICS_SQL, {"period": period, "customer_id": cid})
    row = loaded.execute(
        "SELECT total_orders, total_spent FROM analytics WHERE customer_id = ? AND period = ?",
        (cid, period),
    ).fetchone()
    assert row == (0, 0.0)
    # A refresh of the whole month leaves everyone else where the rebuild put them.
    before = loaded.execute(
        "SELECT customer_id, total_orders, total_spent FROM analytics WHERE period = ?"
        " ORDER BY customer_id",
        (period,),
    ).fetchall()
    loaded.execute(REFRESH_ANALYTICS_SQL, {"period": period, "customer_id": None})
    after = loaded.execute(
        "SELECT customer_id, total_orders, total_spent FROM analytics WHERE period = ?"
        " ORDER BY customer_id",
        (period,),
    ).fetchall()
    assert after == before
    loaded.commit()


def test_refresh_analytics_of_one_customer_reads_only_that_customer(
    loaded: sqlite3.Connection,
) -> None:
    # The order flow refreshes a customer's month with every order: its cost must follow that
    # customer's orders, read from one index, never a scan of the month's orders or of analytics.
    plan = [
        row[3]
        for row in loaded.execute(
            "EXPLAIN QUERY PLAN " + REFRESH_ANALYTICS_SQL, {"period": "2026-11", "customer_id": 1}
        )
    ]
    assert not [step for step in plan if step.startswith("SCAN")], plan
    orders = [step for step in plan if "orders" in step or " o " in step]
    assert orders and all("orders_customer_totals (customer_id=?" in step for step in orders), plan


def test_customer_metrics_view(loaded: sqlite3.Connection, small: Dataset) -> None:
    per: dict[int, list[int]] = defaultdict(list)
    for o in small.purchases():
        per[o.customer_id].append(to_cents(order_amounts_py(o.price, o.quantity, o.discount)[2]))
    got = {
        r[0]: r[1:]
        for r in loaded.execute(
            "SELECT customer_id, order_count, lifetime_value, avg_order_value FROM customer_metrics"
        )
    }
    assert len(got) == len(small.customers)
    for c in small.customers:
        v = per.get(c.id, [])
        avg = (2 * sum(v) + len(v)) // (2 * len(v)) / 100 if v else None
        assert got[c.id] == (len(v), sum(v) / 100, avg)


# --------------------------------------------------------------------------------------------
# Kuzu
# --------------------------------------------------------------------------------------------


def test_graph_schema_twice_and_copy_counts(
    graph: kuzu.Connection, small: Dataset, tmp_path: Path
) -> None:
    apply_graph_schema(graph)  # IF NOT EXISTS: a second run is harmless
    loaded = load_graph(graph, small, tmp_path / "csv")
    expected = small.counts()
    assert loaded == {
        "Customer": expected["customers"],
        "Product": expected["products"],
        "PURCHASED": expected["purchased"],
        "VIEWED": expected["views"],
        "FOLLOWS": expected["follows"],
    }
    assert rows(graph, "MATCH (c:Customer) RETURN count(c)") == [[200]]
    assert rows(graph, "MATCH (p:Product) RETURN count(p)") == [[100]]
    for rel, n in (("PURCHASED", 950), ("VIEWED", 2_000), ("FOLLOWS", 400)):
        assert rows(graph, f"MATCH ()-[r:{rel}]->() RETURN count(r)") == [[n]]
    # Properties survive the CSV trip, timestamps as TIMESTAMP.
    o = next(small.purchases())
    [[cid, pid, qty, at]] = rows(
        graph,
        "MATCH (c:Customer)-[r:PURCHASED]->(p:Product) WHERE r.order_id = $id"
        " RETURN c.id, p.id, r.quantity, r.at",
        {"id": o.id},
    )
    assert (cid, pid, qty, at.isoformat(sep=" ")) == (
        o.customer_id,
        o.product_id,
        o.quantity,
        o.created_at,
    )
    c = small.customers[0]
    assert rows(graph, "MATCH (c:Customer {id: $id}) RETURN c.name, c.tier", {"id": c.id}) == [
        [c.name, c.tier]
    ]
    cancelled = [o.id for o in small.orders if o.status == "cancelled"]
    assert rows(
        graph,
        "MATCH ()-[r:PURCHASED]->() WHERE r.order_id IN $ids RETURN count(r)",
        {"ids": cancelled},
    ) == [[0]]
    [[top_id, _, buyers]] = rows(graph, RANK_PRODUCTS_CYPHER, {"limit": 1})
    by_product: dict[int, set[int]] = defaultdict(set)
    for p in small.purchases():
        by_product[p.product_id].add(p.customer_id)
    assert buyers == max(len(v) for v in by_product.values()) == len(by_product[top_id])


def _tiny() -> Dataset:
    def customer(i: int) -> Customer:
        return Customer(
            i, f"c{i}@shop.example", f"Customer {i}", "DE", "standard", "2025-01-01 00:00:00"
        )

    names = {10: 'Lamp, "Deluxe"', 11: "Rug", 12: "Kettle", 13: "Vase", 14: "Kite"}
    products = tuple(Product(i, f"T-{i}", n, "home", 10.0, 5, None) for i, n in names.items())
    bought = [  # (customer, product, status)
        (1, 10, "paid"), (1, 11, "paid"), (1, 12, "paid"),
        (2, 10, "shipped"), (2, 11, "shipped"),
        (3, 10, "paid"), (3, 13, "paid"), (3, 11, "paid"), (3, 11, "placed"),  # 11 twice
        (4, 12, "paid"), (4, 13, "paid"),
        (5, 10, "paid"), (5, 14, "cancelled"),  # a cancelled order is no purchase
    ]  # fmt: skip
    orders = tuple(
        Order(k, c, p, 10.0, 1, 0.0, s, f"2026-01-{k:02d} 12:00:00")
        for k, (c, p, s) in enumerate(bought, start=1)
    )
    return Dataset(
        customers=tuple(customer(i) for i in range(1, 6)), products=products, orders=orders
    )


@pytest.mark.parametrize(
    ("product", "limit", "expected"),
    [
        # Buyers of 10: customers 1, 2, 3, 5. They also bought 11 (1, 2, 3), 12 (1), 13 (3).
        (10, 10, [[11, "Rug", 3], [12, "Kettle", 1], [13, "Vase", 1]]),
        (10, 2, [[11, "Rug", 3], [12, "Kettle", 1]]),
        # Buyers of 13: customers 3 and 4. Ties are ordered by product id.
        (13, 10, [[10, 'Lamp, "Deluxe"', 1], [11, "Rug", 1], [12, "Kettle", 1]]),
        # 11 was bought twice by customer 3: still one buyer, and never itself.
        (11, 10, [[10, 'Lamp, "Deluxe"', 3], [12, "Kettle", 1], [13, "Vase", 1]]),
        (14, 10, []),  # only a cancelled order
        (99, 10, []),  # no such product
    ],
)
def test_recommendations_on_a_hand_made_graph(
    graph: kuzu.Connection, tmp_path: Path, product: int, limit: int, expected: list[list[Any]]
) -> None:
    load_graph(graph, _tiny(), tmp_path / "csv")
    assert rows(graph, RECOMMENDATIONS_CYPHER, {"product_id": product, "limit": limit}) == expected


def test_hand_made_dataset_loads_into_sqlite_too(db: sqlite3.Connection) -> None:
    got = load_sqlite(db, _tiny())
    assert got["orders"] == 13
    assert db.execute("SELECT count(*) FROM customer_metrics WHERE order_count > 0").fetchone() == (
        5,
    )


def test_copy_refuses_a_path_that_would_break_the_literal(
    graph: kuzu.Connection, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="refusing to COPY"):
        load_graph(graph, _tiny(), tmp_path / "it's here")
    assert rows(graph, "MATCH (c:Customer) RETURN count(c)") == [[0]]
