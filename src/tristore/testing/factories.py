"""Factories: realistic domain rows written to the real stores, parents created as needed.

``await factory.order()`` inserts a customer, a product and an order that references both, in one
SQLite transaction, and returns the order *as SQLite stored it*: the generated columns
(``total_price``, ``discount_amount``, ``final_price``) and the column defaults come back from the
database, never from Python, so a test sees what the schema really computes.

- Every field can be overridden by keyword: ``factory.order(quantity=3, discount=0.15)``. A field
  the table does not have raises ``TypeError`` naming it; a generated column (or one that triggers
  maintain) raises ``TypeError`` too, because setting it would test nothing.
- Foreign keys are respected: a parent not given is created; a parent given (a row, or a raw
  ``customer_id=``) is used as is, so a dangling id meets SQLite's real FOREIGN KEY error.
- Defaults look like the seeded data sets of :mod:`tristore.schema.generate` (same word lists,
  tier discounts, country tax rates, timestamps after the customer signed up) and come from a
  ``random.Random(seed)``: the same seed gives the same rows. Emails and SKUs carry a process-wide
  sequence number, so two factories in one test never collide on a UNIQUE column.
- ``Factory(sqlite, graph=graph)`` mirrors what it creates into the graph (customer and product
  nodes, a PURCHASED edge per order that is not cancelled), as the data flow does.
  :class:`GraphFactory` writes graph-only data for tests of the graph alone.

Every statement is parameterized; table and column names come from this module, never from the
caller (unknown field names are refused before any SQL is built).
"""

from __future__ import annotations

import itertools
import random
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tristore.errors import QueryError
from tristore.schema import COUNTRIES, PRICING_TIERS
from tristore.schema.generate import (  # the seeded data sets' word lists: rows look alike
    _ADJECTIVES,
    _CATEGORIES,
    _DOMAINS,
    _END,
    _FIRST,
    _LAST,
    _SIGNUP_SPAN,
    _TIER_WEIGHTS,
    _ts,
)
from tristore.stores import GraphStore, SQLiteStore

__all__ = ["Factory", "GraphFactory", "Row", "TableSpec"]

# One sequence per process: unique emails and SKUs across every factory of a test (and of a
# session), whatever their seeds.
_sequence = itertools.count(1)

_HOUR = 3_600
_DAY = 86_400


class Row(dict[str, Any]):
    """A stored row: a plain dict that also allows ``row.final_price``."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            columns = ", ".join(self)
            raise AttributeError(f"row has no column {name!r} (columns: {columns})") from None


@dataclass(frozen=True)
class TableSpec:
    """What a factory may set: ``fields``; what the store computes: ``computed`` (with why)."""

    kind: str  # the factory method, named in errors
    table: str
    fields: tuple[str, ...]
    computed: Mapping[str, str]

    def check(self, given: Iterable[str]) -> None:
        """Raise TypeError for a field the table lacks or the store computes."""
        for name in given:
            if name in self.computed:
                raise TypeError(
                    f"{self.kind}(): {name!r} is {self.computed[name]}; it cannot be set "
                    "(set the fields it is computed from instead)"
                )
            if name not in self.fields:
                raise TypeError(
                    f"{self.kind}(): unknown field {name!r} "
                    f"(fields of {self.table}: {', '.join(sorted(self.fields))})"
                )


_GENERATED = "a generated column computed by SQLite"

CUSTOMERS = TableSpec(
    "customer", "customers", ("id", "email", "name", "country", "tier", "created_at"), {}
)
PRODUCTS = TableSpec(
    "product",
    "products",
    ("id", "sku", "name", "category", "price", "stock"),
    {"rating": "kept equal to the mean of product_ratings by triggers (use factory.rating())"},
)
ORDERS = TableSpec(
    "order",
    "orders",
    ("id", "customer_id", "product_id", "price", "quantity", "discount", "status", "created_at"),
    {"total_price": _GENERATED, "discount_amount": _GENERATED, "final_price": _GENERATED},
)
INVOICES = TableSpec(
    "invoice",
    "invoices",
    ("id", "order_id", "subtotal", "tax_rate", "issued_at"),
    {"tax_amount": _GENERATED, "grand_total": _GENERATED},
)
RATINGS = TableSpec(
    "rating", "product_ratings", ("product_id", "customer_id", "rating", "created_at"), {}
)

# Graph tables: node properties, and edge endpoints plus properties.
G_CUSTOMER = TableSpec("customer", "Customer", ("id", "name", "tier"), {})
G_PRODUCT = TableSpec("product", "Product", ("id", "name", "category", "price"), {})
G_PURCHASED = TableSpec(
    "purchased", "PURCHASED", ("customer_id", "product_id", "order_id", "quantity", "at"), {}
)
G_VIEWED = TableSpec("viewed", "VIEWED", ("customer_id", "product_id", "at"), {})
G_FOLLOWS = TableSpec("follows", "FOLLOWS", ("follower_id", "followee_id", "since"), {})


def _reject_conflict(kind: str, parent: str, given: Any, fields: Mapping[str, Any]) -> None:
    key = f"{parent}_id"
    if given is not None and key in fields:
        raise TypeError(f"{kind}(): pass {parent}= or {key}=, not both")


def _resolve(kind: str, parent: str, given: Any, fields: Mapping[str, Any]) -> int | None:
    """The parent's id from ``parent=`` (a row or an id) or ``<parent>_id=``; None if neither."""
    _reject_conflict(kind, parent, given, fields)
    found = _parent_id(kind, parent, given)
    return found if found is not None else fields.get(f"{parent}_id")


