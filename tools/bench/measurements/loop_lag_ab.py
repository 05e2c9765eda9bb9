"""Event-loop lag added by inline SQLite writes: the two fixes of 2026-12-06, A/B in one process.

A 1 ms heartbeat (``asyncio.sleep(0.001)``, 400 beats a run) measures how late the loop wakes
while one task writes single-row transactions back to back, as asv's ``SQLiteLoopLag`` does.
Variants, alternated (forward, reverse, ...) over ROUNDS runs on one store:

* idle: no writes (the loop's own floor: epoll's 1 ms timeout granularity and the machine);
* before: the write after a WAL restart runs inline, and a slice ends with ``asyncio.sleep(0)``;
* restart on the thread: only the first fix (the write after a restart goes to the thread);
* now: both fixes (the slice also ends behind the timers already due).

The older behaviour is patched in for its runs (the library has only the current one). Prints
medians over runs of each run's p50 and p99 and the largest max, and writes per second.
Run from the repository root:

    .venv/bin/python tools/bench/measurements/loop_lag_ab.py [ROUNDS]
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tristore.stores import SQLiteStore
from tristore.stores import sqlite as sqlite_module
from tristore.testing.setup import store_settings

BEATS = 400
INSERT = "INSERT INTO lag (v) VALUES (?)"

current_relieve = SQLiteStore.relieve_wal
current_yield = SQLiteStore._yield_now_and_then


async def inline_after_restart(self: SQLiteStore, conn: Any) -> bool:
    """Before: the restart ran, but the write after it still went inline."""
    await current_relieve(self, conn)
    return False


async def yield_with_sleep0(self: SQLiteStore) -> None:
    """Before: one ``asyncio.sleep(0)`` at the end of a slice."""
    if time.perf_counter() - self._ran_since >= sqlite_module.INLINE_SLICE_S:
        await asyncio.sleep(0)
        self._ran_since = time.perf_counter()


Patch = tuple[Callable[..., Awaitable[bool]], Callable[..., Awaitable[None]]]
VARIANTS: dict[str, Patch | None] = {
    "idle (no writes)": None,
    "before": (inline_after_restart, yield_with_sleep0),
    "restart on the thread": (current_relieve, yield_with_sleep0),
    "now": (current_relieve, current_yield),
}


async def heartbeat() -> list[float]:
    loop = asyncio.get_running_loop()
    lags = []
    for _ in range(BEATS):
        start = loop.time()
        await asyncio.sleep(0.001)
        lags.append((loop.time() - start - 0.001) * 1000)
    return sorted(lags)


async def main(rounds: int) -> None:
    store = SQLiteStore(store_settings(Path(tempfile.mkdtemp(prefix="tristore-lag-"))))
    await store.open()
    await store.execute("CREATE TABLE IF NOT EXISTS lag (v INTEGER)")
    written = 0

    async def writer() -> None:
        nonlocal written
        while True:
            written += 1
            await store.execute(INSERT, (written,))

    runs: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in VARIANTS}
    for r in range(rounds):
        for name, patch in VARIANTS.items() if r % 2 == 0 else reversed(VARIANTS.items()):
            task = None
            if patch is not None:
                SQLiteStore.relieve_wal, SQLiteStore._yield_now_and_then = patch  # type: ignore[method-assign]
                task = asyncio.create_task(writer())
            before, started = written, time.perf_counter()
            lags = await heartbeat()
            rate = (written - before) / (time.perf_counter() - started)
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            runs[name].append(
                (lags[len(lags) // 2], lags[int(len(lags) * 0.99) - 1], lags[-1], rate)
            )
    SQLiteStore.relieve_wal, SQLiteStore._yield_now_and_then = current_relieve, current_yield  # type: ignore[method-assign]
    print(f"{rounds} runs of {BEATS} beats per variant; restarts {store._checkpointer.restarts}")
    print(f"{'variant':24s} {'p50 ms':>7s} {'p99 ms':>7s} {'max ms':>7s} {'writes/s':>9s}")
    for name, values in runs.items():
        p50, p99 = (statistics.median(v[i] for v in values) for i in (0, 1))
        worst = max(v[2] for v in values)
        rate = statistics.median(v[3] for v in values)
        print(f"{name:24s} {p50:7.3f} {p99:7.3f} {worst:7.3f} {rate:9.0f}")
    await store.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8))
