"""In-process A/B: single-row write transactions, raw sqlite3 vs tristore with and without the
WAL restart after a background checkpoint (the "without" side is today's code with the restart
request switched off on its store alone, which is what the code did before the change).

    .venv/bin/python tools/bench/measurements/wal_restart_ab.py [ROUNDS]

Each round times a batch of 700 writes on every side, the order alternating, so a change in
machine speed during the run touches all sides alike; ratios are per round, then the median.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tristore.stores import SQLiteStore
from tristore.stores import sqlite as sqlite_module
from tristore.testing.setup import store_settings

SCHEMA = "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"
INSERT = "INSERT INTO t (v) VALUES (?)"
BATCH = 700


class _NoRestart(sqlite_module._Checkpointer):
    """The checkpointer as it was: a finished copy never asks for a restart."""

    def _finished(self, fut: Any) -> None:
        super()._finished(fut)
        self.want_restart = False


async def _store(root: Path, name: str, restart: bool) -> SQLiteStore:
    store = SQLiteStore(store_settings(root / name, ""), apply_schema=False)
    if not restart:
        old = store._checkpointer
        store._checkpointer = _NoRestart(old.path, old.limit)
    await store.open()
    await store.execute(SCHEMA)
    return store


async def main(rounds: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="wal-ab-"))
    stores = {
        "after": await _store(root, "after", True),
        "before": await _store(root, "before", False),
    }
    raw = sqlite3.connect(root / "raw.sqlite3", isolation_level=None)
    for pragma in ("journal_mode = WAL", "synchronous = NORMAL", "cache_size = 10000"):
        raw.execute(f"PRAGMA {pragma}")
    raw.execute(SCHEMA)

    async def batch(side: str) -> float:
        start = time.perf_counter()
        if side == "raw":
            for _ in range(BATCH):
                raw.execute("BEGIN IMMEDIATE")
                raw.execute(INSERT, ("x",))
                raw.execute("COMMIT")
        else:
            store = stores[side]
            for _ in range(BATCH):
                await store.execute(INSERT, ("x",))
        return (time.perf_counter() - start) / BATCH

    sides = ["raw", "before", "after"]
    for side in sides:
        await batch(side)
    times: dict[str, list[float]] = {side: [] for side in sides}
    for i in range(rounds):
        for side in sides if i % 2 == 0 else sides[::-1]:
            times[side].append(await batch(side))
    for side in sides:
        ratio = statistics.median(a / b for a, b in zip(times[side], times["raw"], strict=True))
        print(
            f"{side:>6}: median {statistics.median(times[side]) * 1e6:6.1f} us/write, "
            f"/ raw sqlite3 {ratio:.3f}"
        )
    for side in ("before", "after"):
        print(f"{side:>6}: checkpoints {stores[side].stats()['checkpoints']}")
    for store in stores.values():
        await store.close()
    raw.close()
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20))