def _parent_id(kind: str, parent: str, value: Any) -> int | None:
    """A parent given as a row (``Row``/mapping with ``id``) or as an int id."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        if "id" not in value:
            raise TypeError(f"{kind}(): {parent}= must be a row with an 'id' or an int id")
        return int(value["id"])
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise TypeError(f"{kind}(): {parent}= must be a row or an int id, got {type(value).__name__}")


# --- values (pure: no I/O) ---------------------------------------------------------------------


class _Values:
    """Realistic default values from one seeded RNG, drawn on the event loop (deterministic)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def customer(self) -> dict[str, Any]:
        rng = self.rng
        n = next(_sequence)
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        local = f"{first}.{last}".lower().replace("'", "").replace("ü", "ue")
        tiers, weights = zip(*_TIER_WEIGHTS, strict=True)
        countries = list(COUNTRIES)
        shares = [share for share, _ in COUNTRIES.values()]
        return {
            "email": f"{local}.{n}@{rng.choice(_DOMAINS)}",
            "name": f"{first} {last}",
            "country": rng.choices(countries, shares)[0],
            "tier": rng.choices(tiers, weights)[0],
            "created_at": _ts(rng.randrange(_SIGNUP_SPAN)),
        }

    def product(self) -> dict[str, Any]:
        rng = self.rng
        n = next(_sequence)
        names = list(_CATEGORIES)
        category = rng.choices(names, [share for _, share, _, _ in _CATEGORIES.values()])[0]
        code, _, (lo, hi), nouns = _CATEGORIES[category]
        cents = max(49, rng.randint(lo, hi) * 100 - rng.choice((1, 1, 5, 51)))  # charm prices
        return {
            "sku": f"{code}-F{n:06d}",
            "name": f"{rng.choice(_ADJECTIVES)} {rng.choice(nouns)}",
            "category": category,
            "price": cents / 100,
            "stock": rng.randint(1, 500),
        }

    def quantity(self) -> int:
        return self.rng.choices((1, 2, 3, 4, 5), (60, 20, 10, 6, 4))[0]

    def after(self, lo: int, hi: int) -> str:
        """An SQLite datetime modifier: some time after a parent's timestamp."""
        return f"+{self.rng.randint(lo, hi)} seconds"

    def rating(self) -> int:
        return self.rng.choices((1, 2, 3, 4, 5), (5, 7, 15, 35, 38))[0]

    def timestamp(self) -> str:
        return _ts(_SIGNUP_SPAN + self.rng.randrange(_END - _SIGNUP_SPAN))


