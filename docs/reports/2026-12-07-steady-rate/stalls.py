"""Which step holds an order past 100 ms: graph batch applies, SQLite commits, cache round
trips longer than 50 ms, with the graph's .wal size, in a coordination run."""
import asyncio, os, sys, time, glob
from tristore.config import Settings
from tristore.flows import env as envmod, scenarios
from tristore.coordinator import transaction as txmod, cache_apply, graph_applier
start = time.monotonic(); slow = []; gdir = {}
def wal():
    files = glob.glob(os.path.join(gdir.get("d", "/nonexistent"), "**", "*.wal"), recursive=True)
    return sum(os.path.getsize(f) for f in files if os.path.exists(f))
def timed(cls, name, label):
    orig = getattr(cls, name)
    async def wrapper(self, *a, **k):
        t = time.monotonic(); w = wal()
        try:
            return await orig(self, *a, **k)
        finally:
            dt = time.monotonic() - t
            if dt > 0.05:
                slow.append((round(t - start, 2), label, round(dt * 1000, 1), w, wal()))
    setattr(cls, name, wrapper)
timed(graph_applier.GraphApplier, "_apply", "graph batch")
timed(txmod.Transaction, "_commit_sqlite", "sqlite commit")
timed(cache_apply.CacheApplier, "_run_scripts", "cache round trip")
async def main(duration):
    async with envmod.open_env(Settings(), size="small", seed=7) as env:
        gdir["d"] = str(env.data_dir)
        print(sorted(os.listdir(env.data_dir)))
        r = await scenarios.cross_database_coordination(env.pipeline, duration=duration)
    print(f"{r.throughput_ops_s:.1f}/s p99 {r.p99_ms} max {r.max_ms}")
    for s in slow: print(*s)
asyncio.run(main(float(sys.argv[1])))
