"""Spreads and levels of the count-noise runs of this report (from their records and logs)."""
import json
import re
import statistics
import sys
from pathlib import Path

HERE = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent
RUNS = [
    ("old loop, loaded", "old-loaded"),
    ("readiness only, loaded", "rd1-loaded"),
    ("new loop, loaded", "new-loaded"),
    ("new loop, quiet", "new-quiet"),
    ("old loop, quiet", "old-quiet"),
    ("new loop, quiet (all six)", "new-quiet-all"),
    ("record: new loop, loaded", "record-loaded"),
]
print(f"{'run':<26} {'workload':<17} {'n':>4} {'min/op':>13} {'max/op':>13} {'spread':>7}  seconds (n / 2n, each repeat)")
for title, label in RUNS:
    path = HERE / f"{label}.json"
    log = HERE / f"{label}.log"
    if not path.exists() or not log.exists():
        continue
    seconds: dict[str, list[str]] = {}
    for m in re.finditer(r"^(\w+) \d+/\d+: [\d.]+ instructions/op \((\d+) s / (\d+) s\)", log.read_text(), re.M):
        seconds.setdefault(m.group(1), []).append(f"{m.group(2)}/{m.group(3)}")
    for name, rec in json.loads(path.read_text())["workloads"].items():
        if name not in seconds:
            continue  # a record merged in from before this run
        per_op = rec["per_op"]
        low, high = min(per_op), max(per_op)
        print(f"{title:<26} {name:<17} {len(per_op):>4} {low:>13,.1f} {high:>13,.1f} {(high - low) / low:>7.3%}  {' '.join(seconds[name])}")

# Levels: the median per-op count of each workload, old loop against new, both quiet.
old = json.loads((HERE / "old-quiet.json").read_text())["workloads"] if (HERE / "old-quiet.json").exists() else {}
new = json.loads((HERE / "new-quiet-all.json").read_text())["workloads"] if (HERE / "new-quiet-all.json").exists() else {}
if old and new:
    print()
    print(f"{'workload':<17} {'old median':>13} {'new median':>13} {'change':>8}  old spread")
    for name in old:
        if name in new:
            a, b = statistics.median(old[name]["per_op"]), statistics.median(new[name]["per_op"])
            print(f"{name:<17} {a:>13,.1f} {b:>13,.1f} {(b - a) / a:>+8.3%}  {old[name]['spread']:.3%}")