# --- SQLite helpers (run on the writer connection, inside the store's transaction) ------------


def _insert(conn: sqlite3.Connection, spec: TableSpec, values: Mapping[str, Any]) -> Row:
    columns = [c for c in spec.fields if c in values]  # names from the spec, never the caller
    sql = (
        f"INSERT INTO {spec.table} ({', '.join(columns)}) "
        f"VALUES ({', '.join('?' * len(columns))}) RETURNING *"
    )
    cur = conn.execute(sql, [values[c] for c in columns])
    row = cur.fetchone()
    names = [d[0] for d in cur.description]
    cur.close()
    return Row(zip(names, row, strict=True))


def _select(conn: sqlite3.Connection, table: str, key: str, value: Any) -> Row | None:
    cur = conn.execute(f"SELECT * FROM {table} WHERE {key} = ?", (value,))
    row = cur.fetchone()
    if row is None:
        return None
    return Row(zip([d[0] for d in cur.description], row, strict=True))


def _shifted(conn: sqlite3.Connection, at: str, modifier: str) -> str:
    # SQLite's own date arithmetic, so any timestamp format SQLite accepts works as a parent's.
    value = conn.execute("SELECT datetime(?, ?)", (at, modifier)).fetchone()[0]
    return str(value) if value is not None else at


# --- graph statements ---------------------------------------------------------------------------

MERGE_CUSTOMER = "MERGE (c:Customer {id: $id}) SET c.name = $name, c.tier = $tier"
MERGE_PRODUCT = (
    "MERGE (p:Product {id: $id}) SET p.name = $name, p.category = $category, p.price = $price"
)
CREATE_PURCHASED = (
    "MATCH (c:Customer {id: $customer_id}), (p:Product {id: $product_id}) "
    "CREATE (c)-[r:PURCHASED {order_id: $order_id, quantity: $quantity, at: timestamp($at)}]->(p) "
    "RETURN count(r)"
)
CREATE_VIEWED = (
    "MATCH (c:Customer {id: $customer_id}), (p:Product {id: $product_id}) "
    "CREATE (c)-[r:VIEWED {at: timestamp($at)}]->(p) RETURN count(r)"
)
CREATE_FOLLOWS = (
    "MATCH (a:Customer {id: $follower_id}), (b:Customer {id: $followee_id}) "
    "CREATE (a)-[r:FOLLOWS {since: timestamp($since)}]->(b) RETURN count(r)"
)


def _customer_node(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "name": row["name"], "tier": row["tier"]}


def _product_node(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("id", "name", "category", "price")}


# --- the SQLite (+ mirrored graph) factory -------------------------------------------------------


