"""Kuzu writer time per order for the order's graph write, in one process, forms alternated.

    python stmt_cost.py ENGINE [ROUNDS]

On a copy of the seeded `small` graph: batches of 8 orders, each batch one write transaction,
as the coordinator's applier runs them. Forms:
  merge    the flow's MERGE_PURCHASE_CYPHER, one statement per order (what runs today)
  match    MATCH both nodes, CREATE the edge, one statement per order
  unwind   the match form as one UNWIND statement over the batch's 8 rows
Prints the median time per order of each form over ROUNDS rounds (forms alternated per round).
Then checks whether the MERGE form folded into one UNWIND gives the graph one-at-a-time gives
when rows create nodes other rows use (the reason the applier never folds MERGE).
"""
import importlib, shutil, statistics, sys, tempfile, time
from pathlib import Path

engine = sys.argv[1]; rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 30
from tristore.testing.setup import seed_files
# The order's statement before 4f1f3cd (nodes and edge in one MERGE statement).
MERGE_PURCHASE_CYPHER = """
MERGE (c:Customer {id: $customer_id})
  ON CREATE SET c.name = $customer_name, c.tier = $tier
MERGE (p:Product {id: $product_id})
  ON CREATE SET p.name = $product_name, p.category = $category, p.price = $product_price
CREATE (c)-[:PURCHASED {order_id: $order_id, quantity: $quantity, at: timestamp($at)}]->(p)
"""
mod = importlib.import_module(engine)
d = Path(tempfile.mkdtemp()); files = seed_files(d / "seed", "small", seed=7, engine=engine)
db = mod.Database(str(files.graph_path)); conn = mod.Connection(db)
cust = [r[0] for r in conn.execute("MATCH (c:Customer) RETURN c.id ORDER BY c.id").get_all()]
prod = [r[0] for r in conn.execute("MATCH (p:Product) RETURN p.id ORDER BY p.id").get_all()]
MATCH = ("MATCH (c:Customer {id: $customer_id}), (p:Product {id: $product_id}) "
         "CREATE (c)-[:PURCHASED {order_id: $order_id, quantity: $quantity, at: timestamp($at)}]->(p)")
UNWIND = ("UNWIND $rows AS r MATCH (c:Customer {id: r.customer_id}), (p:Product {id: r.product_id}) "
          "CREATE (c)-[:PURCHASED {order_id: r.order_id, quantity: r.quantity, at: timestamp(r.at)}]->(p)")
oid = [10_000_000]
def params(i):
    oid[0] += 1
    return {"customer_id": cust[i % len(cust)], "customer_name": "n", "tier": "bronze",
            "product_id": prod[(i * 7) % len(prod)], "product_name": "p", "category": "c",
            "product_price": 1.0, "order_id": oid[0], "quantity": 1, "at": "2026-12-07 12:00:00"}
def batch(form, k=8):
    rows = [params(i) for i in range(k)]
    t = time.perf_counter()
    conn.execute("BEGIN TRANSACTION")
    if form == "merge":
        for r in rows: conn.execute(MERGE_PURCHASE_CYPHER, r)
    elif form == "match":
        for r in rows: conn.execute(MATCH, {k2: r[k2] for k2 in ("customer_id", "product_id", "order_id", "quantity", "at")})
    else:
        conn.execute(UNWIND, {"rows": [{k2: r[k2] for k2 in ("customer_id", "product_id", "order_id", "quantity", "at")} for r in rows]})
    conn.execute("COMMIT")
    return (time.perf_counter() - t) / k
forms = ["merge", "match", "unwind"]
times = {f: [] for f in forms}
for _ in range(3): [batch(f) for f in forms]  # warm-up
for r in range(rounds):
    for f in (forms if r % 2 == 0 else forms[::-1]):
        times[f].append(batch(f))
for f in forms:
    print(f"{engine} {f:<7} median {statistics.median(times[f]) * 1e3:.3f} ms per order")
# MERGE folded into UNWIND, rows creating nodes that later rows use
MERGE_UNWIND = ("UNWIND $rows AS r MERGE (c:Customer {id: r.customer_id}) ON CREATE SET c.name = 'm' "
                "MERGE (p:Product {id: r.product_id}) ON CREATE SET p.name = 'm' "
                "CREATE (c)-[:PURCHASED {order_id: r.order_id, quantity: 1}]->(p)")
# Order ids far above the seeded orders'; customers 900001-900002 and product 900003 are new.
rows = [{"customer_id": 900001, "product_id": prod[0], "order_id": 90000001},
        {"customer_id": 900002, "product_id": prod[1], "order_id": 90000002},
        {"customer_id": 900001, "product_id": prod[2], "order_id": 90000003},
        {"customer_id": cust[0], "product_id": 900003, "order_id": 90000004},
        {"customer_id": 900002, "product_id": 900003, "order_id": 90000005}]
try:
    conn.execute(MERGE_UNWIND, {"rows": rows})
    got = sorted(tuple(r) for r in conn.execute("MATCH (c:Customer)-[e:PURCHASED]->(p:Product) WHERE e.order_id >= 90000001 RETURN e.order_id, c.id, p.id").get_all())
    want = sorted((r["order_id"], r["customer_id"], r["product_id"]) for r in rows)
    print(f"{engine} MERGE in UNWIND equals one at a time: {got == want}  got {got}")
except Exception as exc:
    print(f"{engine} MERGE in UNWIND raised {type(exc).__name__}: {exc}")
