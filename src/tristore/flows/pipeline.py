"""The user analytics pipeline: one order placed = one coordinated transaction.

    user action ─► SQLite: order row (SQLite computes total/discount/final), analytics refreshed
                 ─► Kuzu:   a PURCHASED edge (the customer's and product's nodes are added
                            before their first order: OrderPipeline.ensure_nodes)
                 ─► Redis:  analytics cache hash, recommendation invalidation, two change events
                 ─► validation: analytics vs an independent recomputation, and all three stores

Everything SQLite decides (the price copied from the product, the tier discount, the generated
money columns, ``created_at``, the refreshed analytics) is read back inside the same transaction
and carried to Kuzu and Redis as SQLite computed it: no store recomputes another's numbers.

All SQLite work runs in one thread hop (``tx.sql_fn``); the graph and cache work is staged and
applied by the coordinator after the SQLite commit: idempotently, in commit order, and the cache
part atomically (one script), so the analytics hash, the invalidations and the events appear at
once. The analytics cache needs no version guard of its own for that reason (the coordinator never
applies an older transaction's cache ops after a newer one's); it still carries ``version`` (the
order id, increasing in commit order because SQLite has one writer) so that a reader can tell
which commit it sees, which is how the dashboard measures cache-sync lag.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tristore.coordinator import Coordinator, validate_consistency
from tristore.errors import QueryError, TristoreError
from tristore.flows.events import ANALYTICS_UPDATED, ORDER_INSERTED, xadd_command
from tristore.flows.recommendations import invalidation_commands
from tristore.schema import ORDER_SUMMARY_SQL, REFRESH_ANALYTICS_SQL, order_amounts_py

__all__ = [
    "FlowValidationError",
    "OrderPipeline",
    "OrderResult",
    "analytics_key",
    "check_consistency",
]


class FlowValidationError(TristoreError):
    """A data flow finished but the stores disagree with each other (``problems`` says how)."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("flow validation failed: " + "; ".join(problems[:5]))
        self.problems = list(problems)


class FlowStores(Protocol):
    """Anything with the three stores: tristore.testing.Stores, PoolManager."""

    sqlite: Any
    graph: Any
    cache: Any


def analytics_key(customer_id: int, period: str) -> str:
    """The analytics cache hash of one customer and month (hash-tagged by customer)."""
    return f"tristore:analytics:{{{int(customer_id)}}}:{period}"


ORDER_COLUMNS = (
    "id",
    "customer_id",
    "product_id",
    "price",
    "quantity",
    "discount",
    "status",
    "created_at",
    "total_price",
    "discount_amount",
    "final_price",
)

# Price from the product and discount from the customer's tier, both as SQLite holds them now;
# no row comes back if the customer or the product does not exist. Only the id is RETURNed: on
# SQLite 3.40 RETURNING hands back a REAL column holding a whole number (a discount_amount of 0.0)
# as the integer 0, while a SELECT gives 0.0; the row is read back with SELECT so that events carry
# the values with the types SQLite stores.
INSERT_ORDER_SQL = """
INSERT INTO orders (customer_id, product_id, price, quantity, discount, created_at)
SELECT c.id, p.id, p.price, :quantity, t.discount, coalesce(:at, datetime('now'))
FROM customers AS c
JOIN pricing_tiers AS t ON t.tier = c.tier
JOIN products AS p ON p.id = :product_id
WHERE c.id = :customer_id
RETURNING id
"""

SELECT_ORDER_SQL = f"SELECT {', '.join(ORDER_COLUMNS)} FROM orders WHERE id = ?"

SELECT_ANALYTICS_SQL = """
SELECT total_orders, total_spent, updated_at FROM analytics
WHERE customer_id = ? AND period = ?
"""

SELECT_NODES_SQL = """
SELECT c.name, c.tier, p.name, p.category, p.price
FROM customers AS c, products AS p WHERE c.id = ? AND p.id = ?
"""

