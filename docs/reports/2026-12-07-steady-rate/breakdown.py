"""Where the cache-sync lag goes: timestamps along one order's path, in the scenario itself.

    python breakdown.py DURATION

Phases, each from the event's ts (the end of the transaction body): sqlite_committed (the
intent row is in), script_sent (the cache applier is about to send the round trip that carries
it), script_replied, event_received (the dashboard's XREAD returned it), visible (the HGET saw
the version). Patches wrap the methods without changing what they do.
"""
import asyncio, json, os, statistics, sys, time
if os.environ.get("SWITCH"): sys.setswitchinterval(float(os.environ["SWITCH"]))
from tristore.config import load_settings
from tristore.flows import env as envmod, scenarios, dashboard as dashmod
from tristore.coordinator import transaction as txmod, cache_apply

marks: dict[str, dict[str, float]] = {}
if os.environ.get("DELAY_GRAPH"):
    from tristore.coordinator import graph_applier as ga
    def enqueue(self, intent):
        if intent.attempted is None:
            intent.attempted = asyncio.get_running_loop().create_future()
        self.queue.append(intent)
        asyncio.get_running_loop().call_later(float(os.environ["DELAY_GRAPH"]), self._wake.set)
    ga.GraphApplier.enqueue = enqueue
orig_commit_sqlite = txmod.Transaction._commit_sqlite
async def commit_sqlite(self, intent, m):
    await orig_commit_sqlite(self, intent, m)
    marks.setdefault(self.txid, {})["sqlite_committed"] = time.time()
txmod.Transaction._commit_sqlite = commit_sqlite
orig_run = cache_apply.CacheApplier._run_scripts
async def run_scripts(self, batch):
    t = time.time()
    for i in batch: marks.setdefault(i.txid, {})["script_sent"] = t
    out = await orig_run(self, batch)
    t = time.time()
    for i in batch: marks.setdefault(i.txid, {})["script_replied"] = t
    return out
cache_apply.CacheApplier._run_scripts = run_scripts
orig_handle = dashmod.Dashboard._handle
def handle(self, event, received_at):
    if event.txid:
        d = marks.setdefault(event.txid, {}); d["event_received"] = received_at; d["ts"] = event.ts
    return orig_handle(self, event, received_at)
dashmod.Dashboard._handle = handle
orig_rec = None
orig_check = dashmod.Dashboard._check_visible
async def check(self, event, key):
    await orig_check(self, event, key)
    marks.setdefault(event.txid, {})["visible"] = time.time()
dashmod.Dashboard._check_visible = check

import gc
gc_pauses = []
_gc_start = {}
def _gc_cb(phase, info):
    if phase == "start": _gc_start["t"] = time.perf_counter()
    else: gc_pauses.append((info["generation"], (time.perf_counter() - _gc_start.get("t", time.perf_counter())) * 1000))
gc.callbacks.append(_gc_cb)
ticks = []
async def ticker():
    while True:
        a = time.perf_counter(); await asyncio.sleep(0.001); ticks.append((time.perf_counter() - a - 0.001) * 1000)

async def main(duration: float) -> None:
    tick_task = asyncio.get_running_loop().create_task(ticker())
    async with envmod.open_env(load_settings(), size="small", seed=7) as env:
        report = await scenarios.cache_synchronization(env.pipeline, duration=duration)
        stats = await env.manager.cache.execute("INFO", "commandstats")
        for k, v in (stats.items() if isinstance(stats, dict) else []):
            if any(c in str(k) for c in ("evalsha", "hget", "xread", "xadd", "hset", "incr", "set")):
                print("redis", k, v)
    print("sync lag p50/p99", report.sync_lag_p50_ms, report.sync_lag_p99_ms)
    tick_task.cancel()
    t = sorted(ticks); print(f"loop lateness ms: p50 {t[len(t)//2]:.3f} p99 {t[int(len(t)*.99)]:.3f} p99.9 {t[int(len(t)*.999)]:.3f} max {t[-1]:.2f} n {len(t)}")
    for g in (0, 1, 2):
        p = sorted(x for gen, x in gc_pauses if gen == g)
        if p: print(f"gc gen{g}: {len(p)} collections, p50 {p[len(p)//2]:.3f} ms p99 {p[int(len(p)*.99)]:.3f} max {p[-1]:.2f} total {sum(p):.0f} ms")
    phases = ["sqlite_committed", "script_sent", "script_replied", "event_received", "visible"]
    rows = [d for d in marks.values() if all(k in d for k in phases + ["ts"])]
    print("orders", len(rows))
    def q(v, p): v = sorted(v); return v[min(len(v) - 1, int(p * len(v)))]
    prev = "ts"
    for ph in phases:
        step = [(d[ph] - d[prev]) * 1000 for d in rows]
        cum = [(d[ph] - d["ts"]) * 1000 for d in rows]
        print(f"{prev:>16} -> {ph:<16} step p50 {q(step,.5):6.3f} p99 {q(step,.99):6.3f} | since ts p50 {q(cum,.5):6.3f} p99 {q(cum,.99):6.3f}")
        prev = ph
    worst = sorted(rows, key=lambda d: d["visible"] - d["ts"])[-int(len(rows) * 0.01) - 1:]
    print("the slowest 1%: mean step (ms)")
    prev = "ts"
    for ph in phases:
        print(f"  {ph:<16} {statistics.mean((d[ph]-d[prev])*1000 for d in worst):7.3f}")
        prev = ph
    json.dump(rows, open("/tmp/lag/rows.json", "w"))
asyncio.run(main(float(sys.argv[1])))
