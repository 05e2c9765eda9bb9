"""Coordinated orders at 25 clients for several ``graph_batch_wait`` values, in one process.

Opens asv's ``CoordinatedWrites`` stores (benchmarks/coordinated.py) and runs the 25-client x
16-order load ROUNDS times per value, the values alternated (forward, reverse, ...) on one
coordinator whose ``graph_batch_wait`` is set before each run. Prints, per value, the medians of
orders/s, p50 and p99 and the mean batch size. Run from the repository root:

    .venv/bin/python tools/bench/measurements/batch_wait.py [ROUNDS] [WAIT_MS ...]
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from benchmarks.coordinated import CoordinatedWrites, _concurrent, _p99_ms


def main(rounds: int, waits_ms: list[float]) -> None:
    bench = CoordinatedWrites()
    bench.setup()
    rows: dict[float, list[tuple[float, float, float, float]]] = {w: [] for w in waits_ms}
    try:
        for r in range(rounds):
            for wait in waits_ms if r % 2 == 0 else reversed(waits_ms):
                bench.coord.graph_batch_wait = wait / 1000
                batches = bench.coord.stats()["graph_batches"]
                latencies, seconds = bench.run(_concurrent(bench.coordinated))
                members = len(latencies) / (bench.coord.stats()["graph_batches"] - batches)
                rows[wait].append(
                    (
                        len(latencies) / seconds,
                        statistics.median(latencies),
                        _p99_ms(latencies),
                        members,
                    )
                )
    finally:
        bench.teardown()
    print(f"{rounds} runs of 400 orders per value")
    print(f"{'graph_batch_wait':>16s} {'orders/s':>9s} {'p50 ms':>7s} {'p99 ms':>7s} {'batch':>6s}")
    for wait, values in rows.items():
        rate, p50, p99, members = (statistics.median(v[i] for v in values) for i in range(4))
        print(f"{wait:13.1f} ms {rate:9.0f} {p50:7.1f} {p99:7.1f} {members:6.1f}")


if __name__ == "__main__":
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    waits = [float(w) for w in sys.argv[2:]] or [2.0, 10.0, 25.0]
    main(rounds, waits)