# Every product this customer has bought (this order included): their recommendations change.
BOUGHT_SQL = """
SELECT DISTINCT product_id FROM orders WHERE customer_id = ? AND status <> 'cancelled'
"""

# Whether this customer bought this product before: then the graph already holds the pair, and no
# recommendation changes (they count distinct co-buyers), so nothing is invalidated.
REPEAT_PURCHASE_SQL = """
SELECT EXISTS (
    SELECT 1 FROM orders
    WHERE customer_id = ? AND product_id = ? AND status <> 'cancelled' AND id <> ?
)
"""

# The order's edge, between nodes already in the graph (OrderPipeline adds a customer's and a
# product's nodes before their first order). MATCH and CREATE only, so the coordinator folds the
# edges of a batch of orders into one UNWIND statement and Kuzu's fixed cost per statement is paid
# once per batch (tristore.coordinator.graph_merge); a MERGE in it would keep every order a
# statement of its own. The coordinator applies a transaction's graph ops exactly once (with its
# AppliedTx marker, in one Kuzu transaction), so CREATE, not a relationship MERGE.
PURCHASE_EDGE_CYPHER = """
MATCH (c:Customer {id: $customer_id}), (p:Product {id: $product_id})
CREATE (c)-[:PURCHASED {order_id: $order_id, quantity: $quantity, at: timestamp($at)}]->(p)
"""

# A customer and a product as graph nodes, from their SQLite rows (SQLite is the system of record:
# either may not be in the graph yet). MERGE on the keys: nodes already there are left as they are.
MERGE_NODES_CYPHER = """
MERGE (c:Customer {id: $customer_id})
  ON CREATE SET c.name = $customer_name, c.tier = $tier
MERGE (p:Product {id: $product_id})
  ON CREATE SET p.name = $product_name, p.category = $category, p.price = $product_price
"""

NODES_IN_GRAPH_CYPHER = """
OPTIONAL MATCH (c:Customer {id: $customer_id})
OPTIONAL MATCH (p:Product {id: $product_id})
RETURN count(c), count(p)
"""

EDGES_CYPHER = """
MATCH (c:Customer)-[r:PURCHASED]->(p:Product) WHERE r.order_id IN $ids
RETURN r.order_id, c.id, p.id, r.quantity
"""


@dataclass(frozen=True)
class OrderResult:
    """What one placed order did, as the stores hold it."""

    order: dict[str, Any]  # the SQLite row, generated columns included
    analytics: dict[str, Any]  # customer_id, period, total_orders, total_spent, updated_at
    txid: str
    cache_key: str
    # Products whose recommendations were invalidated: none for a repeat purchase.
    invalidated: tuple[int, ...]
    pending: tuple[str, ...]  # stores not yet applied when place_order returned (normally none)
    commit_ts: float  # epoch seconds at the end of the transaction body (the events' ts)
    # ms: "sql" = writer-lane wait + the SQLite part; "commit_apply" = Kuzu staging, SQLite commit,
    # Kuzu commit and the Redis script; "total".
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def period(self) -> str:
        return str(self.analytics["period"])


def _sqlite_part(
    conn: sqlite3.Connection, customer_id: int, product_id: int, quantity: int, at: str | None
) -> tuple[dict[str, Any], dict[str, Any], list[int]]:
    """The SQLite half of an order, in one thread hop inside the coordinated transaction."""
    row = conn.execute(
        INSERT_ORDER_SQL,
        {"customer_id": customer_id, "product_id": product_id, "quantity": quantity, "at": at},
    ).fetchone()
    if row is None:
        raise _no_such_node(customer_id, product_id)
    order = dict(zip(ORDER_COLUMNS, conn.execute(SELECT_ORDER_SQL, row).fetchone(), strict=True))
    period = str(order["created_at"])[:7]
    conn.execute(REFRESH_ANALYTICS_SQL, {"period": period, "customer_id": customer_id})
    total_orders, total_spent, updated_at = conn.execute(
        SELECT_ANALYTICS_SQL, (customer_id, period)
    ).fetchone()
    analytics = {
        "customer_id": customer_id,
        "period": period,
        "total_orders": total_orders,
        "total_spent": total_spent,
        "updated_at": updated_at,
    }
    (repeat,) = conn.execute(REPEAT_PURCHASE_SQL, (customer_id, product_id, order["id"])).fetchone()
    invalidated = [] if repeat else [r[0] for r in conn.execute(BOUGHT_SQL, (customer_id,))]
    return order, analytics, invalidated


