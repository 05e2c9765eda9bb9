"""What one order costs raw Kuzu on its writer: BEGIN, the customer CREATE, the edge and COMMIT.

The coordinated order (benchmarks/coordinated.py) runs these statements in Kuzu before its
SQLite commit, so they bound the serial section of concurrent coordinated orders. 300 orders
on 2,000 customers, prepared statements, medians per part. Run from the repository root:

    .venv/bin/python tools/bench/measurements/kuzu_order_cost.py
"""

from __future__ import annotations

import statistics
import tempfile
import time
import warnings

import kuzu

warnings.simplefilter("ignore", DeprecationWarning)  # Connection.prepare
db = kuzu.Database(tempfile.mkdtemp() + "/g", buffer_pool_size=256 << 20, max_num_threads=2)
conn = kuzu.Connection(db, num_threads=2)
conn.execute("CREATE NODE TABLE C(id INT64, name STRING, PRIMARY KEY(id))")
conn.execute("CREATE REL TABLE R(FROM C TO C, q INT64)")
for i in range(1, 2001):
    conn.execute("CREATE (:C {id: $id, name: 'x'})", {"id": i})
create = conn.prepare("CREATE (:C {id: $id, name: $n})")
edge = conn.prepare("MATCH (a:C {id: $a}), (b:C {id: $b}) CREATE (a)-[:R {q: 2}]->(b)")
parts: dict[str, list[float]] = {
    "BEGIN": [],
    "CREATE node": [],
    "MATCH+CREATE edge": [],
    "COMMIT": [],
}
for n in range(10_001, 10_301):
    t0 = time.perf_counter()
    conn.execute("BEGIN TRANSACTION")
    t1 = time.perf_counter()
    conn.execute(create, {"id": n, "n": "x"})
    t2 = time.perf_counter()
    conn.execute(edge, {"a": n, "b": 1 + n % 2000})
    t3 = time.perf_counter()
    conn.execute("COMMIT")
    t4 = time.perf_counter()
    for name, seconds in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
        parts[name].append(seconds)
for name, values in parts.items():
    print(f"{name:18s} median {statistics.median(values) * 1e6:6.0f} us")
total = sum(statistics.median(v) for v in parts.values())
print(f"{'one order':18s} {total * 1e6:6.0f} us (sum of medians); x25 = {total * 25e3:.1f} ms")
