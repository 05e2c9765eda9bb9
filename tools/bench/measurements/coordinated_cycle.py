"""Where one coordinated commit spends the SQLite writer lane, with 25 clients committing at once.

Under load every coordinated transaction waits for the SQLite writer lane, so orders/s is one over
the time the lane is held per transaction plus the hand-over. This opens asv's
``CoordinatedWrites`` stores (benchmarks/coordinated.py), wraps a few of the coordinator's methods
with timestamps (the wrappers add a few microseconds each), runs the 25-client x 16-order load
RUNS times and prints, per segment of the lane cycle, its mean and median; then the time the
Kuzu writer thread spent in the stage and in the batch COMMITs, and the batch sizes.
Run from the repository root:

    .venv/bin/python tools/bench/measurements/coordinated_cycle.py [RUNS]
"""

from __future__ import annotations

import collections
import functools
import itertools
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from benchmarks.coordinated import CoordinatedWrites, _concurrent, _p99_ms
from timing import timed

from tristore.coordinator import core, transaction, txstate

events: list[tuple[str, float]] = []
thread_time: dict[str, list[float]] = {}
batch_sizes: collections.Counter[int] = collections.Counter()


def stamp(cls: Any, name: str, before: str | None, after: str | None) -> None:
    original = getattr(cls, name)

    @functools.wraps(original)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if before:
            events.append((before, time.perf_counter()))
        try:
            return await original(*args, **kwargs)
        finally:
            if after:
                events.append((after, time.perf_counter()))

    setattr(cls, name, wrapper)


stamp(txstate.TxState, "take_lane", None, "lane taken")
stamp(transaction.Transaction, "__aexit__", "body done", None)
stamp(core.Coordinator, "_commit_protocol", "protocol task runs", None)
stamp(core.Coordinator, "_stage_logging", "graph lock held", "SQLite committed")
stamp(txstate.TxState, "release_lane", "lane released", None)
timed(core, "stage_graph", thread_time)
timed(core, "commit_graph", thread_time)
original_commit_batch = core.Coordinator._commit_batch


async def commit_batch(self: core.Coordinator, batch: Any) -> None:
    if batch is self._batch:
        batch_sizes[len(batch.members)] += 1
    await original_commit_batch(self, batch)


core.Coordinator._commit_batch = commit_batch  # type: ignore[method-assign]
ORDER = ("lane taken", "body done", "protocol task runs", "graph lock held", "SQLite committed")
ORDER += ("lane released",)


def segments() -> dict[str, list[float]]:
    out: dict[str, list[float]] = collections.defaultdict(list)
    seen: dict[str, float] = {}
    released: float | None = None
    for name, at in events:
        if name == "lane taken":
            if released is not None:
                out["lane released -> next taken"].append(at - released)
            seen = {name: at}
        elif name not in seen:
            seen[name] = at
            if name == "lane released":
                released = at
                marks = [m for m in ORDER if m in seen]
                for a, b in itertools.pairwise(marks):
                    out[f"{a} -> {b}"].append(seen[b] - seen[a])
                out["lane held (whole cycle)"].append(at - seen["lane taken"])
    return out


def main(runs: int) -> None:
    bench = CoordinatedWrites()
    bench.setup()
    try:
        events.clear()
        for samples in thread_time.values():
            samples.clear()
        batch_sizes.clear()
        rates, p99s = [], []
        started = time.perf_counter()
        for _ in range(runs):
            latencies, seconds = bench.run(_concurrent(bench.coordinated))
            rates.append(len(latencies) / seconds)
            p99s.append(_p99_ms(latencies))
        wall = time.perf_counter() - started
    finally:
        bench.teardown()
    orders = 400 * runs
    print(
        f"{runs} runs of 400 orders: median {statistics.median(rates):.0f} orders/s, "
        f"p99 {statistics.median(p99s):.1f} ms"
    )
    print(f"{'lane cycle segment':44s} {'mean us':>8s} {'median us':>9s}")
    for name, values in segments().items():
        mean, median = statistics.mean(values) * 1e6, statistics.median(values) * 1e6
        print(f"{name:44s} {mean:8.0f} {median:9.0f}")
    print("Kuzu writer thread, per order:")
    for name, values in thread_time.items():
        print(f"  {name:14s} {sum(values) / orders * 1e6:6.0f} us ({len(values)} calls)")
    busy = sum(sum(v) for v in thread_time.values())
    print(f"  busy {busy / wall * 100:.0f}% of the wall time")
    print("batch sizes:", dict(sorted(batch_sizes.items())))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
