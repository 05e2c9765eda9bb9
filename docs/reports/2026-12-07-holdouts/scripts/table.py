"""Per-commit per-op counts of the six count series for the hold-out commits (from results/)."""
import glob
import json
import sys

commits = [line.strip() for line in open(sys.argv[1]) if line.strip()]
labels = [f"H{i}" for i in range(len(commits))]
names = ["SQLiteWrite", "PoolCheckout", "RedisPipeline", "GraphPointRead", "CoordinatedTransaction", "OrderFlow"]
vals = {}
for f in glob.glob("results/tristore-callgrind/*-env-*.json"):
    d = json.load(open(f))
    if d["commit_hash"] in commits:
        for k, v in d["results"].items():
            vals[(d["commit_hash"], k.split(".")[1])] = v[0][0] if isinstance(v[0], list) else v[0]
print("| commit | " + " | ".join(names) + " |")
print("|---|" + "---:|" * len(names))
base = {n: vals.get((commits[0], n)) for n in names}
prev = dict(base)
for lab, c in zip(labels, commits):
    cells = []
    for n in names:
        v = vals.get((c, n))
        if v is None:
            cells.append("-")
            continue
        d0 = (v / base[n] - 1) * 100
        dp = (v / prev[n] - 1) * 100
        cells.append(f"{v:,.1f} ({dp:+.2f}% / {d0:+.2f}%)")
        prev[n] = v
    print(f"| {lab} `{c[:8]}` | " + " | ".join(cells) + " |")
