"""CHECKPOINT time against the size of the write-ahead log it folds in, for the order flow's
edges (batches of 4 with their markers), on a graph that keeps growing."""
import sys, time, tempfile, os, glob
engine = sys.argv[1]; thresholds = [int(x) for x in sys.argv[2].split(",")]
mod = __import__(engine)
for th in thresholds:
    d = tempfile.mkdtemp(); path = os.path.join(d, "g")
    db = mod.Database(path, checkpoint_threshold=1 << 40, buffer_pool_size=128 << 20)
    conn = mod.Connection(db)
    conn.execute("CREATE NODE TABLE C(id INT64 PRIMARY KEY)")
    conn.execute("CREATE NODE TABLE P(id INT64 PRIMARY KEY)")
    conn.execute("CREATE NODE TABLE M(txid STRING PRIMARY KEY)")
    conn.execute("CREATE REL TABLE B(FROM C TO P, o INT64, q INT64, at TIMESTAMP)")
    conn.execute("UNWIND range(0, 199) AS i CREATE (:C {id: i})")
    conn.execute("UNWIND range(0, 99) AS i CREATE (:P {id: i})")
    conn.execute("CHECKPOINT")
    edge = "UNWIND $rows AS r MATCH (c:C {id: r.c}), (p:P {id: r.p}) CREATE (c)-[:B {o: r.o, q: r.q, at: timestamp(r.at)}]->(p)"
    mark = "UNWIND $ids AS t CREATE (:M {txid: t})"
    o = 0; times = []; t_start = time.perf_counter(); total_orders = 0
    while total_orders < 120000:
        rows = [{"c": (o + k) % 200, "p": (o * 7 + k) % 100, "o": o + k, "q": 1, "at": "2026-12-07 10:00:00"} for k in range(4)]
        conn.execute("BEGIN TRANSACTION"); conn.execute(edge, {"rows": rows})
        conn.execute(mark, {"ids": [f"{o+k:032x}" for k in range(4)]}); conn.execute("COMMIT")
        o += 4; total_orders += 4
        if os.path.getsize(path + ".wal") >= th:
            w = os.path.getsize(path + ".wal"); t = time.perf_counter(); conn.execute("CHECKPOINT")
            times.append((total_orders, w, (time.perf_counter() - t) * 1000))
    wall = time.perf_counter() - t_start
    ck = sum(t for _, _, t in times)
    print(f"{engine} threshold {th >> 20} MiB: {len(times)} checkpoints, ms each: " + " ".join(f"{t:.0f}" for _, _, t in times[:12]) + ("..." if len(times) > 12 else "") + f" | last {times[-1][2]:.0f} ms at {times[-1][0]} orders; checkpoint total {ck/1000:.2f} s of {wall:.1f} s")
    del conn, db
