"""Noise of the in-process ratio benchmarks: the same code, measured in separate processes.

Run from the repository root:
    .venv/bin/python tools/bench/measurements/ratio_noise.py [PROCESSES [PAIR...]]
Each process does what one asv sample of ``benchmarks/ratios.py`` does (setup, ``track_ratio``,
teardown) for every pair, on a snapshot of HEAD's ``src`` (``git archive``), so a change in the
working tree cannot read as noise. The spread between processes is what a commit-to-commit step
must exceed to be seen: reported as (max - min) / median and as the robust CV (1.4826 MAD /
median). For comparison, the same processes also time each side alone (absolute seconds per
operation), the wall-time measure the ratio replaces.
"""

from __future__ import annotations

import json
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

CHILD = r"""
import json, sys
sys.path.insert(0, {root!r})
from benchmarks.ratios import PAIRS, DriverRatios
out = {{}}
for pair in {pairs!r}:
    bench = DriverRatios()
    bench.setup(pair)
    try:
        ratio = bench.track_ratio(pair)
        tristore, reference = bench.cases
        alone = {{c.impl: bench.bench.time_case(bench.loops, c, bench.data_dir) / bench.loops
                 for c in (tristore, reference)}}
    finally:
        bench.teardown(pair)
    out[pair] = {{"ratio": ratio, "tristore_s": alone[tristore.impl],
                  "reference_s": alone[reference.impl]}}
print(json.dumps(out))
"""


def _spread(values: list[float]) -> tuple[float, float]:
    median = statistics.median(values)
    mad = statistics.median(abs(v - median) for v in values)
    return (max(values) - min(values)) / median, 1.4826 * mad / median


def main() -> None:
    processes = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    sys.path.insert(0, str(ROOT))
    from benchmarks.ratios import PAIRS

    pairs = sys.argv[2:] or list(PAIRS)
    print("command:", shlex.join([sys.executable, *sys.argv]))
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.strip()
    pinned = Path(tempfile.mkdtemp(prefix="tsb-ratio-lib-"))
    archive = subprocess.run(
        ["git", "archive", commit, "src"], capture_output=True, check=True, cwd=ROOT
    )
    subprocess.run(["tar", "-x", "-C", str(pinned)], input=archive.stdout, check=True)
    print(f"library: tristore from commit {commit} (snapshot in {pinned}/src)", flush=True)
    runs: list[dict[str, dict[str, float]]] = []
    for i in range(processes):
        done = subprocess.run(
            [sys.executable, "-c", CHILD.format(root=str(ROOT), pairs=pairs)],
            capture_output=True,
            text=True,
            env={"PYTHONPATH": f"{pinned}/src:{ROOT}/tools/bench/src", "PATH": "/usr/bin:/bin"},
            timeout=900,
        )
        if done.returncode != 0:
            print(f"process {i + 1} failed:\n{done.stderr[-2000:]}", flush=True)
            continue
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        line = "  ".join(f"{p.split('/')[0]}={r['ratio']:.3f}" for p, r in runs[-1].items())
        print(f"process {i + 1}: {line}", flush=True)
    print(f"\n{len(runs)} processes; spread (max-min)/median and robust CV:")
    for pair in pairs:
        ratios = [r[pair]["ratio"] for r in runs if pair in r]
        alone = [r[pair]["tristore_s"] for r in runs if pair in r]
        if len(ratios) < 2:
            continue
        (rs, rc), (ts, tc) = _spread(ratios), _spread(alone)
        print(
            f"  {pair:34s} ratio median {statistics.median(ratios):6.3f}  spread {100 * rs:5.1f}%"
            f"  CV {100 * rc:4.1f}%  | tristore alone: spread {100 * ts:5.1f}%"
            f"  CV {100 * tc:4.1f}%"
        )


if __name__ == "__main__":
    main()
