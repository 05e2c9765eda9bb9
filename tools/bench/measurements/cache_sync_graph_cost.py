"""What the Kuzu stage costs inside ``tristore load cache_synchronization``.

The sync lag is measured from the end of ``place_order``'s transaction body, and the coordinator
runs the order's graph statement in Kuzu before the SQLite commit (the validation contract), so
no order's cache update can be visible sooner than that stage. This wraps the coordinator's
Kuzu-thread functions with timers, runs the load scenario through the CLI for SECONDS and prints,
after the CLI's own report, p50/p90/p99 of each statement and of the stage and batch COMMIT.
Run from the repository root:

    .venv/bin/python tools/bench/measurements/cache_sync_graph_cost.py [SECONDS]
"""

from __future__ import annotations

import atexit
import collections
import sys
import time
from typing import Any

from timing import timed

from tristore.cli import main
from tristore.coordinator import core, graph_apply

samples: dict[str, list[float]] = collections.defaultdict(list)
original_execute = graph_apply._prepared.execute


def execute(conn: Any, cypher: str, params: Any) -> Any:
    started = time.perf_counter()
    try:
        return original_execute(conn, cypher, params)
    finally:
        samples[" ".join(cypher.split())[:44]].append(time.perf_counter() - started)


def report() -> None:
    print("\nKuzu writer thread (us):", file=sys.stderr)
    for name, values in samples.items():
        values.sort()
        p50, p90, p99 = (values[int(len(values) * q)] * 1e6 for q in (0.5, 0.9, 0.99))
        print(f"  {name:46s} n={len(values):6d} p50 {p50:6.0f} p90 {p90:6.0f} p99 {p99:6.0f}")


graph_apply._prepared.execute = execute  # type: ignore[method-assign]
timed(core, "stage_graph", samples)
timed(core, "commit_graph", samples)
atexit.register(report)

if __name__ == "__main__":
    seconds = sys.argv[1] if len(sys.argv) > 1 else "60"
    sys.argv = ["tristore", "load", "cache_synchronization", "--duration", seconds, "--no-progress"]
    main()
