"""Resampled power of the gate's verdict at 20 rounds (max_rounds 20) against 12 (max_rounds 12),
from the pooled rounds of a recorded A/A calibration state (tristore_bench.gate.calibrate)."""
import dataclasses, sys
sys.path.insert(0, "/work/main/tools/bench/src")
from pathlib import Path
from tristore_bench.gate.calibrate import Calibration, resampled_rates
for path in sys.argv[1:]:
    cal = Calibration.load(Path(path))
    family = len(cal.names())
    print(path.split("/")[-1], "benchmarks:", family)
    for name in cal.names():
        pool = cal.pooled.get(name)
        row = [name.removeprefix("test_")]
        for rounds in (20, 12):
            policy = dataclasses.replace(cal.policy, alpha=cal.policy.alpha / family, max_rounds=rounds)
            r = resampled_rates(pool["base"], pool["head"], rounds, policy, cal.resample_seed, 1000)
            row.append(f"{rounds}r: A/A false {r['aa_regression']+r['aa_improvement']:.3f} x1.10 {r['shift10_regression']:.2f} x1.20 {r['shift20_regression']:.2f}")
        print("  ", " | ".join(row))