class Factory:
    """Domain rows in SQLite (and, with ``graph=``, their nodes and edges in the graph).

    Methods return the stored row as a :class:`Row`. Each call is one SQLite transaction through
    the store's writer lane, so concurrent calls (``asyncio.gather``) are safe.
    """

    def __init__(
        self, sqlite: SQLiteStore, *, graph: GraphStore | None = None, seed: int = 0
    ) -> None:
        self.sqlite = sqlite
        self.graph = graph
        self._values = _Values(seed)

    async def customer(self, **fields: Any) -> Row:
        CUSTOMERS.check(fields)
        values = self._values.customer() | fields
        row = await self.sqlite.write(lambda c: _insert(c, CUSTOMERS, values))
        if self.graph is not None:
            await self.graph.execute(MERGE_CUSTOMER, _customer_node(row))
        return row

    async def product(self, **fields: Any) -> Row:
        PRODUCTS.check(fields)
        values = self._values.product() | fields
        row = await self.sqlite.write(lambda c: _insert(c, PRODUCTS, values))
        if self.graph is not None:
            await self.graph.execute(MERGE_PRODUCT, _product_node(row))
        return row

    async def order(self, customer: Any = None, product: Any = None, **fields: Any) -> Row:
        """An order; ``customer``/``product`` (rows or ids) are created when not given.

        Defaults: the product's current price, the customer's tier discount, a realistic quantity,
        status ``placed``, created some hours to 30 days after the customer signed up.
        """
        ORDERS.check(fields)
        cid = _resolve("order", "customer", customer, fields)
        pid = _resolve("order", "product", product, fields)
        new_customer = self._values.customer() if cid is None else None
        new_product = self._values.product() if pid is None else None
        quantity = self._values.quantity()
        later = self._values.after(_HOUR, 30 * _DAY)

        def insert(conn: sqlite3.Connection) -> tuple[Row, Row | None, Row | None]:
            cust = _insert(conn, CUSTOMERS, new_customer) if new_customer else None
            prod = _insert(conn, PRODUCTS, new_product) if new_product else None
            customer_id = cust["id"] if cust else cid
            product_id = prod["id"] if prod else pid
            cust = cust or _select(conn, "customers", "id", customer_id)
            prod = prod or _select(conn, "products", "id", product_id)
            values: dict[str, Any] = {
                "customer_id": customer_id,
                "product_id": product_id,
                "quantity": quantity,
                "status": "placed",
                # A missing parent leaves the default to the schema; the INSERT then meets
                # SQLite's real FOREIGN KEY error, which is what the caller should see.
                "price": prod["price"] if prod else 0.0,
                "discount": PRICING_TIERS.get(cust["tier"], 0.0) if cust else 0.0,
            }
            if cust and "created_at" not in fields:
                values["created_at"] = _shifted(conn, cust["created_at"], later)
            values |= fields
            return _insert(conn, ORDERS, values), cust, prod

        row, cust, prod = await self.sqlite.write(insert)
        if self.graph is not None and cust is not None and prod is not None:
            statements: list[tuple[str, Mapping[str, Any] | None]] = [
                (MERGE_CUSTOMER, _customer_node(cust)),
                (MERGE_PRODUCT, _product_node(prod)),
            ]
            if row["status"] != "cancelled":  # the graph holds purchases, not cancellations
                statements.append((CREATE_PURCHASED, _purchase(row)))
            await self.graph.write(statements)
        return row

    async def invoice(self, order: Any = None, **fields: Any) -> Row:
        """An invoice for ``order`` (created, status ``paid``, when not given).

        Defaults: subtotal = the order's final_price, tax_rate = the customer's country rate,
        issued minutes to two days after the order.
        """
        INVOICES.check(fields)
        oid = _resolve("invoice", "order", order, fields)
        if oid is None:
            oid = (await self.order(status="paid"))["id"]
        later = self._values.after(600, 2 * _DAY)

        def insert(conn: sqlite3.Connection) -> Row:
            values: dict[str, Any] = {"order_id": oid}
            found = conn.execute(
                "SELECT o.final_price, o.created_at, c.country FROM orders AS o"
                " JOIN customers AS c ON c.id = o.customer_id WHERE o.id = ?",
                (oid,),
            ).fetchone()
            if found is not None:
                final_price, created_at, country = found
                values["subtotal"] = final_price
                values["tax_rate"] = COUNTRIES.get(country, (0, 0.0))[1]
                values["issued_at"] = _shifted(conn, created_at, later)
            else:
                values |= {"subtotal": 0.0, "tax_rate": 0.0}  # FOREIGN KEY error follows
            values |= fields
            return _insert(conn, INVOICES, values)

        return await self.sqlite.write(insert)

    async def rating(self, product: Any = None, customer: Any = None, **fields: Any) -> Row:
        """A product rating (1-5 stars); the product's ``rating`` column follows by trigger."""
        RATINGS.check(fields)
        pid = _resolve("rating", "product", product, fields)
        cid = _resolve("rating", "customer", customer, fields)
        if pid is None:
            pid = (await self.product())["id"]
        if cid is None:
            cid = (await self.customer())["id"]
        values = {
            "product_id": pid,
            "customer_id": cid,
            "rating": self._values.rating(),
            "created_at": self._values.timestamp(),
        } | fields
        return await self.sqlite.write(lambda c: _insert(c, RATINGS, values))


