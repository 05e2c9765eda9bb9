"""Cost of each statement of an order's SQLite part as the orders table grows (small data set).

    python stmts.py ORDERS [DDL ...]

Uses the tristore first on PYTHONPATH (an archive of the commit to measure); each DDL argument
runs after seeding (e.g. "DROP INDEX orders_customer_totals"). Mean microseconds per statement
over each fifth of the orders; one process, the statements as the order flow runs them.
"""
import sqlite3, statistics, sys, time, random, tempfile
from pathlib import Path
from tristore.testing.setup import seed_files
from tristore.flows import pipeline as pl
from tristore.schema import REFRESH_ANALYTICS_SQL
d = Path(tempfile.mkdtemp()); seed_files(d, "small", seed=7)
conn = sqlite3.connect(d / "tristore.sqlite3", isolation_level=None)
conn.execute("PRAGMA journal_mode=WAL"); conn.execute("PRAGMA synchronous=NORMAL")
nc = conn.execute("select count(*) from customers").fetchone()[0]; npr = conn.execute("select count(*) from products").fetchone()[0]
print("customers", nc, "products", npr, "orders", conn.execute("select count(*) from orders").fetchone()[0])
for ddl in sys.argv[2:]: conn.execute(ddl)
rng = random.Random(1)
names = ["insert", "select", "refresh", "analytics", "repeat", "bought", "commit"]
def one(cid, pid):
    t = [time.perf_counter()]
    conn.execute("BEGIN IMMEDIATE")
    row = conn.execute(pl.INSERT_ORDER_SQL, {"customer_id": cid, "product_id": pid, "quantity": 1, "at": None}).fetchone(); t.append(time.perf_counter())
    order = dict(zip(pl.ORDER_COLUMNS, conn.execute(pl.SELECT_ORDER_SQL, row).fetchone())); t.append(time.perf_counter())
    period = str(order["created_at"])[:7]
    conn.execute(REFRESH_ANALYTICS_SQL, {"period": period, "customer_id": cid}); t.append(time.perf_counter())
    conn.execute(pl.SELECT_ANALYTICS_SQL, (cid, period)).fetchone(); t.append(time.perf_counter())
    (rep,) = conn.execute(pl.REPEAT_PURCHASE_SQL, (cid, pid, order["id"])).fetchone(); t.append(time.perf_counter())
    if not rep: [r[0] for r in conn.execute(pl.BOUGHT_SQL, (cid,))]
    t.append(time.perf_counter())
    conn.execute("COMMIT"); t.append(time.perf_counter())
    return [b - a for a, b in zip(t, t[1:])]
N = int(sys.argv[1]); window = []
for i in range(1, N + 1):
    window.append(one(rng.randint(1, nc), rng.randint(1, npr)))
    if i % (N // 5) == 0:
        cols = list(zip(*window))
        print(f"after {i:6d} orders:", " ".join(f"{n} {statistics.mean(c)*1e6:6.1f}" for n, c in zip(names, cols)), f"| total {sum(statistics.mean(c) for c in cols)*1e6:.1f} us")
        window = []
