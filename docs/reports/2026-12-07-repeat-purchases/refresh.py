import sqlite3, time, tempfile, statistics, datetime
from tristore.testing.setup import seed_files
from tristore.schema import register_functions
from tristore.schema import functions as F
from tristore.flows import pipeline as P
d = tempfile.mkdtemp(); files = seed_files(d, "small", seed=7)
conn = sqlite3.connect(files.sqlite_path, isolation_level=None); register_functions(conn)
cust = conn.execute("SELECT id FROM customers LIMIT 1").fetchone()[0]
prods = [r[0] for r in conn.execute("SELECT id FROM products")]
conn.execute("BEGIN")
for i in range(200): P._sqlite_part(conn, cust, prods[i % len(prods)], 1, None)
conn.execute("COMMIT")
period = datetime.datetime.utcnow().strftime('%Y-%m')
NEW = F.REFRESH_ANALYTICS_SQL.replace(f"""    SELECT customer_id FROM orders
    WHERE {F._IN_PERIOD} AND {F._ONE_OR_ALL}
    UNION""", f"""    SELECT c.id AS customer_id FROM customers AS c
    WHERE c.id BETWEEN coalesce(:customer_id, -9223372036854775808)
        AND coalesce(:customer_id, 9223372036854775807)
      AND EXISTS (SELECT 1 FROM orders WHERE orders.customer_id = c.id AND {F._IN_PERIOD})
    UNION""")
assert NEW != F.REFRESH_ANALYTICS_SQL
def t(sql, params, k=300):
    ts=[]
    for _ in range(k):
        a=time.perf_counter(); conn.execute(sql, params); ts.append(time.perf_counter()-a)
    return statistics.median(ts)*1e6
p={"period": period, "customer_id": cust}
conn.execute("BEGIN")
for r in range(3):
    print("old %.1f  new %.1f" % (t(F.REFRESH_ANALYTICS_SQL, p), t(NEW, p)))
# same result for one and for all
conn.execute(F.REFRESH_ANALYTICS_SQL, {"period": period, "customer_id": None}); a = list(conn.execute("SELECT * FROM analytics ORDER BY 1,2"))
conn.execute(NEW, {"period": period, "customer_id": None}); b = list(conn.execute("SELECT * FROM analytics ORDER BY 1,2"))
print("all-customers same:", [x[:4] for x in a] == [x[:4] for x in b], len(a))
print("all old %.1f new %.1f" % (t(F.REFRESH_ANALYTICS_SQL, {"period": period, "customer_id": None}, 20), t(NEW, {"period": period, "customer_id": None}, 20)))
conn.execute("ROLLBACK")
for row in conn.execute("EXPLAIN QUERY PLAN " + NEW, p): print(row)
conn.execute("DROP INDEX orders_customer_created")
conn.execute("CREATE INDEX orders_customer_created ON orders (customer_id, created_at, status, final_price)")
conn.execute("BEGIN")
for r in range(3):
    print("covering: old %.1f  new %.1f" % (t(F.REFRESH_ANALYTICS_SQL, p), t(NEW, p)))
print("insert %.1f" % t(P.INSERT_ORDER_SQL, {"customer_id": cust, "product_id": prods[0], "quantity": 1, "at": None}))
conn.execute("ROLLBACK")
for row in conn.execute("EXPLAIN QUERY PLAN " + NEW, p): print(row)
