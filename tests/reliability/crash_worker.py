"""Child process of the crash-loop test: recover, check the invariant, then commit until killed.

Run as ``python crash_worker.py DATA_DIR GENERATION MODE SEED [ORDERING [ENGINE]]`` with the
Redis URL on the first line of stdin (never on argv, where ``ps`` would show the password). MODE
is ``run`` (check, then run transactions until SIGKILLed) or ``check`` (check and exit 0);
ORDERING is the coordinator's (``deferred`` by default), ENGINE the graph's (``kuzu``). Protocol
on stdout, one line each, flushed: ``RECOVERED ...``, ``CHECKED ...`` or ``DRIFT ...`` (exit 3),
``READY``, then per transaction ``BEGIN tag`` and ``END tag committed|dead|pending|aborted``.

The invariant, checked after the start-up recovery of every generation:

- every intent is applied (nothing pending or failed) and no store holds markers of a
  transaction that never committed (:func:`validate_consistency`);
- the workload's entities agree across the stores: the same customers and orders in SQLite, as
  nodes and ``PURCHASED`` edges (exactly one per order: the graph ops are plain CREATEs, so a
  double apply would show), each product's graph price raised by exactly the quantities ordered
  (a read-modify-write of a shared node: a double or lost apply would show), and as Redis
  entries, with counters equal to SQLite's count and sum (increments: a double apply would show);
- a transaction the graph rejected after its commit (a duplicate key: deferred ordering only) is
  a dead letter, and only that: its rows and cache entries are there, its graph part is not;
- every tag the parent saw committed is there; no tag it saw aborted is anywhere.

The other reliability tests import the workload (:func:`one_transaction`) and the invariant
(:func:`check`) from here, so every test of the coordinator's durability checks the same thing.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from collections.abc import Set as AbstractSet
from pathlib import Path

from tristore.coordinator import Coordinator, validate_consistency
from tristore.errors import TristoreError
from tristore.testing.setup import open_stores, store_settings

PRODUCTS = 5
SEED_EMAIL = "seed@example.com"
SEED_NODE = 1_000_000_000  # a graph customer that a failing member collides with


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def read_tags(path: Path) -> set[str]:
    return set(path.read_text().split()) if path.exists() else set()


async def ensure_catalogue(coord: Coordinator) -> None:
    """Products (SQLite + graph) and a customer to collide with, made once, coordinated too."""
    have = await coord.sqlite.fetchone("SELECT count(*) FROM products")
    if have[0] >= PRODUCTS:
        return
    async with coord.transaction() as tx:
        await tx.sql(
            "INSERT OR IGNORE INTO customers (email, name, country) VALUES (?, 'Seed', 'GB')",
            (SEED_EMAIL,),
        )
        for pid in range(1, PRODUCTS + 1):
            price = 3.25 * pid
            await tx.sql(
                "INSERT INTO products (id, sku, name, category, price, stock)"
                " VALUES (?, ?, ?, 'crash', ?, 100)",
                (pid, f"CR-{pid}", f"Product {pid}", price),
            )
            tx.graph(
                "CREATE (:Product {id: $id, name: $name, category: 'crash', price: $price})",
                {"id": pid, "name": f"Product {pid}", "price": price},
            )
        tx.graph("CREATE (:Customer {id: $id, name: 'Seed', tier: 'seed'})", {"id": SEED_NODE})


async def one_transaction(
    coord: Coordinator,
    tag: str,
    rng: random.Random,
    *,
    failures: bool = True,
    graph_rollbacks: bool = True,
) -> str:
    """Place an order for a new customer; with ``failures`` about one in four fails on purpose.

    Returns ``committed``, ``dead`` (committed, its graph part rejected when applied: a dead
    letter), ``pending`` (committed, a store still to apply) or ``aborted``.

    Without ``graph_rollbacks``, no failure is one that rolls back a Kuzu write transaction (the
    graph store then CHECKPOINTs, and a SIGKILL during Kuzu 0.11.3's CHECKPOINT can leave a log
    it cannot replay: tests/integration/test_graph_containment.py): Kuzu's crash loop runs so.
    """
    fate = rng.random() if failures else 1.0
    pid = rng.randint(1, PRODUCTS)
    qty = rng.randint(1, 4)
    try:
        async with coord.transaction() as tx:
            cid = (
                await tx.sql(
                    "INSERT INTO customers (email, name, country) VALUES (?, ?, 'GB') RETURNING id",
                    (f"crash-{tag}@example.com", tag),
                )
            ).scalar()
            oid, cents = (
                await tx.sql(
                    "INSERT INTO orders (customer_id, product_id, price, quantity)"
                    " SELECT ?, id, price, ? FROM products WHERE id = ?"
                    " RETURNING id, CAST(final_price * 100 + 0.5 AS INTEGER)",
                    (cid, qty, pid),
                )
            ).rows[0]
            tx.graph(
                "CREATE (:Customer {id: $id, name: $tag, tier: 'standard'})",
                {"id": cid, "tag": tag},
            )
            tx.graph(
                "MATCH (c:Customer {id: $cid}), (p:Product {id: $pid})"
                " CREATE (c)-[:PURCHASED {order_id: $oid, quantity: $qty}]->(p)",
                {"cid": cid, "pid": pid, "oid": oid, "qty": qty},
            )
            tx.graph(
                "MATCH (p:Product {id: $pid}) SET p.price = p.price + $qty",
                {"pid": pid, "qty": qty},
            )
            tx.cache("HSET", f"order:{oid}", "tag", tag, "customer", cid, "cents", cents)
            tx.cache("SADD", "customers", cid)
            tx.cache("INCRBY", "stats:orders", 1)
            tx.cache("INCRBY", "stats:cents", cents)
            if fate < 0.08:
                raise _Abort("changed my mind")
            strict = tx.ordering == "strict"
            if fate < 0.14 and (graph_rollbacks or not strict):
                # Deferred: the check rejects it before anything runs; strict: Kuzu runs it.
                tx.graph("MATCH (c:Customer {id: $cid}) SET c.nope = 1", {"cid": cid})
            elif fate < 0.20:
                await tx.sql(
                    "INSERT INTO customers (email, name, country) VALUES (?, 'Dup', 'GB')",
                    (SEED_EMAIL,),
                )
            elif fate < 0.26 and graph_rollbacks:  # found when applied: dead, or aborted (strict)
                tx.graph("CREATE (:Customer {id: $id, name: 'Dup', tier: 'x'})", {"id": SEED_NODE})
    except (_Abort, TristoreError):
        return "aborted"
    if tx.apply_errors:
        return "dead"
    if tx.pending:  # the stores are all up: an apply left pending is itself a finding
        return "pending"
    return "committed"


class _Abort(Exception):
    pass


async def _dead_tags(coord: Coordinator) -> set[str]:
    """The tags of the dead letters: committed, their graph part rejected by the store."""
    rows = await coord.sqlite.fetchall(
        "SELECT graph_ops FROM tristore_intents WHERE state = 'failed'"
    )
    return {params["tag"] for (ops,) in rows for _, params in json.loads(ops) if "tag" in params}


async def check(
    coord: Coordinator,
    committed: AbstractSet[str] = frozenset(),
    aborted: AbstractSet[str] = frozenset(),
) -> tuple[list[str], str]:
    """The invariant: returns the problems found (none: no drift) and a one-line summary."""
    problems: list[str] = []
    if coord.pending_count():
        problems.append(f"{coord.pending_count()} intent(s) still pending after recovery")
    report = await validate_consistency(coord)
    dead = await _dead_tags(coord)
    if any(d.kind != "failed" for d in report.drift):
        problems.append(report.summary())
    if len(report.drift) != len(dead):
        problems.append(f"{len(report.drift)} dead letter(s) in the log, {len(dead)} expected")
    rows = await coord.sqlite.fetchall(
        "SELECT c.name, c.id, o.id, o.quantity, CAST(o.final_price * 100 + 0.5 AS INTEGER)"
        " FROM customers c JOIN orders o ON o.customer_id = c.id WHERE c.email LIKE 'crash-%'"
    )
    lonely = await coord.sqlite.fetchone(
        "SELECT count(*) FROM customers c WHERE c.email LIKE 'crash-%'"
        " AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id)"
    )
    if lonely[0]:
        problems.append(f"{lonely[0]} customer(s) without their order: SQLite was not atomic")
    sql_tags = {r[0] for r in rows}
    sql_orders = {r[2]: (r[0], r[1], r[3], r[4]) for r in rows}
    sql_customers = {r[1] for r in rows}
    # What the graph must hold: everything but the dead letters' graph parts.
    graph_rows = [r for r in rows if r[0] not in dead]
    graph_orders = {r[2]: (r[0], r[1], r[3], r[4]) for r in graph_rows}
    graph_customers = {r[1] for r in graph_rows}

    nodes = await coord.graph.query_rows(
        "MATCH (c:Customer) WHERE c.name <> 'Seed' RETURN c.id, c.name"
    )
    edges = await coord.graph.query_rows(
        "MATCH (c:Customer)-[r:PURCHASED]->(p:Product) RETURN r.order_id, c.name, r.quantity"
    )
    graph_tags = {name for _, name in nodes}
    if len(nodes) != len(graph_tags) or {cid for cid, _ in nodes} != graph_customers:
        problems.append(
            f"graph customers differ: {len(nodes)} nodes vs {len(graph_customers)} rows"
        )
    per_order: dict[int, int] = {}
    for oid, _, _ in edges:
        per_order[oid] = per_order.get(oid, 0) + 1
    doubled = sorted(oid for oid, n in per_order.items() if n != 1)
    if doubled:
        problems.append(f"orders with more than one PURCHASED edge: {doubled[:10]}")
    if set(per_order) != set(graph_orders):
        extra = sorted(set(per_order) - set(graph_orders))[:10]
        missing = sorted(set(graph_orders) - set(per_order))[:10]
        problems.append(f"graph orders differ: extra {extra} missing {missing}")
    for oid, name, qty in edges:
        if oid in graph_orders and (name, qty) != (graph_orders[oid][0], graph_orders[oid][2]):
            problems.append(f"order {oid}: graph has {(name, qty)}, SQLite {graph_orders[oid]}")
    ordered = await coord.sqlite.fetchall(
        "SELECT o.product_id, c.name, o.quantity FROM orders o JOIN customers c"
        " ON c.id = o.customer_id WHERE c.email LIKE 'crash-%'"
    )
    want_price = {pid: 3.25 * pid for pid in range(1, PRODUCTS + 1)}
    for pid, name, qty in ordered:
        if name not in dead:
            want_price[pid] += qty
    prices = dict(await coord.graph.query_rows("MATCH (p:Product) RETURN p.id, p.price"))
    if prices and prices != want_price:
        problems.append(f"graph product prices {prices} != {want_price}: applied twice or lost")

    cache_orders: dict[int, dict[bytes, bytes]] = {}
    async with coord.cache.client() as conn:
        async for key in conn.scan_iter(match="order:*", count=1000):
            cache_orders[int(key.split(b":")[1])] = await conn.hgetall(key)
        members = {int(m) for m in await conn.smembers("customers")}
        n_orders = int(await conn.get("stats:orders") or 0)
        cents = int(await conn.get("stats:cents") or 0)
    cache_tags = {v[b"tag"].decode() for v in cache_orders.values()}
    if set(cache_orders) != set(sql_orders):
        extra = sorted(set(cache_orders) - set(sql_orders))[:10]
        missing = sorted(set(sql_orders) - set(cache_orders))[:10]
        problems.append(f"redis orders differ: extra {extra} missing {missing}")
    for oid, fields in cache_orders.items():
        want = sql_orders.get(oid)
        if want and (fields[b"tag"].decode(), int(fields[b"cents"])) != (want[0], want[3]):
            problems.append(f"order {oid}: redis has {fields}, SQLite {want}")
    if members != sql_customers:
        problems.append(f"redis customer set differs: {len(members)} vs {len(sql_customers)}")
    if n_orders != len(sql_orders) or cents != sum(v[3] for v in sql_orders.values()):
        problems.append(
            f"redis counters {n_orders} orders / {cents} cents vs SQLite "
            f"{len(sql_orders)} / {sum(v[3] for v in sql_orders.values())}: applied twice or lost"
        )

    lost = committed - sql_tags
    if lost:
        problems.append(f"{len(lost)} committed transaction(s) lost: {sorted(lost)[:10]}")
    leaked = aborted & (sql_tags | graph_tags | cache_tags)
    if leaked:
        problems.append(f"{len(leaked)} aborted transaction(s) visible: {sorted(leaked)[:10]}")
    summary = (
        f"orders={len(sql_orders)} committed_known={len(committed)} "
        f"aborted_known={len(aborted)} intents={report.transactions}"
    )
    return problems, summary


async def main(
    data_dir: Path, generation: int, mode: str, seed: int, ordering: str, engine: str
) -> int:
    url = sys.stdin.readline().strip()
    settings = store_settings(
        data_dir,
        url,
        graph={"buffer_pool_bytes": 64 * 1024 * 1024, "readers": 1, "engine": engine},
        sqlite={"readers": 1},
    )
    rng = random.Random(seed)
    async with open_stores(settings) as stores:
        coord = Coordinator.for_stores(stores, recovery_interval=None, ordering=ordering)
        report = await coord.open()
        say(f"RECOVERED found={report.found} applied={report.applied} pending={report.pending}")
        problems, summary = await check(
            coord, read_tags(data_dir / "committed.txt"), read_tags(data_dir / "aborted.txt")
        )
        say("CHECKED " + summary)
        if problems:
            for problem in problems:
                say("DRIFT " + problem.replace("\n", " | "))
            return 3
        if mode == "check":
            await coord.close()
            return 0
        await ensure_catalogue(coord)
        say("READY")
        n = 0
        while True:
            tag = f"g{generation}t{n}"
            n += 1
            say(f"BEGIN {tag}")
            outcome = await one_transaction(coord, tag, rng, graph_rollbacks=engine != "kuzu")
            say(f"END {tag} {outcome}")


if __name__ == "__main__":
    directory, gen, run_mode, rng_seed = sys.argv[1:5]
    order = sys.argv[5] if len(sys.argv) > 5 else "deferred"
    graph_engine = sys.argv[6] if len(sys.argv) > 6 else "kuzu"
    sys.exit(
        asyncio.run(main(Path(directory), int(gen), run_mode, int(rng_seed), order, graph_engine))
    )
