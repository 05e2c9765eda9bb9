"""One line per load run: orders/s, p99, max, Kuzu batches and orders per batch, and the
per-10 s windows (from the progress lines).

    python summary.py DIR
"""
import json
import re
import sys
from pathlib import Path


def windows(progress: Path) -> str:
    ops = {}
    for line in progress.read_text().replace("\r", "\n").splitlines():
        m = re.search(r"\s(\d+)/\d+ s\s+ops (\d+)", line)
        if m:
            ops[int(m.group(1))] = int(m.group(2))
    if not ops:
        return ""
    last = max(ops)
    edges = [*range(0, last, 10), last]
    return " ".join(
        f"{(ops[b] - ops.get(a, 0)) / (b - a):5.0f}" for a, b in zip(edges, edges[1:]) if b > a
    )


for path in sorted(Path(sys.argv[1]).glob("*.json"), key=lambda p: (p.stem[-1], p.stem)):
    d = json.loads(path.read_text())
    writer = d["details"]["pools"]["graph.writer"]
    batches = writer["requests_num"]
    print(
        f"{path.stem:<14} {d['throughput_ops_s']:7.1f}/s  p99 {d['p99_ms']:6.1f}  max {d['max_ms']:6.1f}"
        f"  kuzu held {writer['usage_ms'] / 1000:5.1f} s  {d['operations'] / max(batches, 1):4.1f}/batch"
        f"  | {windows(path.with_suffix('.progress'))}"
    )