def _no_such_node(customer_id: int, product_id: int) -> QueryError:
    return QueryError(
        "sqlite", f"cannot place an order: no customer {customer_id} or no product {product_id}"
    )


class OrderPipeline:
    """Places orders through the coordinator and validates what the three stores hold."""

    def __init__(self, stores: FlowStores, coordinator: Coordinator) -> None:
        self.stores = stores
        self.coordinator = coordinator
        self.reads = stores.graph  # validation reads
        # (label, id) of the nodes this pipeline knows are in the graph: an order's edge needs
        # both of its nodes there (see ensure_nodes). Loaded whole on first use.
        self._in_graph: set[tuple[str, int]] = set()
        self._loaded = False
        self._loading = asyncio.Lock()

    async def ensure_nodes(self, customer_id: int, product_id: int) -> None:
        """Make sure the customer's and the product's nodes are in the graph.

        An order's edge only MATCHes its nodes, so they must be in the graph before the order
        commits: a node missing then would leave the edge out, silently. A customer or product
        this pipeline does not know is looked up in the graph; a missing node is added by a
        coordinated transaction of its own (``MERGE_NODES_CYPHER``, from the SQLite rows), which
        is applied before this returns, and the coordinator applies graph ops in commit order,
        so every later order's edge finds it. Raises ``QueryError`` if the rows do not
        exist, or if the graph did not take the nodes (that transaction is then a dead letter,
        retryable like any other); no order is placed then.

        The pipeline reads the ids of every customer and product node once, on first use, and
        then remembers the nodes it adds: an order of known nodes costs a set lookup. A node
        deleted from the graph behind a running pipeline (a graph reloaded under it) is not
        looked for again.
        """
        if not self._loaded:
            await self._load_known_nodes()
        wanted = {("Customer", customer_id), ("Product", product_id)}
        if wanted <= self._in_graph:
            return
        ids = {"customer_id": customer_id, "product_id": product_id}
        ((customers, products),) = await self.reads.query_rows(NODES_IN_GRAPH_CYPHER, ids)
        if not (customers and products):
            nodes = await self.stores.sqlite.fetchone(SELECT_NODES_SQL, (customer_id, product_id))
            if nodes is None:
                raise _no_such_node(customer_id, product_id)
            customer_name, tier, product_name, category, product_price = nodes
            async with self.coordinator.transaction() as tx:
                tx.graph(
                    MERGE_NODES_CYPHER,
                    {
                        **ids,
                        "customer_name": customer_name,
                        "tier": tier,
                        "product_name": product_name,
                        "category": category,
                        "product_price": product_price,
                    },
                )
            if tx.pending and not tx.apply_errors:
                # Kept for a replay (a failed Kuzu commit): applied before any later graph work,
                # but an order's edge needs the nodes there, so wait for it.
                await tx.applied(self.coordinator.lock_timeout)
            if tx.pending or tx.apply_errors:
                raise QueryError(
                    "graph",
                    f"cannot place an order: the graph did not take customer {customer_id} and "
                    f"product {product_id} (transaction {tx.txid}, a dead letter: "
                    f"{'; '.join(tx.apply_errors) or 'not applied'})",
                )
        self._in_graph |= wanted

    async def _load_known_nodes(self) -> None:
        async with self._loading:
            if self._loaded:
                return
            for label in ("Customer", "Product"):
                rows = await self.reads.query_rows(f"MATCH (n:{label}) RETURN n.id")
                self._in_graph.update((label, int(node_id)) for (node_id,) in rows)
            self._loaded = True

    async def place_order(
        self,
        customer_id: int,
        product_id: int,
        quantity: int = 1,
        *,
        at: str | None = None,
    ) -> OrderResult:
        """One coordinated transaction; returns once all three stores hold the order.

        ``at`` ('YYYY-MM-DD HH:MM:SS') overrides SQLite's clock, for tests of a given month.
        Raises a typed error (and nothing is applied anywhere) if any part is rejected.
        """
        started = time.perf_counter()
        await self.ensure_nodes(customer_id, product_id)
        async with self.coordinator.transaction() as tx:
            order, analytics, affected = await tx.sql_fn(
                lambda c: _sqlite_part(c, customer_id, product_id, quantity, at)
            )
            tx.graph(
                PURCHASE_EDGE_CYPHER,
                {
                    "customer_id": customer_id,
                    "product_id": product_id,
                    "order_id": order["id"],
                    "quantity": order["quantity"],
                    "at": order["created_at"],
                },
            )
            key = analytics_key(customer_id, analytics["period"])
            version = order["id"]
            tx.cache(
                "HSET",
                key,
                "customer_id",
                customer_id,
                "period",
                analytics["period"],
                "total_orders",
                analytics["total_orders"],
                "total_spent",
                analytics["total_spent"],
                "updated_at",
                analytics["updated_at"],
                "version",
                version,
            )
            invalidated = tuple(sorted(affected))
            for command in invalidation_commands(invalidated):
                tx.cache(*command)
            sql_done = time.perf_counter()
            # The events' "commit" time: the end of the body. The coordinator then runs the graph
            # ops in Kuzu (~1.5 ms) and commits SQLite, so latencies measured from here are
            # upper bounds that include both (it exposes no commit timestamp of its own).
            ts = time.time()
            tx.cache(
                *xadd_command(ORDER_INSERTED, order | {"version": version}, ts=ts, txid=tx.txid)
            )
            tx.cache(
                *xadd_command(
                    ANALYTICS_UPDATED,
                    analytics | {"cache_key": key, "version": version, "order_id": order["id"]},
                    ts=ts,
                    txid=tx.txid,
                )
            )
        done = time.perf_counter()
        return OrderResult(
            order=order,
            analytics=analytics,
            txid=tx.txid,
            cache_key=key,
            invalidated=invalidated,
            pending=tx.pending,
            commit_ts=ts,
            timings={
                "sql_ms": (sql_done - started) * 1000,
                "commit_apply_ms": (done - sql_done) * 1000,
                "total_ms": (done - started) * 1000,
            },
        )

    async def validate(self, result: OrderResult) -> None:
        """Check one order across the stores; raise :class:`FlowValidationError` on drift.

        Meant for a quiet system (a test, or after a load run): a concurrent order of the same
        customer in the same month legitimately moves the analytics on.
        """
        problems = await _check_order(self, result.order)
        problems += await _check_analytics(self, [(result.order["customer_id"], result.period)])
        if problems:
            raise FlowValidationError(problems)


