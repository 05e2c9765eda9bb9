"""Instruction counts of the CPU-bound hot paths, under callgrind: deterministic across runs.

Wall time on this shared VM moves by 15% or more between processes with the machine's state; the
number of instructions an operation executes does not (repeated runs agree within 0.5%, see
``tools/bench/measurements/instructions-stability.txt``), so these series can carry thresholds of
a few percent. Each benchmark runs its workload (:mod:`tristore_bench.workloads`) at N and 2N
operations in two valgrind processes and reports ``(I(2N) - I(N)) / N`` instructions per
operation; start-up, opening the stores and warm-up are outside callgrind's counted region.

What instructions cannot see (thread hops, lock waits, I/O, the servers' own work) stays with the
wall-time benchmarks of the other modules.

Needs valgrind (the Debian package ``valgrind``) and setarch; without them every benchmark here
is skipped with that reason, never failed and never given a made-up number. The counting code
comes from this checkout's ``tools/bench/src`` (HEAD), the library under measurement from the
commit asv installed; a workload whose API a commit lacks is skipped at that commit.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

from .common import require

_TOOLS = Path(__file__).resolve().parents[1] / "tools/bench/src"
if str(_TOOLS) not in sys.path:
    sys.path.insert(0, str(_TOOLS))


def _definition_version() -> str:
    """What a count means: this module, the counting code and the workloads (HEAD's tools).

    asv versions a benchmark by its own source only, and a count also depends on the code this
    module imports from ``tools/bench``. Results whose version differs are left out of the site
    and of regression detection, so a change to how something is counted starts the series
    again (re-measure with ``asv run``) instead of reading as a change in the library.
    """
    digest = hashlib.sha256()
    for path in (
        Path(__file__),
        _TOOLS / "tristore_bench" / "instructions.py",
        _TOOLS / "tristore_bench" / "workloads.py",
    ):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _instructions() -> Any:
    try:
        from tristore_bench import instructions
    except ImportError as exc:  # a checkout without the tooling distribution
        raise NotImplementedError("tristore_bench.instructions is not available") from exc
    return instructions


class _Instructions:
    """One workload's instructions per operation; subclasses name it and the API it needs."""

    workload = ""
    needs: tuple[tuple[str, ...], ...] = ()  # (module, *names) that the workload imports

    # A count is exact: one process, one sample. Timeout: two valgrind processes of up to ~40 s
    # each on this machine (order_flow), plus seeding, with room for a loaded host.
    rounds = 1
    repeat = 1
    number = 1
    timeout = 900
    version = _definition_version()

    def setup(self) -> None:
        instructions = _instructions()
        reason = instructions.available()
        if reason is not None:
            raise NotImplementedError(reason)
        for module, *names in self.needs:
            require(module, *names)
        self.instructions = instructions

    def track_instructions(self) -> float:
        return float(self.instructions.count(self.workload))

    track_instructions.unit = "instructions"  # type: ignore[attr-defined]


class PoolCheckout(_Instructions):
    """tristore.pool: one checkout + return, over connections that cost nothing."""

    workload = "pool_checkout"
    needs = (("tristore.pool", "Pool", "PoolConfig"), ("tristore.testing.floor", "NullConnector"))


class SQLiteWrite(_Instructions):
    """SQLiteStore.execute: one single-row INSERT transaction, writer-thread hop included."""

    workload = "sqlite_write"
    needs = (("tristore.stores", "SQLiteStore"),)


class CoordinatedTransaction(_Instructions):
    """One Coordinator transaction (client side): 2 rows, 2 graph ops, 2 cache ops."""

    workload = "coordinated_tx"
    needs = (
        ("tristore.stores", "SQLiteStore", "GraphStore", "CacheStore"),
        ("tristore.coordinator", "Coordinator"),
        ("tristore.services", "RedisServer"),
    )


class RedisPipeline(_Instructions):
    """CacheStore.pipeline of 100 SETs (client side; the server is another, uncounted process)."""

    workload = "redis_pipeline"
    needs = (("tristore.stores", "CacheStore"), ("tristore.services", "RedisServer"))


class GraphPointRead(_Instructions):
    """GraphStore.query_rows: a parameterised point lookup on the seeded small graph (Kuzu)."""

    workload = "graph_point_read"
    needs = (("tristore.stores", "GraphStore"), ("tristore.testing.setup", "seed_files"))


class OrderFlow(_Instructions):
    """OrderPipeline.place_order: one order through SQLite, Kuzu and Redis (client side)."""

    workload = "order_flow"
    needs = (
        ("tristore.flows", "open_env"),
        ("tristore.testing.setup", "seed_files"),
        ("tristore.services", "RedisServer"),
    )
