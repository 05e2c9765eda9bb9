"""Assertions about the stores' contents: business rules, referential integrity, cross-store state.

Each raises ``AssertionError`` with a message that says which row broke which rule, so a failure
reads well without pytest's assertion rewriting (which does not reach installed helper modules).

- :func:`check_computed_columns` / :func:`assert_computed_columns`: every generated column, and
  ``products.rating``, equals the business rule's Python twin in :mod:`tristore.schema` (``==``,
  not approx: both sides do the same integer-cent arithmetic).
- :func:`check_referential_integrity` / :func:`assert_referential_integrity`:
  ``PRAGMA foreign_key_check`` finds nothing (it also sees rows written while enforcement was off).
- :func:`assert_consistent` / :func:`assert_absent`: one customer, product or order is the same in
  SQLite, the graph and (optionally) a Redis key, or is in none of them.

The ``check_*`` functions take a ``sqlite3.Connection`` (plain sqlite3 tests); the ``assert_*``
coroutines take the stores and read on one reader snapshot.
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from datetime import datetime
from typing import Any

from tristore.schema import invoice_amounts_py, mean_rating_py, order_amounts_py
from tristore.stores import SQLiteStore
from tristore.testing.setup import Stores

__all__ = [
    "assert_absent",
    "assert_computed_columns",
    "assert_consistent",
    "assert_referential_integrity",
    "check_computed_columns",
    "check_referential_integrity",
]

_SHOWN = 10  # mismatches listed in a message; the count says how many there were in all

KINDS = ("customer", "product", "order")


def _fail(what: str, problems: list[str]) -> None:
    if problems:
        listed = "\n  ".join(problems[:_SHOWN])
        more = f"\n  ... and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
        raise AssertionError(f"{what}: {len(problems)} violation(s)\n  {listed}{more}")


def check_computed_columns(conn: sqlite3.Connection) -> dict[str, int]:
    """Compare every computed value with its business rule; return rows checked per table."""
    problems: list[str] = []
    orders = conn.execute(
        "SELECT id, price, quantity, discount, total_price, discount_amount, final_price"
        " FROM orders ORDER BY id"
    ).fetchall()
    for oid, price, quantity, discount, *stored in orders:
        expected = order_amounts_py(price, quantity, discount)
        if tuple(stored) != tuple(expected):
            problems.append(
                f"orders.id={oid} (price={price!r}, quantity={quantity!r}, discount={discount!r}):"
                f" stored (total_price, discount_amount, final_price)={tuple(stored)!r},"
                f" rule gives {tuple(expected)!r}"
            )
    invoices = conn.execute(
        "SELECT id, subtotal, tax_rate, tax_amount, grand_total FROM invoices ORDER BY id"
    ).fetchall()
    for iid, subtotal, tax_rate, *stored in invoices:
        expected_inv = invoice_amounts_py(subtotal, tax_rate)
        if tuple(stored) != tuple(expected_inv):
            problems.append(
                f"invoices.id={iid} (subtotal={subtotal!r}, tax_rate={tax_rate!r}):"
                f" stored (tax_amount, grand_total)={tuple(stored)!r},"
                f" rule gives {tuple(expected_inv)!r}"
            )
    ratings: dict[int, list[int]] = defaultdict(list)
    for pid, stars in conn.execute("SELECT product_id, rating FROM product_ratings"):
        ratings[pid].append(stars)
    products = conn.execute("SELECT id, rating FROM products ORDER BY id").fetchall()
    for pid, stored_rating in products:
        expected_rating = mean_rating_py(ratings.get(pid, ()))
        if stored_rating != expected_rating:
            problems.append(
                f"products.id={pid}: stored rating={stored_rating!r}, mean of its"
                f" {len(ratings.get(pid, ()))} rating(s) gives {expected_rating!r}"
            )
    _fail("computed columns disagree with the business rules", problems)
    return {"orders": len(orders), "invoices": len(invoices), "products": len(products)}


async def assert_computed_columns(store: SQLiteStore) -> dict[str, int]:
    """:func:`check_computed_columns` on one consistent reader snapshot of ``store``."""
    return await store.read(check_computed_columns)


def check_referential_integrity(conn: sqlite3.Connection) -> None:
    """``PRAGMA foreign_key_check`` must find no row pointing at a missing parent."""
    rows = conn.execute("PRAGMA foreign_key_check").fetchall()
    _fail(
        "referential integrity broken",
        [
            f"{table} rowid={rowid} references a missing {parent} row"
            for table, rowid, parent, _ in rows
        ],
    )


async def assert_referential_integrity(store: SQLiteStore) -> None:
    await store.read(check_referential_integrity)


# --- across the three stores ---------------------------------------------------------------------

# What the graph mirrors of each kind: (SQLite table, Cypher returning the mirrored properties).
_SQL_TABLE = {"customer": "customers", "product": "products", "order": "orders"}
_GRAPH = {
    "customer": "MATCH (n:Customer) WHERE n.id = $id RETURN n.name AS name, n.tier AS tier",
    "product": (
        "MATCH (n:Product) WHERE n.id = $id"
        " RETURN n.name AS name, n.category AS category, n.price AS price"
    ),
    "order": (
        "MATCH (c:Customer)-[r:PURCHASED]->(p:Product) WHERE r.order_id = $id"
        " RETURN c.id AS customer_id, p.id AS product_id, r.quantity AS quantity,"
        " r.at AS created_at"
    ),
}


def _kind(kind: str) -> str:
    if kind not in _SQL_TABLE:
        raise ValueError(f"unknown kind {kind!r}: use one of {', '.join(KINDS)}")
    return kind


async def _sqlite_row(stores: Stores, kind: str, entity_id: int) -> dict[str, Any] | None:
    table = _SQL_TABLE[kind]  # from the mapping above, never from the caller

    def fetch(conn: sqlite3.Connection) -> dict[str, Any] | None:
        cur = conn.execute(f"SELECT * FROM {table} WHERE id = ?", (entity_id,))
        row = cur.fetchone()
        return None if row is None else dict(zip([d[0] for d in cur.description], row, strict=True))

    return await stores.sqlite.read(fetch)


async def _cached(stores: Stores, key: str) -> dict[str, Any] | None:
    """A Redis hash, or a string holding a JSON object, as a dict of text; None if absent."""
    async with stores.cache.client() as conn:
        kind = await conn.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        if kind == "none":
            return None
        if kind == "hash":
            raw = await conn.hgetall(key)
            return {_text(k): _text(v) for k, v in raw.items()}
        if kind == "string":
            value = _text(await conn.get(key))
            try:
                data = json.loads(value)
            except ValueError:
                data = None
            if isinstance(data, dict):
                return data
            raise AssertionError(f"redis key {key!r} holds a string that is not a JSON object")
    raise AssertionError(f"redis key {key!r} is a {kind}; expected a hash or a JSON object")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _same(sql_value: Any, other: Any) -> bool:
    """Equal across stores' types: numbers by value, timestamps by instant, else by text."""
    if sql_value is None or other is None:
        return sql_value is None and other in (None, "", "None", "null")
    if isinstance(other, datetime) and isinstance(sql_value, str):
        try:
            return datetime.fromisoformat(sql_value) == other
        except ValueError:
            return False
    if isinstance(sql_value, int | float) and not isinstance(sql_value, bool):
        try:
            return float(other) == float(sql_value)
        except (TypeError, ValueError):
            return False
    return _text(other) == _text(sql_value)


