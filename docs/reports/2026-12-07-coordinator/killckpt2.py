import os, sys, random, subprocess, time, shutil, signal
mode = sys.argv[1]
if mode.startswith("child"):
    import importlib; kuzu = importlib.import_module(os.environ.get("ENGINE", "kuzu"))
    path = sys.argv[2]; ckpt = mode == "child-ckpt"; plain = mode == "child-plain"
    db = kuzu.Database(path, buffer_pool_size=64<<20); c = kuzu.Connection(db)
    try:
        c.execute("CREATE NODE TABLE C(id INT64 PRIMARY KEY, name STRING)")
        c.execute("CREATE NODE TABLE P(id INT64 PRIMARY KEY, price DOUBLE)")
        c.execute("CREATE REL TABLE B(FROM C TO P, q INT64)")
        c.execute("CREATE NODE TABLE M(txid STRING PRIMARY KEY)")
        for p in range(1, 6): c.execute("CREATE (:P {id: $p, price: 0.0})", {"p": p})
        c.execute("CREATE (:C {id: 0, name: 'seed'})")
    except Exception: pass
    base = int(c.execute("MATCH (x:C) RETURN coalesce(max(x.id), 0)").get_all()[0][0])
    print("READY", flush=True)
    i = base; rng = random.Random(base)
    while True:
        i += 1; p = rng.randint(1, 5)
        c.execute("BEGIN TRANSACTION")
        try:
            c.execute("CREATE (:C {id: $i, name: 'x'})", {"i": i})
            c.execute("MATCH (a:C {id: $i}), (b:P {id: $p}) CREATE (a)-[:B {q: 1}]->(b)", {"i": i, "p": p})
            c.execute("MATCH (b:P {id: $p}) SET b.price = b.price + 1", {"p": p})
            if rng.random() < 0.1 and not plain:
                c.execute("CREATE (:C {id: 0, name: 'dup'})")
            c.execute("CREATE (:M {txid: $t})", {"t": f"t{i}"})
            c.execute("COMMIT")
            if plain and i % 10 == 0:
                c.execute("CHECKPOINT")
        except Exception:
            try: c.execute("ROLLBACK")
            except Exception: pass
            c = kuzu.Connection(db)
            if ckpt: c.execute("CHECKPOINT")
else:
    sub = sys.argv[2]; kills = int(sys.argv[3]); path = "/tmp/kz/killckpt2-" + sub
    shutil.rmtree(path, ignore_errors=True)
    for p in (path, path + ".wal"):
        if os.path.exists(p): os.remove(p)
    rng = random.Random(2); bad = 0
    for k in range(kills):
        p = subprocess.Popen([sys.executable, __file__, "child-" + sub, path], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = p.stdout.readline()
        if "READY" not in line:
            err = p.stderr.read()
            print("kill", k, "open failed:", err.strip().splitlines()[-1][:150]); bad += 1; break
        time.sleep(rng.uniform(0.02, 0.3)); p.send_signal(signal.SIGKILL); p.wait()
    print(sub, "kills", k + 1, "failed opens", bad)
