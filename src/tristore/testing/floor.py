"""Connections that cost nothing, so that a pool measurement times the pool's own work alone.

Shared by the perf checks, ``tristore-bench compare``, the slowdown calibration and the
instruction-count workloads, so that all of them measure exactly the same thing.
(``benchmarks/pools.py`` keeps its own copy: changing a benchmark's source changes its asv
version and would cut its history.)
"""

from __future__ import annotations


class NullConnector:
    """A connector whose connections cost nothing: only the pool's own work is measured."""

    reset_on_return = False  # like the Redis and Kuzu connectors: no reset await on return

    def __init__(self, store: str = "null") -> None:
        self.store = store

    async def connect(self) -> object:
        return object()

    async def close(self, conn: object) -> None:
        return None

    async def check(self, conn: object) -> None:
        return None

    async def reset(self, conn: object) -> bool:
        return True
