"""Orders/s per 10 s window from the progress lines' cumulative ops (one line per second)."""
import re, sys
for path in sys.argv[1:]:
    ops = {}
    for line in open(path).read().replace("\r", "\n").splitlines():
        m = re.search(r"\s(\d+)/\d+ s\s+ops (\d+)", line)
        if m:
            ops[int(m.group(1))] = int(m.group(2))
    last = max(ops)
    edges = list(range(0, last, 10)) + [last]
    cells = []
    for a, b in zip(edges, edges[1:]):
        if b - a < 1: continue
        cells.append(f"{(ops[b] - ops.get(a, 0)) / (b - a):6.0f}")
    print(f"{path:<22}", " ".join(cells))
