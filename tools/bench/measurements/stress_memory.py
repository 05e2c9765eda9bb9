"""Where the stress scenario's RSS growth goes: a leak, or caches filling as the data grows?

Run from the repository root (one run at a time: it is a measurement):
    .venv/bin/python tools/bench/measurements/stress_memory.py [DURATION_S] [KEY=VALUE...]
e.g. ``... 300 sqlite.cache_size=2000 graph.buffer_pool_bytes=33554432``.

It runs ``database_stress_test`` in this process (as ``tristore load`` does) and every 10 s
samples: RSS; Python's allocated blocks (a Python-level leak grows them without bound); the
SQLite library's own heap (``sqlite3_memory_used``: page caches and statements of every
connection); the size of the data directory, SQLite and Kuzu files (the data the caches fill
with). The remainder, RSS minus SQLite's heap, is mostly Kuzu's buffer pool and allocator arenas.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import json
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from tristore.config import Settings
from tristore.flows.env import open_env
from tristore.flows.scenarios import SCENARIOS

MiB = 1024 * 1024


def _sqlite_heap() -> ctypes._CFuncPtr | None:
    # The stdlib's _sqlite3 links the system libsqlite3: the same library, the same counters.
    name = ctypes.util.find_library("sqlite3")
    if name is None:
        return None
    fn = ctypes.CDLL(name).sqlite3_memory_used
    fn.restype = ctypes.c_int64
    return fn


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _overrides(args: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for arg in args:
        key, value = arg.split("=", 1)
        section, name = key.split(".", 1)
        out.setdefault(section, {})[name] = int(value)
    return out


async def main(duration: float, overrides: dict[str, dict[str, Any]]) -> None:
    proc = psutil.Process()
    heap = _sqlite_heap()
    samples: list[dict[str, float]] = []
    fn, _default = SCENARIOS["database_stress_test"]
    settings = Settings().replace(**overrides) if overrides else Settings()
    async with open_env(settings, size="small", seed=0) as env:
        start = time.monotonic()

        async def sample() -> None:
            while True:
                samples.append(
                    {
                        "t_s": round(time.monotonic() - start, 1),
                        "rss_mib": proc.memory_info().rss / MiB,
                        "py_blocks": sys.getallocatedblocks(),
                        "sqlite_heap_mib": (heap() / MiB) if heap else float("nan"),
                        "data_dir_mib": _dir_bytes(env.data_dir) / MiB,
                    }
                )
                print(json.dumps(samples[-1]), flush=True)
                await asyncio.sleep(10)

        sampler = asyncio.create_task(sample())
        report = await fn(env.pipeline, duration=duration, progress=lambda _p: None)
        sampler.cancel()
        data = report.to_dict()
    print(
        json.dumps(
            {
                "overrides": overrides,
                "duration_s": data["duration_s"],
                "operations": data["operations"],
                "errors": data["errors"],
                "rss_growth_after_warmup_mib": data["rss_growth_after_warmup_bytes"] / MiB,
                "rss_growth_mib": data["rss_growth_bytes"] / MiB,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1]) if len(sys.argv) > 1 else 300.0, _overrides(sys.argv[2:])))
