"""Raw cost of one applier batch on the engine: BEGIN, folded edges, folded markers, COMMIT."""
import sys, time, tempfile, os, statistics
engine = sys.argv[1]; per = int(sys.argv[2]); split = len(sys.argv) > 3
mod = __import__(engine)
d = tempfile.mkdtemp()
db = mod.Database(os.path.join(d, "g"))
conn = mod.Connection(db)
conn.execute("CREATE NODE TABLE C(id INT64 PRIMARY KEY)")
conn.execute("CREATE NODE TABLE P(id INT64 PRIMARY KEY)")
conn.execute("CREATE NODE TABLE M(txid STRING PRIMARY KEY)")
conn.execute("CREATE REL TABLE B(FROM C TO P, o INT64, q INT64, at TIMESTAMP)")
conn.execute("UNWIND range(0, 999) AS i CREATE (:C {id: i})")
conn.execute("UNWIND range(0, 199) AS i CREATE (:P {id: i})")
edge = conn.prepare("UNWIND $rows AS r MATCH (c:C {id: r.c}), (p:P {id: r.p}) CREATE (c)-[:B {o: r.o, q: r.q, at: timestamp(r.at)}]->(p)")
mark = conn.prepare("UNWIND $ids AS t CREATE (:M {txid: t})")
o = 0; parts = {"begin": [], "edge": [], "mark": [], "commit": []}
for b in range(600):
    rows = [{"c": (o + k) % 1000, "p": (o * 7 + k) % 200, "o": o + k, "q": 1, "at": "2026-12-07 10:00:00"} for k in range(per)]
    ids = [f"{o+k:032x}" for k in range(per)]
    t0 = time.perf_counter(); conn.execute("BEGIN TRANSACTION"); t1 = time.perf_counter()
    conn.execute(edge, {"rows": rows}); t2 = time.perf_counter()
    conn.execute(mark, {"ids": ids}); t3 = time.perf_counter()
    conn.execute("COMMIT"); t4 = time.perf_counter()
    o += per
    if b >= 100:
        for k, v in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            parts[k].append(v * 1000)
tot = sum(statistics.median(v) for v in parts.values())
print(engine, f"batch of {per}:", " ".join(f"{k} {statistics.median(v):.3f}" for k, v in parts.items()), f"total {tot:.3f} ms = {tot/per:.3f} ms/order")
