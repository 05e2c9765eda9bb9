"""Business rules of the domain: the money arithmetic, its SQL function, and the domain queries.

The money rule, everywhere (SQL generated columns, the SQL function, these Python twins): amounts
are whole cents, rates are whole basis points (0.01 %), and every product of the two is rounded
half up to the cent in integer arithmetic. Floats are only the storage format. Why not simply
``round(x, 2)``: SQLite's round goes through its printf and, on 3.40, disagrees with every simple
Python rule on values a hair from a half cent (1.7 % of 800k order-like values measured), and its
result changes between SQLite versions. Integer arithmetic is exact, so SQLite and Python agree to
the bit and a test can compare them with ``==``.

All queries here are parameterized; nothing is ever interpolated into SQL or Cypher text.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable
from typing import NamedTuple

__all__ = [
    "ORDER_SUMMARY_SQL",
    "RANK_PRODUCTS_CYPHER",
    "REBUILD_ANALYTICS_SQL",
    "RECOMMENDATIONS_CYPHER",
    "REFRESH_ANALYTICS_SQL",
    "InvoiceAmounts",
    "OrderAmounts",
    "calculate_total_py",
    "invoice_amounts_py",
    "mean_rating_py",
    "order_amounts_py",
    "register_functions",
    "to_basis_points",
    "to_cents",
]

# --------------------------------------------------------------------------------------------
# Integer money arithmetic (mirrors the SQL in sqlite.sql expression for expression)
# --------------------------------------------------------------------------------------------

_BP = 10_000  # basis points in 1.0


def to_cents(amount: float) -> int:
    """Nearest whole cent of a non-negative amount; SQL: ``CAST(amount * 100 + 0.5 AS INTEGER)``.

    The same IEEE double operations in the same order, then truncation, as SQLite does them, so
    the two never disagree (``int()`` truncates like C's cast).
    """
    return int(amount * 100 + 0.5)


def to_basis_points(rate: float) -> int:
    """Nearest basis point of a non-negative rate; SQL: ``CAST(rate * 10000 + 0.5 AS INTEGER)``."""
    return int(rate * _BP + 0.5)


def _div_half_up(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half up, for numerator >= 0 (SQL: ``(n + d/2) / d``)."""
    return (numerator + denominator // 2) // denominator


class OrderAmounts(NamedTuple):
    """The generated columns of one ``orders`` row."""

    total_price: float
    discount_amount: float
    final_price: float


class InvoiceAmounts(NamedTuple):
    """The generated columns of one ``invoices`` row."""

    tax_amount: float
    grand_total: float


def _order_cents(price: float, quantity: int, discount: float) -> tuple[int, int, int]:
    gross = to_cents(price) * quantity
    off = _div_half_up(gross * to_basis_points(discount), _BP)
    return gross, off, gross - off


def order_amounts_py(price: float, quantity: int, discount: float) -> OrderAmounts:
    """What SQLite stores in orders.total_price / discount_amount / final_price.

    final_price is total - discount (so the two always add up); it equals
    ``round(price * quantity * (1 - discount), 2)`` except on an exact half cent, where that
    formula and the discount's would both round up and invent a cent.
    """
    gross, off, final = _order_cents(price, quantity, discount)
    # int / 100 is correctly rounded, as is SQLite's int-to-double / 100.0 (below 2**53).
    return OrderAmounts(gross / 100, off / 100, final / 100)


def _invoice_cents(subtotal_cents: int, tax_bp: int) -> tuple[int, int]:
    tax = _div_half_up(subtotal_cents * tax_bp, _BP)
    return tax, subtotal_cents + tax


def invoice_amounts_py(subtotal: float, tax_rate: float) -> InvoiceAmounts:
    """What SQLite stores in invoices.tax_amount / grand_total (grand_total = subtotal + tax)."""
    tax, grand = _invoice_cents(to_cents(subtotal), to_basis_points(tax_rate))
    return InvoiceAmounts(tax / 100, grand / 100)


def mean_rating_py(ratings: Iterable[int]) -> float | None:
    """products.rating as the triggers compute it: the mean, half up to 0.01; None if unrated."""
    values = list(ratings)
    if not values:
        return None
    n, total = len(values), sum(values)
    return (200 * total + n) // (2 * n) / 100


# --------------------------------------------------------------------------------------------
# calculate_total: the Python rule and its SQL registration
# --------------------------------------------------------------------------------------------


def _number(name: str, value: object) -> float:
    # bool is an int subclass, but True as a price is a bug, not a number.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"calculate_total: {name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"calculate_total: {name} must be finite, got {value!r}")
    return value


def _whole(value: float, scale: int) -> bool:
    # The tolerance of the CHECK constraints in sqlite.sql: value * scale is an integer give or
    # take float noise (19.99 * 100 == 1998.9999999999998).
    return abs(value * scale - round(value * scale)) < 0.001


def calculate_total_py(
    price: float | None,
    quantity: float | None,
    discount: float | None,
    tax_rate: float | None,
) -> float | None:
    """The amount a customer pays for one order line: price x quantity, less the discount, plus tax.

    Rounded as an invoice rounds it (the discounted line to the cent, then the tax to the cent), so
    ``calculate_total(price, q, d, t)`` equals the ``grand_total`` of an invoice with
    ``subtotal = final_price`` of that order and ``tax_rate = t``. It is within one cent of
    ``round(price * quantity * (1 - discount) * (1 + tax_rate), 2)``.

    SQL semantics: any NULL argument gives NULL. Invalid input raises (TypeError for a non-number,
    ValueError for a value out of range): price >= 0 in whole cents, quantity a whole number > 0,
    discount and tax_rate in [0, 1] in whole basis points, the same rules the tables CHECK.
    """
    if price is None or quantity is None or discount is None or tax_rate is None:
        return None
    price = _number("price", price)
    quantity = _number("quantity", quantity)
    discount = _number("discount", discount)
    tax_rate = _number("tax_rate", tax_rate)
    if price < 0 or not _whole(price, 100):
        raise ValueError(f"calculate_total: price must be >= 0 in whole cents, got {price!r}")
    if quantity <= 0 or quantity != int(quantity):
        raise ValueError(f"calculate_total: quantity must be a whole number > 0, got {quantity!r}")
    for name, rate in (("discount", discount), ("tax_rate", tax_rate)):
        if not 0 <= rate <= 1 or not _whole(rate, _BP):
            raise ValueError(
                f"calculate_total: {name} must be in [0, 1] in whole basis points, got {rate!r}"
            )
    _, _, final = _order_cents(price, int(quantity), discount)
    _, grand = _invoice_cents(final, to_basis_points(tax_rate))
    return grand / 100


def register_functions(conn: sqlite3.Connection) -> None:
    """Register the domain's SQL functions on ``conn`` (once per connection; idempotent).

    ``deterministic=True`` lets SQLite use them in indexes, CHECKs and generated columns and
    factor repeated calls. An exception inside reaches the caller as sqlite3.OperationalError
    ("user-defined function raised exception").
    """
    conn.create_function("calculate_total", 4, calculate_total_py, deterministic=True)


# --------------------------------------------------------------------------------------------
# Domain queries
# --------------------------------------------------------------------------------------------

# The month :period ('2026-11') as a half-open text range over created_at. Comparing text keeps
# the orders(created_at) index usable (strftime(created_at) = :period would scan) and works for
# both 'YYYY-MM-DD HH:MM:SS' and ISO 'T' timestamps.
_IN_PERIOD = """created_at >= :period || '-01'
      AND created_at < date(:period || '-01', '+1 month')"""

_CENTS = "CAST(final_price * 100 + 0.5 AS INTEGER)"

# Per-customer orders in a month, cancelled excluded. Rows: (customer_id, total_orders,
# total_spent, avg_order_value), sums exact in cents, the average half up to the cent.
# Parameters: {"period": "2026-11", "customer_id": None | int} (None: every customer).
ORDER_SUMMARY_SQL = f"""
SELECT
    customer_id,
    count(*)                                         AS total_orders,
    sum({_CENTS}) / 100.0                            AS total_spent,
    (2 * sum({_CENTS}) + count(*)) / (2 * count(*)) / 100.0 AS avg_order_value
FROM orders
WHERE status <> 'cancelled'
  AND {_IN_PERIOD}
  AND (:customer_id IS NULL OR customer_id = :customer_id)
GROUP BY customer_id
ORDER BY customer_id
"""

# One customer, or all with :customer_id NULL, as a range on customer_id: SQLite's planner cannot
# use an index for "(:customer_id IS NULL OR customer_id = :customer_id)", so that form searched
# every order of the month and scanned all of analytics for a single customer's refresh, inside
# the order flow's write transaction.
_ONE_OR_ALL = (
    "customer_id BETWEEN coalesce(:customer_id, -9223372036854775808)"
    " AND coalesce(:customer_id, 9223372036854775807)"
)

# Upsert analytics for one month (and one customer, or all with :customer_id NULL). The scope is
# every customer (of the customers table) with any order in the month, or already a row for it,
# so a customer whose orders were all cancelled since the last refresh drops to zero instead of
# keeping stale totals. The scope is two EXISTS probes per customer (a scope read from orders
# would visit every order of the month twice), and the sums read only the orders_customer_totals
# index, which holds status and final_price: the order flow runs this for every order, so its
# cost must follow the customer's month and nothing else.
# ("WHERE true" is SQLite's documented fix for the INSERT ... SELECT ... ON CONFLICT ambiguity.)
REFRESH_ANALYTICS_SQL = f"""
INSERT INTO analytics (customer_id, period, total_orders, total_spent, updated_at)
SELECT
    scope.customer_id,
    :period,
    count(o.id),
    coalesce(sum(CAST(o.final_price * 100 + 0.5 AS INTEGER)), 0) / 100.0,
    datetime('now')
FROM (
    SELECT c.id AS customer_id FROM customers AS c
    WHERE c.id BETWEEN coalesce(:customer_id, -9223372036854775808)
                   AND coalesce(:customer_id, 9223372036854775807)
      AND (EXISTS (SELECT 1 FROM orders WHERE orders.customer_id = c.id AND {_IN_PERIOD})
           OR EXISTS (SELECT 1 FROM analytics AS a
                      WHERE a.customer_id = c.id AND a.period = :period))
) AS scope
LEFT JOIN orders AS o
    ON o.customer_id = scope.customer_id
    AND o.status <> 'cancelled'
    AND o.created_at >= :period || '-01'
    AND o.created_at < date(:period || '-01', '+1 month')
WHERE true
GROUP BY scope.customer_id
ON CONFLICT (customer_id, period) DO UPDATE SET
    total_orders = excluded.total_orders,
    total_spent = excluded.total_spent,
    updated_at = excluded.updated_at
"""

# Every (customer, month) with any order, in one pass; what load_sqlite runs after a bulk load.
# Same semantics as REFRESH_ANALYTICS_SQL over all months. No parameters.
REBUILD_ANALYTICS_SQL = """
INSERT INTO analytics (customer_id, period, total_orders, total_spent, updated_at)
SELECT
    customer_id,
    strftime('%Y-%m', created_at),
    sum(status <> 'cancelled'),
    sum(CASE WHEN status <> 'cancelled'
        THEN CAST(final_price * 100 + 0.5 AS INTEGER) ELSE 0 END) / 100.0,
    datetime('now')
FROM orders
WHERE true
GROUP BY customer_id, strftime('%Y-%m', created_at)
ON CONFLICT (customer_id, period) DO UPDATE SET
    total_orders = excluded.total_orders,
    total_spent = excluded.total_spent,
    updated_at = excluded.updated_at
"""

# "Customers who bought $product_id also bought ...": products ranked by how many distinct
# customers bought both, ties by id so the answer is deterministic. Kuzu matches walks, so the
# second hop may reuse the first edge; excluding the product itself covers that.
# Rows: (product_id, name, buyers). Parameters: {"product_id": int, "limit": int}.
RECOMMENDATIONS_CYPHER = """
MATCH (p:Product {id: $product_id})<-[:PURCHASED]-(c:Customer)-[:PURCHASED]->(rec:Product)
WHERE rec.id <> $product_id
RETURN rec.id AS product_id, rec.name AS name, count(DISTINCT c.id) AS buyers
ORDER BY buyers DESC, product_id
LIMIT $limit
"""

# Best sellers: products by number of distinct buyers. Rows: (product_id, name, buyers).
# Parameters: {"limit": int}.
RANK_PRODUCTS_CYPHER = """
MATCH (c:Customer)-[:PURCHASED]->(p:Product)
RETURN p.id AS product_id, p.name AS name, count(DISTINCT c.id) AS buyers
ORDER BY buyers DESC, product_id
LIMIT $limit
"""
