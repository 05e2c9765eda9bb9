"""Same commit, another day: the stored result against a re-run, per gated entry."""
import json, glob, itertools, subprocess, sys
sys.path.insert(0, "/work/main/tools/bench/src")

def entries(path):
    d = json.load(open(path))
    cols = d["result_columns"]
    out = {}
    for name, row in d["results"].items():
        r = dict(zip(cols, row))
        vals, params = r.get("result"), r.get("params") or []
        if vals is None: continue
        combos = list(itertools.product(*params)) if params else [()]
        for combo, v in zip(combos, vals):
            key = f"{name}({', '.join(combo)})" if combo else name
            out[key] = v
    return d["commit_hash"], out

new = dict(entries(p) for p in glob.glob("/tmp/crossday/results-crossday/tristore-2core/*.json") if not p.endswith("machine.json"))
old = {}
for p in glob.glob("/work/main/results/tristore-2core/*.json"):
    if p.endswith("machine.json"): continue
    h, e = entries(p); old[h] = e
block = json.loads(subprocess.run(["/work/main/.venv/bin/tristore-bench", "thresholds"], cwd="/work/main", capture_output=True, text=True).stdout)
from tristore_bench.thresholds import effective_threshold
rows = []
for h, e in new.items():
    for k, v in sorted(e.items()):
        o = old.get(h, {}).get(k)
        if o is None or v is None or o != o or v != v: continue
        rel = max(v / o, o / v) - 1 if o and v else float("nan")
        thr = effective_threshold(block, k)
        rows.append((k, h[:8], o, v, rel, thr))
for k, h, o, v, rel, thr in sorted(rows):
    flag = "EXCEEDS" if rel > thr else ""
    print(f"{k:70s} {h} stored {o:12.4g} rerun {v:12.4g} diff {rel*100:6.1f}% threshold {thr*100:5.1f}% {flag}")
