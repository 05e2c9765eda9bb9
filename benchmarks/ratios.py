"""In-process ratios: tristore's hot paths against the raw drivers, timed in alternation.

A benchmark process on this shared VM lands in a fast or a slow machine state and keeps it, so
its absolute times move by 15% or more between processes with no change in the code. Both sides
of a ratio measured in the same process, in alternating short batches, share that state, and it
cancels. Each benchmark reports the median over ``ROUNDS`` rounds of (tristore batch time /
reference batch time), the two batches of a round adjacent in time and their order alternating
(ABBA), so a drift in machine speed within the process cancels too.

The operations and their references are :data:`tristore_bench.compare_bench.CASES`, the one
definition ``tristore-bench compare`` (pyperf) also measures, imported from this checkout's
``tools/bench/src`` (HEAD); the library under measurement is the commit asv installed. A case
whose API a commit lacks is skipped at that commit.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from .common import SEED, require

_TOOLS = Path(__file__).resolve().parents[1] / "tools/bench/src"
if str(_TOOLS) not in sys.path:
    sys.path.insert(0, str(_TOOLS))

# What a ratio means: this module and the pairs it runs (tristore_bench.compare_bench.CASES and
# the workloads of tristore_bench.workloads they call), HEAD's. asv versions a benchmark by its
# own source, which misses the pairs, so the version is set by hand: change it when a change to
# the pairs changes what a ratio measures (the series then starts again and is re-measured with
# ``asv run``); leave it when it does not. "registry-1": the references do the registry's
# operation (a pool of POOL_SIZE, the customer INSERT into tristore's schema, the same keys);
# the results measured before carry asv's hash of this file.
RATIO_VERSION = "registry-1"

ROUNDS = 21
BATCH_S = 0.02  # target time of one batch: long against the clock, short against drift

#: param -> (operation, reference implementation), both as named in compare_bench.CASES.
PAIRS: dict[str, tuple[str, str]] = {
    "pool_checkout/asyncio.Queue": ("pool_checkout", "asyncio.Queue"),
    "sqlite_write/sqlite3": ("sqlite_write", "sqlite3"),
    "sqlite_write/aiosqlite": ("sqlite_write", "aiosqlite"),
    "redis_single/redis.asyncio": ("redis_single", "redis.asyncio"),
    "redis_pipeline_100/redis.asyncio": ("redis_pipeline_100", "redis.asyncio"),
    "kuzu_read/kuzu executor": ("kuzu_read", "kuzu executor"),
}


def _compare_bench() -> Any:
    try:
        from tristore_bench import compare_bench
    except ImportError as exc:  # the case definitions need an API this commit lacks
        raise NotImplementedError(f"tristore_bench.compare_bench: {exc}") from exc
    return compare_bench


class DriverRatios:
    """tristore time / raw driver time for the same operation, in one process."""

    params = [list(PAIRS)]
    param_names = ["pair"]
    unit = "ratio"
    version = RATIO_VERSION
    rounds = 1
    repeat = 1
    number = 1
    timeout = 300

    def setup(self, pair: str) -> None:
        for module, *names in (
            ("tristore.testing.floor", "NullConnector"),
            ("tristore.testing.setup", "store_settings", "seed_files"),
        ):
            require(module, *names)
        bench = _compare_bench()
        op, reference = PAIRS[pair]
        by_name = {(c.op, c.impl): c for c in bench.CASES}
        self.bench = bench
        self.cases = (by_name[(op, "tristore")], by_name[(op, reference)])
        self.data_dir = Path(tempfile.mkdtemp(prefix="tristore-asv-ratio-"))
        self.server: Any = None
        if op.startswith("redis"):
            services = require("tristore.services", "RedisServer")
            self.server = services.RedisServer()
            self.server.start()
            os.environ[bench.ENV_REDIS_URL] = str(self.server.url)
        if op.startswith("kuzu"):
            require("tristore.testing.setup").seed_files(
                self.data_dir / "seeded", "small", seed=SEED
            )
        # Open both sides and size the batch on the slower one, before anything is timed.
        self.loops = 1
        for case in self.cases:
            for _ in range(3):
                bench.time_case(10, case, self.data_dir)
        per_op = max(bench.time_case(50, c, self.data_dir) / 50 for c in self.cases)
        self.loops = max(10, int(BATCH_S / per_op))

    def teardown(self, pair: str) -> None:
        bench = getattr(self, "bench", None)
        if bench is not None:
            bench.close_all()
        if getattr(self, "server", None) is not None:
            os.environ.pop(bench.ENV_REDIS_URL, None)
            self.server.stop()
        shutil.rmtree(getattr(self, "data_dir", ""), ignore_errors=True)

    def track_ratio(self, pair: str) -> float:
        tristore, reference = self.cases
        ratios = []
        for i in range(ROUNDS):
            order = (tristore, reference) if i % 2 == 0 else (reference, tristore)
            times = {c.impl: self.bench.time_case(self.loops, c, self.data_dir) for c in order}
            ratios.append(times[tristore.impl] / times[reference.impl])
        return statistics.median(ratios)