async def assert_consistent(
    stores: Stores, kind: str, entity_id: int, *, cache_key: str | None = None
) -> dict[str, Any]:
    """``kind`` (customer, product, order) ``entity_id`` agrees in every store; returns its row.

    SQLite must hold the row. The graph must hold its node with the same properties (an order:
    one PURCHASED edge with its order_id, ends, quantity and time, or none if it is cancelled).
    With ``cache_key``, that Redis hash or JSON object must exist and every field it shares with
    the SQLite row must be equal (fields only the cache has, like derived counters, are ignored).
    """
    _kind(kind)
    row = await _sqlite_row(stores, kind, entity_id)
    if row is None:
        raise AssertionError(f"{kind} {entity_id}: no row in SQLite {_SQL_TABLE[kind]}")
    problems: list[str] = []
    mirrored = await stores.graph.query(_GRAPH[kind], {"id": entity_id})
    expect_in_graph = not (kind == "order" and row["status"] == "cancelled")
    if not expect_in_graph:
        if mirrored:
            problems.append(f"graph: cancelled order has {len(mirrored)} PURCHASED edge(s)")
    elif len(mirrored) != 1:
        problems.append(
            f"graph: expected 1 {'edge' if kind == 'order' else 'node'}, found {len(mirrored)}"
        )
    else:
        for name, value in mirrored[0].items():
            if not _same(row[name], value):
                problems.append(f"graph: {name}={value!r}, SQLite has {row[name]!r}")
    if cache_key is not None:
        cached = await _cached(stores, cache_key)
        if cached is None:
            problems.append(f"redis: key {cache_key!r} is missing")
        else:
            shared = [name for name in cached if name in row]
            if not shared:
                problems.append(
                    f"redis: key {cache_key!r} shares no field with the SQLite row "
                    f"(cache fields: {', '.join(sorted(cached))})"
                )
            for name in shared:
                if not _same(row[name], cached[name]):
                    problems.append(
                        f"redis: {cache_key}.{name}={cached[name]!r}, SQLite has {row[name]!r}"
                    )
    _fail(f"{kind} {entity_id} is not consistent across the stores", problems)
    return row


async def assert_absent(
    stores: Stores, kind: str, entity_id: int, *, cache_key: str | None = None
) -> None:
    """No trace of ``kind`` ``entity_id`` in SQLite, the graph, or (if given) ``cache_key``."""
    _kind(kind)
    problems: list[str] = []
    if await _sqlite_row(stores, kind, entity_id) is not None:
        problems.append(f"SQLite {_SQL_TABLE[kind]} has a row with id {entity_id}")
    found = await stores.graph.query(_GRAPH[kind], {"id": entity_id})
    if found:
        problems.append(f"graph has {len(found)} match(es): {found[:3]!r}")
    if cache_key is not None:
        async with stores.cache.client() as conn:
            if await conn.exists(cache_key):
                problems.append(f"redis has key {cache_key!r}")
    _fail(f"{kind} {entity_id} left a trace", problems)
