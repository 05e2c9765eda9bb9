"""Python blocks left behind by repeated 2 s stress runs, the Redis pool pinned at 20.

Prints, per run: operations, errors, blocks grown since the warm-up, blocks per operation so far,
and the Redis pool's size (it must stay at the pin). Output: ``pinned-pool-probe.txt``.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import tempfile
from pathlib import Path

from tristore.config import Settings
from tristore.flows.env import open_env
from tristore.flows.scenarios import database_stress_test

RUNS = 8


async def main() -> None:
    settings = Settings().replace(redis={"pool_min": 20, "pool_max": 20})
    with tempfile.TemporaryDirectory() as directory:
        async with open_env(settings, size="small", data_dir=Path(directory)) as env:
            await database_stress_test(env.pipeline, duration=2, users=10)  # warm-up
            gc.collect()
            before = sys.getallocatedblocks()
            operations = 0
            for run in range(RUNS):
                report = await database_stress_test(env.pipeline, duration=2, users=10)
                gc.collect()
                grown = sys.getallocatedblocks() - before
                operations += report.operations
                pool_size = env.manager.pools()["redis"].stats()["pool_size"]
                print(run, report.operations, report.errors, grown, grown / operations, pool_size)


if __name__ == "__main__":
    asyncio.run(main())
