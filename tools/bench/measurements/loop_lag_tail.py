"""Where the loop-lag tail under inline writes comes from: blocking calls, or the loop idling.

3000 heartbeats of 1 ms while one task writes single-row transactions back to back. The inline
transaction (``_run_inline``), its COMMIT and the checkpoint size check are timed on every call,
so a slow synchronous call on the loop shows up as such. Run from the repository root with the
WAL size that starts a checkpoint (4 GiB: none in the run; 4194304: the default):

    .venv/bin/python tools/bench/measurements/loop_lag_tail.py 4194304
"""

from __future__ import annotations

import asyncio
import sys

from loop_lag_ab import Writes, heartbeat, lag_store  # this directory's A/B script
from timing import timed

from tristore.stores import SQLiteStore
from tristore.stores import sqlite as sqlite_module

BEATS = 3000
SLOW_MS = 0.3
samples: dict[str, list[float]] = {}


async def main(wal_bytes: int) -> None:
    timed(sqlite_module, "_run_inline", samples, "inline transaction")
    timed(SQLiteStore, "_commit_inline", samples, "inline COMMIT")
    timed(sqlite_module._Checkpointer, "maybe_start", samples, "checkpoint check")
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
    for name, seconds in samples.items():
        slow = sum(s * 1000 > SLOW_MS for s in seconds)
        worst = max(seconds, default=0.0) * 1000
        print(f"  {name}: {len(seconds)} calls, {slow} over {SLOW_MS} ms, worst {worst:.3f} ms")
    await store.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 4 << 20))
