"""Rounds of concurrent coordinated transactions with one failing member each, against a hot node.

Run as ``python failing_members.py ENGINE ORDERING DATA_DIR ROUNDS`` with the Redis URL on the
first line of stdin (never on argv). Prints one JSON line of outcomes and exits 0, whatever it
found: the test (test_failing_members.py) judges the outcomes. A crash of the engine shows as
the process's exit status.

Each round, ``MEMBERS`` transactions run at once. Every one creates its customer (SQLite row and
graph node), increments one of ``HOT`` products' price in the graph (``SET p.price = p.price +
1``: a read-modify-write of a shared node, as a stock counter would be) and increments a Redis
counter for the same product. One member per round also does something the graph rejects:
a duplicate primary key (seen only when applied), an unknown property, or a wrongly typed
parameter (both seen by the check before the commit).

What must hold: no innocent member fails or loses its graph write; each product's graph counter
equals the number of committed members whose graph part was applied, and the Redis counter the
number of committed members; the only drift is the dead letters themselves.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from tristore.coordinator import Coordinator, validate_consistency
from tristore.errors import TristoreError
from tristore.testing.setup import open_stores, store_settings

MEMBERS = 25
HOT = 3
SEED_CUSTOMER = 10_000_000


async def member(coord: Coordinator, rnd: int, n: int, bad: str | None) -> dict[str, Any]:
    hot = 1 + (rnd * MEMBERS + n) % HOT
    outcome: dict[str, Any] = {"hot": hot, "bad": bad}
    try:
        async with coord.transaction() as tx:
            cid = (
                await tx.sql(
                    "INSERT INTO customers (email, name, country) VALUES (?, ?, 'GB') RETURNING id",
                    (f"m{rnd}-{n}@example.com", f"m{rnd}-{n}"),
                )
            ).scalar()
            outcome["cid"] = cid
            tx.graph(
                "CREATE (:Customer {id: $id, name: $name, tier: 'standard'})",
                {"id": cid, "name": f"m{rnd}-{n}"},
            )
            tx.graph("MATCH (p:Product {id: $hot}) SET p.price = p.price + 1", {"hot": hot})
            tx.cache("INCR", f"hot:{hot}")
            if bad == "duplicate":
                tx.graph(
                    "CREATE (:Customer {id: $id, name: 'dup', tier: 'standard'})",
                    {"id": SEED_CUSTOMER},
                )
            elif bad == "property":
                tx.graph("MATCH (p:Product {id: $hot}) SET p.nope = 1", {"hot": hot})
            elif bad == "type":
                tx.graph("MATCH (p:Product {id: $hot}) SET p.price = 1.0", {"hot": "x"})
    except TristoreError as exc:
        outcome["state"] = "rolled_back"
        outcome["error"] = f"{type(exc).__name__}: {exc}"[:200]
        return outcome
    outcome["state"] = "committed"
    outcome["tx"] = tx
    return outcome


async def main(engine: str, ordering: str, data_dir: Path, rounds: int) -> dict[str, Any]:
    url = sys.stdin.readline().strip()
    settings = store_settings(
        data_dir,
        url,
        graph={"engine": engine, "buffer_pool_bytes": 64 * 1024 * 1024, "readers": 1},
        sqlite={"readers": 1},
    )
    async with open_stores(settings) as stores:
        await stores.cache.execute("FLUSHDB")  # a server of the test's own, shared by its runs
        coord = Coordinator.for_stores(stores, recovery_interval=None, ordering=ordering)
        await coord.open()
        async with coord.transaction() as tx:
            for pid in range(1, HOT + 1):
                await tx.sql(
                    "INSERT INTO products (id, sku, name, category, price, stock)"
                    " VALUES (?, ?, ?, 'hot', 0, 100)",
                    (pid, f"HOT-{pid}", f"Hot {pid}"),
                )
                tx.graph(
                    "CREATE (:Product {id: $id, name: $name, category: 'hot', price: 0.0})",
                    {"id": pid, "name": f"Hot {pid}"},
                )
            tx.graph(
                "CREATE (:Customer {id: $id, name: 'seed', tier: 'standard'})",
                {"id": SEED_CUSTOMER},
            )
        kinds = ("duplicate", "property", "type")
        outcomes: list[dict[str, Any]] = []
        for rnd in range(rounds):
            bad_at = rnd % MEMBERS
            outcomes += await asyncio.gather(
                *(
                    member(coord, rnd, n, kinds[rnd % 3] if n == bad_at else None)
                    for n in range(MEMBERS)
                )
            )
        for o in outcomes:
            if o["state"] == "committed":
                await o["tx"].applied(timeout=60)
        summary = await judge(coord, outcomes)
        summary["containments"] = stores.graph.containments
        summary["stats"] = {
            k: v
            for k, v in coord.stats().items()
            if k in ("graph_batches", "dead_lettered", "graph_apply_errors", "replayed")
        }
        await coord.close()
        return summary


async def judge(coord: Coordinator, outcomes: list[dict[str, Any]]) -> dict[str, Any]:
    innocent_failed = []
    missing = []
    graph_expected = dict.fromkeys(range(1, HOT + 1), 0)
    redis_expected = dict.fromkeys(range(1, HOT + 1), 0)
    dead = 0
    for o in outcomes:
        if o["state"] != "committed":
            if o["bad"] is None:
                innocent_failed.append(o.get("error"))
            continue
        tx = o.pop("tx")
        redis_expected[o["hot"]] += 1
        if tx.apply_errors:
            dead += 1
            if o["bad"] is None:
                innocent_failed.append("; ".join(tx.apply_errors))
            continue
        graph_expected[o["hot"]] += 1
        rows = await coord.graph.query_rows(
            "MATCH (c:Customer {id: $id}) RETURN c.id", {"id": o["cid"]}
        )
        if not rows:
            missing.append(o["cid"])
    prices = dict(await coord.graph.query_rows("MATCH (p:Product) RETURN p.id, p.price"))
    graph_counts = {pid: int(prices[pid]) for pid in graph_expected}
    redis_counts = {}
    for pid in redis_expected:
        value = await coord.cache.execute("GET", f"hot:{pid}")
        redis_counts[pid] = int(value or 0)
    report = await validate_consistency(coord)
    drift = sorted({d.kind for d in report.drift})
    return {
        "transactions": len(outcomes),
        "committed": sum(o["state"] == "committed" for o in outcomes),
        "rolled_back": sum(o["state"] != "committed" for o in outcomes),
        "dead_lettered": dead,
        "innocent_failed": innocent_failed[:5],
        "innocent_failed_count": len(innocent_failed),
        "missing_from_graph": missing[:5],
        "missing_count": len(missing),
        "graph_counts_ok": graph_counts == graph_expected,
        "redis_counts_ok": redis_counts == redis_expected,
        "graph_counts": [graph_counts, graph_expected],
        "drift_kinds": drift,
        "drift_failed": sum(d.kind == "failed" for d in report.drift),
    }


if __name__ == "__main__":
    name, order, directory, n_rounds = sys.argv[1:5]
    result = asyncio.run(main(name, order, Path(directory), int(n_rounds)))
    print(json.dumps(result))
