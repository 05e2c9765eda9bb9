import sys, numpy as np
sys.path.insert(0, "tools/bench/tests"); sys.path.insert(0, "tools/bench/src")
from dataclasses import replace
import test_gate as T
from tristore_bench.gate import stats
for maxr in (20, 16, 12):
    stats.Policy.__init__.__defaults__  # noqa
    orig = T.Policy
    T.Policy = lambda: replace(orig(), max_rounds=maxr)
    rng = np.random.default_rng(4)
    for noise in (0.03, 0.05):
        gates = [T._sequential_gate(rng, 1.0, noise, 6) for _ in range(200)]
        false = sum("regression" in g or "improvement" in g for g in gates)
        unch = sum(v == "unchanged" for g in gates for v in g) / 1200
        rng2 = np.random.default_rng(5)
        det = [T._sequential_gate(rng2, 1.10, noise, 6) for _ in range(100)]
        caught = sum(v == "regression" for g in det for v in g) / 600
        print(f"max_rounds={maxr} noise={noise}: A/A false gates {false}/200, unchanged {unch:.2f}; x1.10 caught {caught:.2f}")
    T.Policy = orig
