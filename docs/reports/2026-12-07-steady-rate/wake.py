"""Main-thread wake-up delay (sleep 0.5 ms, then how late) while another thread applies one
order's batch (BEGIN, edge, marker, COMMIT) every 2 ms on the graph engine, against idle."""
import sys, threading, time, tempfile, os, statistics
mod = __import__(sys.argv[1]); threads = int(sys.argv[2]) if len(sys.argv) > 2 else 0
d = tempfile.mkdtemp(); db = mod.Database(os.path.join(d, "g"), max_num_threads=threads)
conn = mod.Connection(db)
conn.execute("CREATE NODE TABLE C(id INT64 PRIMARY KEY)"); conn.execute("CREATE NODE TABLE P(id INT64 PRIMARY KEY)")
conn.execute("CREATE NODE TABLE M(txid STRING PRIMARY KEY)")
conn.execute("CREATE REL TABLE B(FROM C TO P, o INT64)")
conn.execute("UNWIND range(0, 199) AS i CREATE (:C {id: i})"); conn.execute("UNWIND range(0, 99) AS i CREATE (:P {id: i})")
busy = threading.Event(); stop = threading.Event()
def worker():
    o = 0
    while not stop.is_set():
        if busy.is_set():
            conn.execute("BEGIN TRANSACTION")
            conn.execute("MATCH (c:C {id: $c}), (p:P {id: $p}) CREATE (c)-[:B {o: $o}]->(p)", {"c": o % 200, "p": o % 100, "o": o})
            conn.execute("CREATE (:M {txid: $t})", {"t": f"{o:032x}"}); conn.execute("COMMIT"); o += 1
        time.sleep(0.002)
t = threading.Thread(target=worker); t.start()
def lateness(n=3000):
    out = []
    for _ in range(n):
        a = time.perf_counter(); time.sleep(0.0005); out.append((time.perf_counter() - a - 0.0005) * 1e3)
    out.sort(); return out[len(out)//2], out[int(len(out)*.99)], out[-1]
for rep in range(2):
    busy.clear(); time.sleep(0.05); i = lateness(); busy.set(); b = lateness()
    print(f"{sys.argv[1]} threads={threads}: late by (ms) idle p50 {i[0]:.3f} p99 {i[1]:.3f} max {i[2]:.2f} | engine busy p50 {b[0]:.3f} p99 {b[1]:.3f} max {b[2]:.2f}")
stop.set(); t.join()
