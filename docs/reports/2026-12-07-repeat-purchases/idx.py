import sqlite3, sys, time, tempfile, statistics
from tristore.testing.setup import seed_files
from tristore.schema import register_functions
from tristore.schema.functions import REFRESH_ANALYTICS_SQL
from tristore.flows import pipeline as P
d = tempfile.mkdtemp(); files = seed_files(d, "small", seed=7); print(files)
import glob
conn = sqlite3.connect(files.sqlite_path, isolation_level=None)
register_functions(conn)
cust = conn.execute("SELECT id FROM customers LIMIT 1").fetchone()[0]
prods = [r[0] for r in conn.execute("SELECT id FROM products")]
conn.execute("BEGIN")
for i in range(440): P._sqlite_part(conn, cust, prods[i % len(prods)], 1, None)
conn.execute("COMMIT")
REPEAT = "SELECT EXISTS (SELECT 1 FROM orders WHERE customer_id = ? AND product_id = ? AND status <> 'cancelled' AND id <> ?)"
def t(sql, params, k=200):
    ts=[]
    for _ in range(k):
        a=time.perf_counter(); list(conn.execute(sql, params)); ts.append(time.perf_counter()-a)
    return statistics.median(ts)*1e6
def report(tag):
    print(tag, "BOUGHT %.1f REFRESH %.1f REPEAT %.1f" % (t(P.BOUGHT_SQL,(cust,)), t(REFRESH_ANALYTICS_SQL, {"period": __import__('datetime').date.today().strftime('%Y-%m'), "customer_id": cust}), t(REPEAT,(cust, prods[3], 10**9))))
report("before")
conn.execute("CREATE INDEX orders_customer_product ON orders (customer_id, product_id) WHERE status <> 'cancelled'")
report("+partial(customer,product)")
conn.execute("CREATE INDEX orders_customer_cover ON orders (customer_id, created_at, status, final_price)")
report("+cover(customer,created,status,final)")
print(list(conn.execute("EXPLAIN QUERY PLAN " + P.BOUGHT_SQL, (cust,))))
print(list(conn.execute("EXPLAIN QUERY PLAN " + REPEAT, (cust,1,1))))
