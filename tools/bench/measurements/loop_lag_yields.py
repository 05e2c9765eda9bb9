"""Loop lag of a back-to-back inline writer: one ``sleep(0)`` per slice against two.

The heartbeat of loop_lag_ab.py (400 beats of 1 ms) runs while one task writes single-row
transactions back to back; the variants are patched into ``SQLiteStore._yield_now_and_then`` and
alternated (forward, reverse) over ROUNDS runs. Prints the medians over runs of each run's p50 and
p99, the largest max, writes per second during the heartbeat, and microseconds per write of a
back-to-back writer without a heartbeat (3000 writes a batch, 20 alternated batches).
Run from the repository root:

    .venv/bin/python tools/bench/measurements/loop_lag_yields.py [ROUNDS]
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from loop_lag_ab import Writes, heartbeat_runs, lag_store, per_write_us, summary

from tristore.stores import SQLiteStore

Yield = Callable[[SQLiteStore], Awaitable[None]]


def yielding(times: int, slice_s: float) -> Yield:
    async def yield_now_and_then(self: SQLiteStore) -> None:
        if time.perf_counter() - self._ran_since >= slice_s:
            for _ in range(times):
                await asyncio.sleep(0)
            self._ran_since = time.perf_counter()

    return yield_now_and_then


VARIANTS: dict[str, Yield | None] = {
    "idle (no writes)": None,
    "1x sleep(0), 0.2 ms": yielding(1, 0.0002),
    "2x sleep(0), 0.2 ms": yielding(2, 0.0002),
    "2x sleep(0), 0.1 ms": yielding(2, 0.0001),
    "1x sleep(0), 0.1 ms": yielding(1, 0.0001),
}


def install(variant: Yield) -> None:
    SQLiteStore._yield_now_and_then = variant  # type: ignore[method-assign]


async def main(rounds: int) -> None:
    store = await lag_store()
    writes = Writes(store)
    runs = await heartbeat_runs(writes, VARIANTS, install, rounds)
    writing = {name: v for name, v in VARIANTS.items() if v is not None}
    costs = await per_write_us(writes, writing, install, 20)
    print(f"{rounds} runs of 400 beats per variant")
    header = ("p50 ms", "p99 ms", "max ms", "writes/s", "us/write")
    print(f"{'variant':22s} " + " ".join(f"{h:>8s}" for h in header))
    for name, values in runs.items():
        p50, p99, worst, rate = summary(values)
        cost = costs.get(name, float("nan"))
        print(f"{name:22s} {p50:8.3f} {p99:8.3f} {worst:8.3f} {rate:8.0f} {cost:8.2f}")
    await store.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8))
