"""Where the loop-lag tail under inline writes comes from: blocking calls, or the loop idling.

3000 heartbeats of 1 ms while one task writes single-row transactions back to back. The inline
transaction (``_run_inline``), its COMMIT and the checkpoint size check are timed on every call,
so a slow synchronous call on the loop shows up as such. Run from the repository root with the
WAL size that starts a checkpoint (4 GiB: none in the run; 4194304: the default):

    .venv/bin/python tools/bench/measurements/loop_lag_tail.py 4194304
"""

from __future__ import annotations

import asyncio
import collections
import functools
import sys
import time
from collections.abc import Callable
from typing import Any

from loop_lag_ab import Writes, heartbeat, lag_store  # this directory's A/B script

from tristore.stores import SQLiteStore
from tristore.stores import sqlite as sqlite_module

BEATS = 3000
SLOW_MS = 0.3
calls: collections.Counter[str] = collections.Counter()
slow: collections.Counter[str] = collections.Counter()
worst: dict[str, float] = collections.defaultdict(float)


def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            ms = (time.perf_counter() - start) * 1000
            calls[name] += 1
            worst[name] = max(worst[name], ms)
            slow[name] += ms > SLOW_MS

    return wrapper


async def main(wal_bytes: int) -> None:
    sqlite_module._run_inline = timed("inline transaction", sqlite_module._run_inline)  # type: ignore[assignment]
    SQLiteStore._commit_inline = timed("inline COMMIT", SQLiteStore._commit_inline)  # type: ignore[method-assign]
    checkpointer = sqlite_module._Checkpointer
    checkpointer.maybe_start = timed("checkpoint check", checkpointer.maybe_start)  # type: ignore[method-assign]
    store = await lag_store(checkpoint_wal_bytes=wal_bytes)
    writes = Writes(store)
    async with writes.running():
        lags = await heartbeat(BEATS)
    written = writes.count
    late = sum(lag > 0.5 for lag in lags)
    p50, p99 = lags[BEATS // 2], lags[int(BEATS * 0.99) - 1]
    print(f"checkpoint_wal_bytes {wal_bytes}: p50 {p50:.3f} p99 {p99:.3f} max {lags[-1]:.3f} ms,")
    print(f"  {late} of {BEATS} beats over 0.5 ms; {written} writes,", end=" ")
    print(f"{store._checkpointer.restarts} restarts, {store._checkpointer.runs} PASSIVE copies")
    for name, n in calls.items():
        print(f"  {name}: {n} calls, {slow[name]} over {SLOW_MS} ms, worst {worst[name]:.3f} ms")
    await store.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 4 << 20))
