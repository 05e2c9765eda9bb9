"""Instruction counts of the CPU-bound hot paths, under callgrind: deterministic across runs.

Wall time on this shared VM moves by 15% or more between processes with the machine's state; the
number of instructions an operation executes does not (repeated counts of one commit agree within
a fraction of a percent: ``tristore-bench count-noise``, ``tools/bench/count-noise.json``), so
these series can carry thresholds of a few percent. Each benchmark runs its workload
(:mod:`tristore_bench.workloads`) at N and 2N operations in two valgrind processes and reports
``(I(2N) - I(N)) / N`` instructions per operation; start-up, opening the stores and warm-up
are outside callgrind's counted region.

What instructions cannot see (thread hops, lock waits, I/O, the servers' own work) stays with the
wall-time benchmarks of the other modules.

Needs valgrind (the Debian package ``valgrind``) and setarch; without them every benchmark here
is skipped with that reason, never failed and never given a made-up number. The counting code
comes from this checkout's ``tools/bench/src`` (HEAD), the library under measurement from the
commit asv installed; a workload whose API a commit lacks is skipped at that commit.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

_TOOLS = Path(__file__).resolve().parents[1] / "tools/bench/src"
if str(_TOOLS) not in sys.path:
    sys.path.insert(0, str(_TOOLS))


# What a count means: this module, the counting code (tristore_bench.instructions) and the
# workload definitions (tristore_bench.workloads), all HEAD's. asv versions a benchmark by its own
# source, which would miss the other two; results of another version are left out of the site
# and of regression detection. So this string is the version, set by hand: change it when a
# change to any of the three changes what a count measures (the series then starts again, and
# is re-measured with ``asv run``); leave it when a change does not (a refactoring, a workload
# added), so the history continues. It was the SHA-256 (first 16 hex digits) of the three files
# while the version was computed from them, and the committed results carry it.
COUNT_VERSION = "c5479e8e17be9af4"


def _instructions() -> Any:
    try:
        from tristore_bench import instructions
    except ImportError as exc:  # a checkout without the tooling distribution
        raise NotImplementedError("tristore_bench.instructions is not available") from exc
    return instructions


class _Instructions:
    """One workload's instructions per operation; subclasses name it (the API it needs is the
    workload's own ``NEEDS`` entry in :mod:`tristore_bench.workloads`)."""

    workload = ""

    # A count is exact: one process, one sample. Timeout: two valgrind processes of up to ~40 s
    # each on this machine (order_flow), plus seeding, with room for a loaded host.
    rounds = 1
    repeat = 1
    number = 1
    timeout = 900
    version = COUNT_VERSION

    def setup(self) -> None:
        instructions = _instructions()
        reason = instructions.available()
        if reason is not None:
            raise NotImplementedError(reason)
        from tristore_bench import workloads

        lacking = workloads.missing(self.workload)
        if lacking is not None:
            raise NotImplementedError(lacking)
        self.instructions = instructions

    def track_instructions(self) -> float:
        return float(self.instructions.count(self.workload))

    track_instructions.unit = "instructions"  # type: ignore[attr-defined]


class PoolCheckout(_Instructions):
    """tristore.pool: one checkout + return, over connections that cost nothing."""

    workload = "pool_checkout"


class SQLiteWrite(_Instructions):
    """SQLiteStore.execute: one single-row INSERT transaction, writer-thread hop included."""

    workload = "sqlite_write"


class CoordinatedTransaction(_Instructions):
    """One Coordinator transaction (client side): 2 rows, 2 graph ops, 2 cache ops."""

    workload = "coordinated_tx"


class RedisPipeline(_Instructions):
    """CacheStore.pipeline of 100 SETs (client side; the server is another, uncounted process)."""

    workload = "redis_pipeline"


class GraphPointRead(_Instructions):
    """GraphStore.query_rows: a parameterised point lookup on the seeded small graph (Kuzu)."""

    workload = "graph_point_read"


class OrderFlow(_Instructions):
    """OrderPipeline.place_order: one order through SQLite, Kuzu and Redis (client side)."""

    workload = "order_flow"
