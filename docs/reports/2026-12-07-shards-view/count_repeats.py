import sys, json
from pathlib import Path
from tristore_bench import instructions as ins
w = sys.argv[1]; reps = int(sys.argv[2]); out = Path(sys.argv[3])
for i in range(reps):
    c = ins.measure(w, keep=out / f"r{i}")
    print(w, i, c.per_op, c.small.instructions, c.large.instructions, flush=True)
