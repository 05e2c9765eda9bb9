"""Where tristore's Kuzu point read spends its time over a raw executor call.

One process; each case runs 40 reads per batch, the cases alternate (forward, reverse, ...) over
15 rounds, and each is reported as its median batch against the raw executor call on the same
connection and prepared statement. Run from the repository root:

    .venv/bin/python tools/bench/measurements/graph_read_path.py
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tristore.stores import GraphStore
from tristore.testing.setup import seed_files
from tristore_bench import compare_bench as cb

QUERY, PARAMS = cb.POINT_LOOKUP, cb.LOOKUP_PARAMS
ROUNDS, READS = 15, 40


async def main(data: Path) -> None:
    store = GraphStore(cb._graph_settings(cb.Context(data)), apply_schema=False)
    await store.open()
    loop = asyncio.get_running_loop()
    async with store.readers.acquire() as conn:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            stmt = conn.prepare(QUERY)
    executor = ThreadPoolExecutor(store.settings.graph.readers + 1)

    def raw(c: Any) -> Any:
        return c.execute(stmt, dict(PARAMS)).get_all()

    def cached(c: Any) -> Any:
        return store.prepared.execute(c, QUERY, dict(PARAMS)).get_all()

    cases: dict[str, Callable[[], Awaitable[Any]]] = {
        "raw run_in_executor, same conn": lambda: loop.run_in_executor(executor, raw, conn),
        "GraphStore.run, same conn": lambda: store.run(conn, raw),
        "+ reader pool (GraphStore.read)": lambda: store.read(raw),
        "+ prepared-statement cache": lambda: store.read(cached),
        "+ parameter checks (query_rows)": lambda: store.query_rows(QUERY, PARAMS),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for r in range(ROUNDS):
        for name, op in cases.items() if r % 2 == 0 else reversed(cases.items()):
            start = time.perf_counter()
            for _ in range(READS):
                await op()
            times[name].append((time.perf_counter() - start) / READS)
    base = statistics.median(times["raw run_in_executor, same conn"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:34s} {median * 1e6:7.1f} us  x{median / base:.3f}")
    executor.shutdown()
    await store.close()


if __name__ == "__main__":
    directory = Path(tempfile.mkdtemp(prefix="tristore-read-path-"))
    seed_files(directory / "seeded", "small", seed=7)
    asyncio.run(main(directory))
