"""Statement batching has the effect of running the ops one after the other, in order.

Random sequences of graph ops (node and edge creations, which may be merged; counters, MERGEs and
deletes, which may not) are applied twice to fresh Kuzu databases: once op by op, each in a
transaction of its own, and once as :func:`graph_merge.plan` batches them, in one transaction.
The two graphs must be equal. The engine is the raw one: this tests the rewrite, not the stores.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import kuzu
import pytest

from tristore.coordinator import graph_merge

SCHEMA = (
    "CREATE NODE TABLE Customer(id INT64 PRIMARY KEY, name STRING, n INT64)",
    "CREATE NODE TABLE Product(id INT64 PRIMARY KEY, name STRING, price DOUBLE)",
    "CREATE REL TABLE PURCHASED(FROM Customer TO Product, order_id INT64, quantity INT64)",
)
NEW_CUSTOMER = "CREATE (:Customer {id: $id, name: $name, n: 0})"
PURCHASE = (
    "MATCH (c:Customer {id: $cid}), (p:Product {id: $pid})"
    " CREATE (c)-[:PURCHASED {order_id: $oid, quantity: $qty}]->(p)"
)
BUMP = "MATCH (c:Customer {id: $id}) SET c.n = c.n + 1"
SET_NAME = "MATCH (c:Customer {id: $id}) SET c.name = $name"
MERGE_BUY = (
    "MERGE (c:Customer {id: $cid}) ON CREATE SET c.name = 'merged', c.n = 0"
    " MERGE (p:Product {id: $pid}) ON CREATE SET p.name = 'merged', p.price = 1.0"
    " CREATE (c)-[:PURCHASED {order_id: $oid, quantity: 1}]->(p)"
)
UNBUY = "MATCH (:Customer)-[r:PURCHASED {order_id: $oid}]->(:Product) DELETE r"


@pytest.mark.parametrize(
    ("cypher", "expected"),
    [
        (NEW_CUSTOMER, True),
        (PURCHASE, True),
        (BUMP, False),  # reads what another row may write
        (SET_NAME, False),
        (MERGE_BUY, False),  # Kuzu 0.11.3 attaches later rows' edges to the wrong nodes
        (UNBUY, False),
        ("MATCH (c:Customer {id: $id}) CREATE (:Customer {id: $new, name: 'x', n: 0})", False),
        ("MATCH (c) CREATE (:Product {id: $id})", False),  # an unlabelled match sees new nodes
        ("CREATE (:Product {id: 1, name: 'fixed', price: 1.0})", False),  # no parameter
        ("CREATE (:Customer {id: $id, name: '$not_a_param', n: 0}) // note", False),
    ],
)
def test_which_statements_merge(cypher: str, expected: bool) -> None:
    assert graph_merge.mergeable(cypher) is expected


def test_parameters_inside_string_literals_are_left_alone() -> None:
    text = graph_merge.unwound("CREATE (:Customer {id: $id, name: '$id costs $5', n: $n})")
    assert text == (
        "UNWIND $tristore_rows AS tristore_row CREATE (:Customer "
        "{id: tristore_row.id, name: '$id costs $5', n: tristore_row.n})"
    )


def _random_ops(rng: random.Random, n: int) -> list[tuple[str, dict[str, Any]]]:
    ops: list[tuple[str, dict[str, Any]]] = []
    customers: list[int] = []
    next_id, order = 100, 0
    for _ in range(n):
        kind = rng.choices(["new", "buy", "bump", "name", "merge", "unbuy"], [4, 6, 3, 1, 1, 1])[0]
        if kind == "new" or not customers:
            next_id += 1
            customers.append(next_id)
            ops.append((NEW_CUSTOMER, {"id": next_id, "name": f"c{next_id}"}))
        elif kind == "buy":
            order += 1
            cid = rng.choice(customers)
            ops.append((PURCHASE, {"cid": cid, "pid": rng.randint(1, 3), "oid": order, "qty": 2}))
        elif kind == "bump":
            ops.append((BUMP, {"id": rng.choice(customers)}))
        elif kind == "name":
            ops.append((SET_NAME, {"id": rng.choice(customers), "name": f"n{rng.random():.3f}"}))
        elif kind == "merge":
            order += 1
            cid = rng.choice([*customers, 5000, 5001])  # existing, or created by the MERGE
            ops.append((MERGE_BUY, {"cid": cid, "pid": 2, "oid": order}))
        else:
            ops.append((UNBUY, {"oid": rng.randint(1, max(order, 1))}))
    return ops


def _fresh(path: Path) -> kuzu.Connection:
    conn = kuzu.Connection(kuzu.Database(str(path)))
    for statement in SCHEMA:
        conn.execute(statement)
    for pid in (1, 2, 3):
        conn.execute("CREATE (:Product {id: $id, name: 'p', price: 1.0})", {"id": pid})
    return conn


def _state(conn: kuzu.Connection) -> tuple[Any, ...]:
    return (
        conn.execute("MATCH (c:Customer) RETURN c.id, c.name, c.n ORDER BY c.id").get_all(),
        conn.execute("MATCH (p:Product) RETURN p.id, p.name ORDER BY p.id").get_all(),
        conn.execute(
            "MATCH (c:Customer)-[r:PURCHASED]->(p:Product)"
            " RETURN r.order_id, c.id, p.id, r.quantity ORDER BY r.order_id, c.id, p.id"
        ).get_all(),
    )


@pytest.mark.parametrize("seed", range(20))
def test_merged_batches_equal_one_op_at_a_time(tmp_path: Path, seed: int) -> None:
    ops = _random_ops(random.Random(seed), 150)
    one_by_one = _fresh(tmp_path / "one")
    for cypher, params in ops:
        one_by_one.execute(cypher, params)
    batched = _fresh(tmp_path / "batched")
    statements = graph_merge.plan(ops)
    batched.execute("BEGIN TRANSACTION")
    for cypher, params in statements:
        batched.execute(cypher, params)
    batched.execute("COMMIT")
    assert _state(batched) == _state(one_by_one)
    assert len(statements) < len(ops)  # something was merged


def test_a_run_of_one_shape_becomes_one_statement() -> None:
    ops = [(NEW_CUSTOMER, {"id": i, "name": f"c{i}"}) for i in range(50)]
    statements = graph_merge.plan(ops)
    assert len(statements) == 1
    assert statements[0][1] == {"tristore_rows": [p for _, p in ops]}


def test_rows_of_different_types_are_not_merged() -> None:
    ops = [(NEW_CUSTOMER, {"id": 1, "name": "a"}), (NEW_CUSTOMER, {"id": 2, "name": None})]
    assert graph_merge.plan(ops) == ops
