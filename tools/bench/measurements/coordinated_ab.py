"""Coordinated orders at 25 concurrent clients, two library sources alternated in fresh processes.

Each process opens asv's ``CoordinatedWrites`` stores (benchmarks/coordinated.py) on one library
source, runs the 25-client x 16-order load five times (median orders/s, p50 and p99) and then its
``track_overhead_ratio`` (coordinated / uncoordinated, sequential, in-process). The two sources
alternate A B, B A, ... for ROUNDS rounds, so both span the same stretch of machine load. Make
the "before" source with ``git worktree add /tmp/before <commit>``. Run from the repository root:

    .venv/bin/python tools/bench/measurements/coordinated_ab.py /tmp/before/src src [ROUNDS]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
RUNS = 5


def measure(src: str) -> None:
    """In the child process: the library from ``src``, the benchmark module from this checkout."""
    sys.path[:0] = [src, str(ROOT)]
    import tristore

    assert tristore.__file__ is not None and tristore.__file__.startswith(src), tristore.__file__
    from benchmarks.coordinated import CoordinatedWrites, _concurrent, _p99_ms

    bench = CoordinatedWrites()
    bench.setup()
    rates, p50s, p99s = [], [], []
    for _ in range(RUNS):
        latencies, seconds = bench.run(_concurrent(bench.coordinated))
        rates.append(len(latencies) / seconds)
        p50s.append(statistics.median(latencies))
        p99s.append(_p99_ms(latencies))
    ratio = bench.track_overhead_ratio()
    bench.teardown()
    print(
        json.dumps(
            {
                "orders_per_s": statistics.median(rates),
                "p50_ms": statistics.median(p50s),
                "p99_ms": statistics.median(p99s),
                "overhead_ratio": ratio,
            }
        )
    )


def main(a: str, b: str, rounds: int) -> None:
    results: dict[str, list[dict[str, float]]] = {a: [], b: []}
    for r in range(rounds):
        for src in (a, b) if r % 2 == 0 else (b, a):
            out = (
                subprocess.run(
                    [sys.executable, __file__, "--child", src],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            results[src].append(json.loads(out))
            print(src, out, flush=True)
    print(f"\nmedians over {rounds} processes each:")
    for src, rows in results.items():
        medians = {k: statistics.median(row[k] for row in rows) for k in rows[0]}
        print(src, " ".join(f"{k} {v:.3g}" for k, v in medians.items()))


if __name__ == "__main__":
    if sys.argv[1] == "--child":
        measure(sys.argv[2])
    else:
        a, b = (str(Path(arg).resolve()) for arg in sys.argv[1:3])
        main(a, b, int(sys.argv[3]) if len(sys.argv) > 3 else 6)
