"""Event-loop lag added by inline SQLite writes: the restart fix of 2026-12-06, A/B in one process.

A 1 ms heartbeat (``asyncio.sleep(0.001)``, 400 beats a run) measures how late the loop wakes
while one task writes single-row transactions back to back, as asv's ``SQLiteLoopLag`` does.
Variants, alternated (forward, reverse, ...) over ROUNDS runs on one store:

* idle: no writes (the loop's own floor: epoll's 1 ms timeout granularity and the machine);
* before: the write after a WAL restart runs inline (its first frame fsyncs the WAL header);
* now: that write goes to the writer thread;
* timer yield (not taken): also end each slice behind the timers already due (a timer due now
  instead of ``asyncio.sleep(0)``), so a task a timer woke runs before the writer's next slice.

The other behaviours are patched in for their runs (the library has only the current one).
Prints medians over runs of each run's p50 and p99 and the largest max, and writes per second
(with the heartbeat's own loop turns in between). Then the cost of the two yields without a
heartbeat: microseconds per write of one task writing back to back, 3000 writes a batch,
the two alternated over 30 batches each.
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
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from tristore.stores import SQLiteStore
from tristore.stores import sqlite as sqlite_module
from tristore.testing.setup import store_settings

BEATS = 400
INSERT = "INSERT INTO lag (v) VALUES (?)"

current_relieve = SQLiteStore.relieve_wal
current_yield = SQLiteStore._yield_now_and_then


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def inline_after_restart(self: SQLiteStore, conn: Any) -> bool:
    """Before: the restart ran, but the write after it still went inline."""
    await current_relieve(self, conn)
    return False


async def yield_behind_due_timers(self: SQLiteStore) -> None:
    """The alternative: resume through a timer due now, which the loop runs after the timers
    that fell due during the slice (and so after the tasks they wake)."""
    if time.perf_counter() - self._ran_since >= sqlite_module.INLINE_SLICE_S:
        loop = asyncio.get_running_loop()
        resume = loop.create_future()
        loop.call_at(loop.time(), _resolve, resume)
        await resume
        self._ran_since = time.perf_counter()


Patch = tuple[Callable[..., Awaitable[bool]], Callable[..., Awaitable[None]]]
VARIANTS: dict[str, Patch | None] = {
    "idle (no writes)": None,
    "before": (inline_after_restart, current_yield),
    "now": (current_relieve, current_yield),
    "timer yield (not taken)": (current_relieve, yield_behind_due_timers),
}


async def heartbeat(beats: int = BEATS) -> list[float]:
    """How late each of ``beats`` 1 ms sleeps woke, in ms, sorted."""
    loop = asyncio.get_running_loop()
    lags = []
    for _ in range(beats):
        start = loop.time()
        await asyncio.sleep(0.001)
        lags.append((loop.time() - start - 0.001) * 1000)
    return sorted(lags)


async def lag_store(**sqlite: Any) -> SQLiteStore:
    """An open store in a scratch directory, with the table the writers insert into."""
    directory = Path(tempfile.mkdtemp(prefix="tristore-lag-"))
    store = SQLiteStore(store_settings(directory, sqlite=sqlite))
    await store.open()
    await store.execute("CREATE TABLE IF NOT EXISTS lag (v INTEGER)")
    return store


class Writes:
    """Single-row write transactions back to back, in a task while ``running()`` is entered."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        self.count = 0

    async def write(self, n: int = 1) -> None:
        for _ in range(n):
            self.count += 1
            await self.store.execute(INSERT, (self.count,))

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async def forever() -> None:
            while True:
                await self.write()

        task = asyncio.create_task(forever())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


V = TypeVar("V")
Run = tuple[float, float, float, float]  # a heartbeat run's p50, p99, max (ms) and writes/s


async def heartbeat_runs(
    writes: Writes,
    variants: Mapping[str, V | None],
    install: Callable[[V], None],
    rounds: int,
) -> dict[str, list[Run]]:
    """Each variant's heartbeat runs under back-to-back writes (None: no writes, the idle
    floor), the variants alternated forward and reverse over ``rounds``."""
    runs: dict[str, list[Run]] = {name: [] for name in variants}
    for r in range(rounds):
        for name, variant in variants.items() if r % 2 == 0 else reversed(variants.items()):
            load = contextlib.nullcontext() if variant is None else writes.running()
            if variant is not None:
                install(variant)
            before, started = writes.count, time.perf_counter()
            async with load:
                lags = await heartbeat()
            rate = (writes.count - before) / (time.perf_counter() - started)
            runs[name].append(
                (lags[len(lags) // 2], lags[int(len(lags) * 0.99) - 1], lags[-1], rate)
            )
    return runs


async def per_write_us(
    writes: Writes, variants: Mapping[str, V], install: Callable[[V], None], batches: int
) -> dict[str, float]:
    """Median microseconds per back-to-back write (3000 a batch) of each variant, alternated."""
    costs: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(batches):
        for name, variant in variants.items() if r % 2 == 0 else reversed(variants.items()):
            install(variant)
            started = time.perf_counter()
            await writes.write(3000)
            costs[name].append((time.perf_counter() - started) / 3000 * 1e6)
    return {name: statistics.median(values) for name, values in costs.items()}


def summary(runs: list[Run]) -> Run:
    """Medians over runs of p50, p99 and writes/s; the largest max."""
    return (
        statistics.median(r[0] for r in runs),
        statistics.median(r[1] for r in runs),
        max(r[2] for r in runs),
        statistics.median(r[3] for r in runs),
    )


def install_patch(patch: Patch) -> None:
    SQLiteStore.relieve_wal, SQLiteStore._yield_now_and_then = patch  # type: ignore[method-assign]


async def main(rounds: int) -> None:
    store = await lag_store()
    writes = Writes(store)
    runs = await heartbeat_runs(writes, VARIANTS, install_patch, rounds)
    yields = {
        "sleep(0), now": (current_relieve, current_yield),
        "timer yield": (current_relieve, yield_behind_due_timers),
    }
    now, timer = (await per_write_us(writes, yields, install_patch, 30)).values()
    install_patch((current_relieve, current_yield))
    print(f"{rounds} runs of {BEATS} beats per variant; restarts {store._checkpointer.restarts}")
    print(f"{'variant':24s} {'p50 ms':>7s} {'p99 ms':>7s} {'max ms':>7s} {'writes/s':>9s}")
    for name, values in runs.items():
        p50, p99, worst, rate = summary(values)
        print(f"{name:24s} {p50:7.3f} {p99:7.3f} {worst:7.3f} {rate:9.0f}")
    print(f"back to back, us per write: sleep(0) {now:.2f}, timer yield {timer:.2f}", end=" ")
    print(f"(x{timer / now:.3f})")
    await store.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8))