async def _check_order(pipeline: OrderPipeline, order: Mapping[str, Any]) -> list[str]:
    stores = pipeline.stores
    problems: list[str] = []
    row = await stores.sqlite.fetchone(SELECT_ORDER_SQL, (order["id"],))
    stored = dict(zip(ORDER_COLUMNS, row, strict=True)) if row else None
    if stored != dict(order):
        problems.append(f"order {order['id']}: SQLite holds {stored!r}, flow saw {dict(order)!r}")
    if stored is not None:
        expected = order_amounts_py(stored["price"], stored["quantity"], stored["discount"])
        got = (stored["total_price"], stored["discount_amount"], stored["final_price"])
        if tuple(expected) != got:
            problems.append(f"order {order['id']}: generated columns {got} != rule {expected}")
    edges = await pipeline.reads.query_rows(EDGES_CYPHER, {"ids": [order["id"]]})
    want = [[order["id"], order["customer_id"], order["product_id"], order["quantity"]]]
    if edges != want:
        problems.append(f"order {order['id']}: graph edges {edges} != {want}")
    return problems


async def _check_analytics(pipeline: OrderPipeline, scopes: Iterable[tuple[int, str]]) -> list[str]:
    """analytics table == an independent recomputation (ORDER_SUMMARY_SQL) == the cache hash."""
    stores = pipeline.stores
    problems: list[str] = []
    for customer_id, period in sorted(set(scopes)):
        summary = await stores.sqlite.fetchone(
            ORDER_SUMMARY_SQL, {"period": period, "customer_id": customer_id}
        )
        table = await stores.sqlite.fetchone(
            "SELECT total_orders, total_spent FROM analytics WHERE customer_id = ? AND period = ?",
            (customer_id, period),
        )
        recomputed = (summary[1], summary[2]) if summary else (0, 0.0)
        if table is None or tuple(table) != recomputed:
            problems.append(
                f"analytics {customer_id}/{period}: table {table} != recomputed {recomputed}"
            )
            continue
        cached = await stores.cache.execute("HGETALL", analytics_key(customer_id, period))
        cached = {_text(k): _text(v) for k, v in (cached or {}).items()}
        in_cache = (int(cached.get("total_orders", -1)), float(cached.get("total_spent", "nan")))
        if in_cache != tuple(table):
            problems.append(f"analytics {customer_id}/{period}: cache {in_cache} != SQLite {table}")
    return problems