def _purchase(order: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "customer_id": order["customer_id"],
        "product_id": order["product_id"],
        "order_id": order["id"],
        "quantity": order["quantity"],
        "at": order["created_at"],
    }


# --- graph-only factory --------------------------------------------------------------------------


def _next_id(conn: Any, label: str, key: str = "id", rel: bool = False) -> int:
    # Inside the writer-lane transaction, so concurrent factory calls never pick the same id.
    pattern = f"()-[n:{label}]->()" if rel else f"(n:{label})"
    rows = conn.execute(f"MATCH {pattern} RETURN coalesce(max(n.{key}), 0)").get_all()
    return int(rows[0][0]) + 1


class GraphFactory:
    """Nodes and edges in the graph alone. Ids default to the next free one."""

    def __init__(self, graph: GraphStore, *, seed: int = 0) -> None:
        self.graph = graph
        self._values = _Values(seed)

    async def _node(self, spec: TableSpec, statement: str, values: dict[str, Any]) -> Row:
        def create(conn: Any) -> Row:
            if "id" not in values:
                values["id"] = _next_id(conn, spec.table)
            conn.execute(statement, values)
            return Row(values)

        return await self.graph.write_fn(create)

    async def customer(self, **fields: Any) -> Row:
        G_CUSTOMER.check(fields)
        base = self._values.customer()
        values = {"name": base["name"], "tier": base["tier"]} | fields
        return await self._node(G_CUSTOMER, MERGE_CUSTOMER, values)

    async def product(self, **fields: Any) -> Row:
        G_PRODUCT.check(fields)
        base = self._values.product()
        values = {k: base[k] for k in ("name", "category", "price")} | fields
        return await self._node(G_PRODUCT, MERGE_PRODUCT, values)

    async def _edge(
        self,
        spec: TableSpec,
        statement: str,
        ends: tuple[tuple[str, Any, Callable[[], Any]], tuple[str, Any, Callable[[], Any]]],
        fields: dict[str, Any],
        defaults: dict[str, Any],
    ) -> Row:
        spec.check(fields)
        values = dict(defaults)
        for key, given, make in ends:
            end = _resolve(spec.kind, key.removesuffix("_id"), given, fields)
            values[key] = end if end is not None else (await make())["id"]
        values |= fields

        def create(conn: Any) -> Row:
            if spec is G_PURCHASED and "order_id" not in values:
                values["order_id"] = _next_id(conn, "PURCHASED", "order_id", rel=True)
            # MATCH ... CREATE silently creates nothing when an end is missing: say so instead.
            if conn.execute(statement, values).get_all() != [[1]]:
                missing = ", ".join(f"{k}={values.get(k)!r}" for k, _, _ in ends)
                raise QueryError("graph", f"{spec.kind}(): no node for {missing}")
            return Row(values)

        return await self.graph.write_fn(create)

    async def purchased(self, customer: Any = None, product: Any = None, **fields: Any) -> Row:
        return await self._edge(
            G_PURCHASED,
            CREATE_PURCHASED,
            (("customer_id", customer, self.customer), ("product_id", product, self.product)),
            fields,
            {"quantity": self._values.quantity(), "at": self._values.timestamp()},
        )

    async def viewed(self, customer: Any = None, product: Any = None, **fields: Any) -> Row:
        return await self._edge(
            G_VIEWED,
            CREATE_VIEWED,
            (("customer_id", customer, self.customer), ("product_id", product, self.product)),
            fields,
            {"at": self._values.timestamp()},
        )

    async def follows(self, follower: Any = None, followee: Any = None, **fields: Any) -> Row:
        return await self._edge(
            G_FOLLOWS,
            CREATE_FOLLOWS,
            (("follower_id", follower, self.customer), ("followee_id", followee, self.customer)),
            fields,
            {"since": self._values.timestamp()},
        )
