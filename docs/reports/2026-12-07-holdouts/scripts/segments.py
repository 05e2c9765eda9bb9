"""Where each count series' segments start among the hold-out commits, as the site published it.

Reads the published graphs (HTML_DIR/graphs/**/instructions.*.json, the series asv segmented),
maps revisions to hashes with index.json and prints, per series, the segments that touch the
hold-out commits (segmented as asv_publish does: changepoints.detect_steps at the series' count
tolerance).
"""
import glob
import json
import sys
from pathlib import Path

from tristore_bench import asv_publish, changepoints

html = Path(sys.argv[1])
commits = [line.strip() for line in open(sys.argv[2]) if line.strip()]
label = {c: f"H{i}" for i, c in enumerate(commits)}
index = json.loads((html / "index.json").read_text())
rev_to_hash = index["revision_to_hash"]
tolerances = asv_publish.count_tolerances()
for path in sorted(glob.glob(str(html / "graphs/**/instructions.*.json"), recursive=True)):
    if "/summary/" in path:
        continue
    name = Path(path).stem
    data = json.loads(Path(path).read_text())
    xs = [d[0] for d in data]
    tol = asv_publish.count_tolerance(name, tolerances)
    steps = changepoints.detect_steps([d[1] for d in data], None, count_tolerance=tol)
    out = []
    for left, right, value, _low, _err in steps:
        first, last = rev_to_hash[str(xs[left])], rev_to_hash[str(xs[right - 1])]
        if last in label or first in label:
            out.append(f"[{label.get(first, first[:8])}..{label.get(last, last[:8])}] {value:,.1f}")
    print(f"{name} (tolerance {tol:.2%}): " + "; ".join(out))
