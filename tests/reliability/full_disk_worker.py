"""Child of test_coordinator_full_disk.py: coordinated writes until the graph's disk is full.

Run as ``python full_disk_worker.py DATA_DIR GRAPH_DIR ORDERING fill|resume`` with the Redis URL
on the first line of stdin. GRAPH_DIR is a small tmpfs holding only the graph. ``fill``: commit
until the graph has refused work for a while (deferred: committed, the graph part pending; strict:
rolled back), then close everything and exit. The graph store refuses every write after a full
disk until it is opened again (writing on through the same open Kuzu database could abort the
process), so the test grows the disk and starts ``resume``: a new process whose start-up recovery
applies what is pending. Each prints one JSON line and exits normally whatever it found (the test
judges); an engine abort shows as the exit status.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from tristore.coordinator import Coordinator, validate_consistency
from tristore.errors import TristoreError
from tristore.testing.setup import open_stores, store_settings

PAD = "x" * 4000  # a node's size: the 8 MiB disk fills in a few thousand transactions
MAX_TRANSACTIONS = 20_000
REFUSED_ENOUGH = 30


async def fill(data_dir: Path, graph_dir: Path, ordering: str) -> dict[str, Any]:
    url = sys.stdin.readline().strip()
    settings = _settings(data_dir, graph_dir, url)
    committed: list[int] = []
    refused = rolled_back = 0
    async with open_stores(settings) as stores:
        await stores.cache.execute("FLUSHDB")
        coord = Coordinator.for_stores(
            stores, recovery_interval=None, retry_backoff=0.01, ordering=ordering
        )
        await coord.open()
        for n in range(MAX_TRANSACTIONS):
            try:
                async with coord.transaction() as tx:
                    cid = (
                        await tx.sql(
                            "INSERT INTO customers (email, name, country) VALUES (?, ?, 'GB')"
                            " RETURNING id",
                            (f"f{n}@example.com", f"f{n}"),
                        )
                    ).scalar()
                    tx.graph(
                        "CREATE (:Customer {id: $id, name: $name, tier: 'x'})",
                        {"id": cid, "name": f"{n}{PAD}"},
                    )
                    tx.cache("INCR", "committed")
            except TristoreError:
                rolled_back += 1  # strict: the graph refused before the SQLite commit
                refused += 1
            else:
                committed.append(int(cid))
                refused += bool(tx.pending)
            if refused >= REFUSED_ENOUGH:
                break
        await coord.close()
    return {
        "transactions": len(committed) + rolled_back,
        "committed": committed,
        "rolled_back": rolled_back,
        "refused": refused,
    }


async def resume(data_dir: Path, graph_dir: Path, ordering: str) -> dict[str, Any]:
    url = sys.stdin.readline().strip()
    async with open_stores(_settings(data_dir, graph_dir, url)) as stores:
        coord = Coordinator.for_stores(stores, recovery_interval=None, ordering=ordering)
        opened = await coord.open()  # start-up recovery
        deadline = time.monotonic() + 60
        while coord.pending_count() and time.monotonic() < deadline:
            await coord.recover()
            await asyncio.sleep(0.05)
        committed = [r[0] for r in await coord.sqlite.fetchall("SELECT id FROM customers")]
        rows = await coord.graph.query_rows("MATCH (c:Customer) RETURN c.id")
        in_graph = sorted(r[0] for r in rows)
        report = await validate_consistency(coord)
        counted = int(await coord.cache.execute("GET", "committed") or 0)
        letters = await coord.dead_letters()
        pending_left = coord.pending_count()
        await coord.close()
    return {
        "recovered": opened.found,
        "committed": len(committed),
        "pending_left": pending_left,
        "dead_letters": [d.error for d in letters][:3],
        "missing": sorted(set(committed) - set(in_graph))[:5],
        "missing_count": len(set(committed) - set(in_graph)),
        "extra": sorted(set(in_graph) - set(committed))[:5],
        "duplicates": len(in_graph) - len(set(in_graph)),
        "redis_count": counted,
        "drift": [f"{d.kind}: {d.detail}"[:200] for d in report.drift][:5],
    }


def _settings(data_dir: Path, graph_dir: Path, url: str) -> Any:
    return store_settings(
        data_dir,
        url,
        graph={"path": str(graph_dir / "graph.kuzu"), "buffer_pool_bytes": 64 << 20, "readers": 1},
        sqlite={"readers": 1},
    )


if __name__ == "__main__":
    data, graph, order, step = sys.argv[1:5]
    job = fill if step == "fill" else resume
    print(json.dumps(asyncio.run(job(Path(data), Path(graph), order))))
