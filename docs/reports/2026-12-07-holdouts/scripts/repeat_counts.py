"""Repeat one workload's count on the working tree's library, keeping each run's top functions."""
import os
import sys
import time
from pathlib import Path

from tristore_bench import instructions

workload, repeats, keep = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
for i in range(repeats):
    load = os.getloadavg()[0]
    started = time.time()
    result = instructions.measure(workload, keep=keep / f"run{i}")
    print(
        f"run {i}: {result.per_op:,.1f} instructions/op (I(n)={result.small.instructions} "
        f"I(2n)={result.large.instructions}; load1 before {load:.2f}; {time.time() - started:.0f}s)",
        flush=True,
    )
    for name, per_op in result.top_functions(12):
        print(f"    {per_op:12.1f}  {name}", flush=True)