async def check_consistency(
    pipeline: OrderPipeline,
    order_ids: Sequence[int],
    *,
    txids: Sequence[str] | None = None,
    settle_timeout: float = 10.0,
) -> list[str]:
    """After a run: every order in SQLite has its edge in Kuzu, analytics agree in SQLite and
    Redis, and the coordinator reports no drift for ``txids``. Returns the problems found."""
    stores = pipeline.stores
    if pipeline.coordinator.pending_count():
        # Committed work not yet applied (a store was briefly unavailable): roll it forward
        # first, as the periodic sweep would, so only real drift is reported.
        async with asyncio.timeout(settle_timeout):
            await pipeline.coordinator.recover()
    problems: list[str] = []
    ids = sorted(set(order_ids))
    scopes: set[tuple[int, str]] = set()
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        rows = await stores.sqlite.fetchall(
            f"SELECT id, customer_id, product_id, quantity, created_at FROM orders "
            f"WHERE id IN ({marks})",
            chunk,
        )
        in_sqlite = {r[0]: [r[0], r[1], r[2], r[3]] for r in rows}
        scopes |= {(r[1], str(r[4])[:7]) for r in rows}
        edges = await pipeline.reads.query_rows(EDGES_CYPHER, {"ids": chunk})
        in_graph = {e[0]: e for e in edges}
        for oid in chunk:
            if oid not in in_sqlite:
                problems.append(f"order {oid}: reported placed but not in SQLite")
            elif in_graph.get(oid) != in_sqlite[oid]:
                graph_row = in_graph.get(oid)
                problems.append(f"order {oid}: graph {graph_row} != SQLite {in_sqlite[oid]}")
        if len(edges) != len(in_graph):
            problems.append(f"orders {chunk[0]}..{chunk[-1]}: duplicate PURCHASED edges")
    problems += await _check_analytics(pipeline, scopes)
    if txids:
        report = await validate_consistency(pipeline.coordinator, txids=list(txids))
        problems += [f"{d.kind} {d.subject}: {d.detail}" for d in report.drift]
    return problems


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes | bytearray) else str(value)
