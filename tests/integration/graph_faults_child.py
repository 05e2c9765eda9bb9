"""The child process of test_graph_faults.py: one fault scenario, its outcome printed as JSON.

Each scenario runs here, not in the test process, so that an engine crash shows as this process's
exit status (a failed test), not as a dead test run. Usage::

    python graph_faults_child.py open ENGINE GRAPH_FILE
    python graph_faults_child.py full|full-batches|full-close|resume ENGINE TMPFS_DIR
    python graph_faults_child.py release|release-keeping-the-error ENGINE DATA_DIR

It uses only what the library had before the fixes (so the same file runs against an old tree).
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tristore.config import Settings
from tristore.errors import QueryError, StoreUnavailable, TristoreError
from tristore.stores import GraphStore


def _probes() -> int | None:
    try:
        from tristore.stores import graph_probe
    except ImportError:  # an old tree: no probe
        return None
    return graph_probe.probes_run


def _error(exc: BaseException) -> dict[str, Any]:
    return {"type": type(exc).__name__, "message": " ".join(str(exc).split())[:600]}


# -- open: a (possibly corrupt) graph file --------------------------------------------------------
async def open_file(engine: str, path: str) -> dict[str, Any]:
    settings = Settings(data_dir=str(Path(path).parent)).replace(
        graph={"engine": engine, "path": path}
    )
    graph = GraphStore(settings)
    try:
        await graph.open()
    except StoreUnavailable as exc:
        return {"outcome": "unavailable", "probes": _probes(), **_error(exc)}
    except BaseException as exc:  # untyped: what the test must never see
        return {"outcome": "untyped", "probes": _probes(), **_error(exc)}
    try:
        counts = {
            label: (await graph.query(f"MATCH (n:{label}) RETURN count(*) AS n"))[0]["n"]
            for label in ("Customer", "Product")
        }
        counts["PURCHASED"] = (
            await graph.query("MATCH ()-[r:PURCHASED]->() RETURN count(*) AS n")
        )[0]["n"]
    except TristoreError as exc:
        return {"outcome": "opened-query-error", "probes": _probes(), **_error(exc)}
    finally:
        await graph.close()
    return {"outcome": "opened", "counts": counts, "probes": _probes()}


# -- full: the graph directory on a small tmpfs, written until full -------------------------------
CREATE_CUSTOMER = "CREATE (:Customer {id: $id, name: $name, tier: 's'})"


async def _fill(graph: GraphStore, per_tx: int) -> tuple[list[int], list[dict[str, Any]]]:
    """Write 20 KB nodes, ``per_tx`` a transaction, until the store has refused 20 writes."""
    acked: list[int] = []
    errors: list[dict[str, Any]] = []
    name = "x" * 20_000  # the 8 MiB fill up within a few hundred nodes
    i = 0
    while len(errors) < 20 and i < 5_000:
        i += 1
        ids = [i * 100 + k for k in range(per_tx)]
        try:
            await graph.write([(CREATE_CUSTOMER, {"id": n, "name": name}) for n in ids])
            acked.extend(ids)
        except TristoreError as exc:
            errors.append(_error(exc) | {"unavailable": isinstance(exc, StoreUnavailable)})
    return acked, errors


async def _resume(settings: Settings) -> dict[str, Any]:
    """A new store on the same path: ten more writes, then what a fresh store reads back."""
    graph = GraphStore(settings)
    await graph.open()
    resumed: list[int] = []
    after: list[dict[str, Any]] = []
    for j in range(10_000_001, 10_000_011):
        try:
            await graph.execute("CREATE (:Customer {id: $id, name: 'r', tier: 's'})", {"id": j})
            resumed.append(j)
        except TristoreError as exc:
            after.append(_error(exc))
    await graph.close()
    graph = GraphStore(settings)
    await graph.open()
    try:
        rows = await graph.query("MATCH (c:Customer) RETURN c.id AS id")
    finally:
        await graph.close()
    present = {row["id"] for row in rows}
    return {
        "present": sorted(i for i in present if i < 10_000_001),
        "resumed": len(resumed),
        "errors_after_free": after,
        "missing_resumed": sorted(set(resumed) - present),
    }


def _grow(directory: str) -> None:
    """Free space: the tmpfs grows (as a user deleting files elsewhere on the disk would)."""
    subprocess.run(["mount", "-o", "remount,size=256m", directory], check=True)


def _full_report(acked: list[int], errors: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "acked": acked,
        "errors": errors,
        "query_errors": sum(e["type"] == QueryError.__name__ for e in errors),
    }


async def fill_disk(engine: str, directory: str, per_tx: int = 1) -> dict[str, Any]:
    """Fill; free the space; the same store, then a store opened again in this process."""
    settings = Settings(data_dir=directory).replace(graph={"engine": engine})
    graph = GraphStore(settings)
    await graph.open()
    acked, errors = await _fill(graph, per_tx)
    _grow(directory)
    # The open store still refuses writes (typed), and reads go on.
    refused: list[dict[str, Any]] = []
    try:
        await graph.execute("CREATE (:Customer {id: 0, name: 'r', tier: 's'})")
    except TristoreError as exc:
        refused.append(_error(exc) | {"unavailable": isinstance(exc, StoreUnavailable)})
    count = (await graph.query("MATCH (c:Customer) RETURN count(*) AS n"))[0]["n"]
    needs_reopen = getattr(graph, "needs_reopen", None)
    await graph.close()
    return (
        _full_report(acked, errors)
        | {"refused_after_free": refused, "read_after_free": count, "needs_reopen": needs_reopen}
        | await _resume(settings)
    )


async def fill_disk_and_close(engine: str, directory: str) -> dict[str, Any]:
    """Fill, then close the store while the disk is still full, and exit."""
    settings = Settings(data_dir=directory).replace(graph={"engine": engine})
    graph = GraphStore(settings)
    await graph.open()
    acked, errors = await _fill(graph, 1)
    await graph.close()
    return _full_report(acked, errors)


async def resume(engine: str, directory: str) -> dict[str, Any]:
    """After a process that closed on a full disk exited: what is there, and writes go on."""
    return await _resume(Settings(data_dir=directory).replace(graph={"engine": engine}))


# -- release: a failed coordinated graph op, then close and reopen --------------------------------
_OPEN_ELSEWHERE = (
    "import importlib, sys; engine = importlib.import_module(sys.argv[1]); "
    "engine.Database(sys.argv[2]).close()"
)


async def release(engine: str, directory: str, keep_error: bool = False) -> dict[str, Any]:
    from tristore.coordinator import Coordinator
    from tristore.stores import CacheStore, SQLiteStore

    # No automatic collection in this scenario: a collection at a lucky moment (it frees a cycle
    # that holds the engine's connection) must not make it pass.
    gc.disable()
    settings = Settings(data_dir=directory).replace(
        graph={"engine": engine}, redis={"pool_min": 1, "pool_max": 4}
    )
    sqlite, graph, cache = SQLiteStore(settings), GraphStore(settings), CacheStore(settings)
    for store in (sqlite, graph, cache):
        await store.open()
    # Strict: the graph op runs in a Kuzu transaction before the SQLite commit, and its failure
    # fails the transaction. (A tree without the option ran graph ops before the commit anyway.)
    strict = "ordering" in inspect.signature(Coordinator.transaction).parameters
    options = {"ordering": "strict"} if strict else {}
    coordinator = Coordinator(sqlite, graph, cache)
    await coordinator.open()
    await graph.execute("CREATE (:Product {id: 1, name: 'a', category: 'c', price: 1.0})")
    kept: list[BaseException] = []

    async def order(bad: bool) -> dict[str, Any] | None:
        try:
            async with coordinator.transaction(**options) as tx:
                await tx.sql("SELECT 1")
                tx.graph("MATCH (p:Product {id: 1}) SET p.price = p.price + 1")
                if bad:  # a duplicate primary key: only Kuzu's write transaction can find it
                    tx.graph("CREATE (:Product {id: 1, name: 'dup', category: 'c', price: 2.0})")
        except TristoreError as exc:
            if keep_error:
                kept.append(exc)  # as a caller that logs or re-raises it later would
            return _error(exc)
        return None

    # Concurrent orders on one product, every fifth with a bad graph op.
    outcomes = await asyncio.gather(*(order(i % 5 == 0) for i in range(20)))
    failure = [outcome for outcome in outcomes if outcome is not None]
    await coordinator.close()
    for store in (cache, graph, sqlite):
        await store.close()
    # Another process opens the file (the engine's lock is per process: this one could open it
    # even while its own old Database still held it)...
    other = subprocess.run(
        [sys.executable, "-c", _OPEN_ELSEWHERE, engine, str(settings.graph_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if other.returncode != 0:
        lines = [line.strip() for line in other.stderr.splitlines() if line.strip()]
        return {"failure": failure, "reopened": False, "elsewhere": lines[-2:]}
    # ...and then this process again, without a gc.collect() in between.
    again = GraphStore(settings)
    try:
        await again.open()
    except StoreUnavailable as exc:
        return {"failure": failure, "reopened": False, **_error(exc)}
    rows = await again.query("MATCH (p:Product) RETURN p.id AS id, p.price AS price")
    await again.close()
    return {"failure": failure, "reopened": True, "products": rows}


def main() -> None:
    scenario, engine, where = sys.argv[1:4]
    scenarios = {
        "open": open_file,
        "full": fill_disk,
        "full-batches": lambda engine, where: fill_disk(engine, where, 10),
        "full-close": fill_disk_and_close,
        "resume": resume,
        "release": release,
        "release-keeping-the-error": lambda engine, where: release(engine, where, True),
    }
    print(json.dumps(asyncio.run(scenarios[scenario](engine, where))))


if __name__ == "__main__":
    main()
