"""The independent probe's reproductions, re-run on the fixed code: the figures after the fix.

Run from the repository root (a few seconds of load; one run at a time beside a measurement):
    .venv/bin/python tools/bench/measurements/probe_figures.py

1. 30 reads of ``UNWIND range(1, 3000000) AS x RETURN sum(x)``, each in ``wait_for(.., 0.02)``,
   one after the other and then 30 at once;
   then the graph calls in flight, their peak, ``RETURN 1``'s latency, RSS, and whether an
   unrelated SQLite write and a coordinated transaction go through.
2. A dead Redis port, ``pool_max=2``, three concurrent requests: how long each waits, and what
   it gets.
3. ``graph.max_threads = 100000``, then ``tristore doctor``: exit code, time, first line.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from tristore.coordinator import Coordinator
from tristore.manager import PoolManager
from tristore.services.redis_server import RedisServer
from tristore.stores import CacheStore
from tristore.testing.setup import store_settings

SLOW_READ = "UNWIND range(1, 3000000) AS x RETURN sum(x)"
MiB = 1024 * 1024


async def cancelled_reads(data_dir: Path, redis_url: str) -> None:
    proc = psutil.Process()
    # No health pings meanwhile: they run on the writer lane too and would count as in flight.
    manager = PoolManager(store_settings(data_dir, redis_url), health_interval=3600)
    await manager.open()
    try:
        graph = manager.graph
        rss0 = proc.memory_info().rss

        async def one() -> str:
            try:
                await asyncio.wait_for(graph.query(SLOW_READ), 0.02)
            except TimeoutError:
                return "timed out"
            return "finished"

        # Sequentially, then all at once: the probe's two ways of cancelling them.
        outcomes = [await one() for _ in range(30)]
        outcomes += await asyncio.gather(*(one() for _ in range(30)))
        counts = {k: outcomes.count(k) for k in set(outcomes)}
        calls = graph.calls()
        start = time.perf_counter()
        await graph.query("RETURN 1")
        return1 = time.perf_counter() - start
        start = time.perf_counter()
        await manager.sqlite.execute("CREATE TABLE IF NOT EXISTS probe (x INTEGER)")
        await manager.sqlite.execute("INSERT INTO probe VALUES (?)", (1,))
        write = time.perf_counter() - start
        coord = Coordinator.for_stores(manager, recovery_interval=None)
        await coord.open()
        try:
            start = time.perf_counter()
            async with coord.transaction() as tx:
                await tx.sql("INSERT INTO probe VALUES (?)", (2,))
                tx.cache("SET", "probe", "1")
            coordinated = time.perf_counter() - start
        finally:
            await coord.close()
        print(
            f"1. 30 + 30 cancelled slow reads: {counts}; afterwards in flight "
            f"{calls['in_flight']}, "
            f"peak in flight {calls['peak_in_flight']} (readers: {graph.settings.graph.readers}), "
            f"withdrawn before starting {calls['cancelled_unstarted']}, interrupted "
            f"{calls['interrupted']} of {calls['interrupts_requested']}; RETURN 1 took "
            f"{return1 * 1e3:.1f} ms; RSS {rss0 / MiB:.0f} -> {proc.memory_info().rss / MiB:.0f} "
            f"MiB; an unrelated SQLite write {write * 1e3:.1f} ms, a coordinated transaction "
            f"{coordinated * 1e3:.1f} ms ({tx.state})"
        )
    finally:
        await manager.close()


async def dead_redis(data_dir: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = store_settings(
        data_dir, f"redis://127.0.0.1:{port}/0", redis={"pool_min": 0, "pool_max": 2}
    )
    cache = CacheStore(settings)
    await cache.open()
    try:

        async def one() -> tuple[str, float]:
            start = time.perf_counter()
            try:
                await cache.get("k")
                outcome = "ok"
            except Exception as exc:
                outcome = type(exc).__name__
            return outcome, time.perf_counter() - start

        results = await asyncio.gather(*(one() for _ in range(3)))
    finally:
        await cache.close()
    print(
        "2. dead Redis, pool_max=2, 3 concurrent requests: "
        + ", ".join(f"{what} after {secs * 1e3:.0f} ms" for what, secs in results)
    )


def huge_thread_count(data_dir: Path) -> None:
    env = {**os.environ, "TRISTORE_GRAPH_MAX_THREADS": "100000", "TRISTORE_DATA_DIR": str(data_dir)}
    tristore = str(Path(sys.executable).with_name("tristore"))
    start = time.perf_counter()
    done = subprocess.run([tristore, "doctor"], capture_output=True, text=True, env=env, timeout=60)
    secs = time.perf_counter() - start
    first = (done.stderr.strip() or done.stdout.strip()).splitlines()[0]
    print(f"3. graph.max_threads=100000, tristore doctor: exit {done.returncode} in {secs:.2f} s")
    print(f"   {first}")


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="tristore-probe-") as tmp, RedisServer() as server:
        await cancelled_reads(Path(tmp) / "a", server.url)
        await dead_redis(Path(tmp) / "b")
        huge_thread_count(Path(tmp) / "c")


if __name__ == "__main__":
    asyncio.run(main())
