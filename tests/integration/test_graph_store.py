from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tristore.config import Settings
from tristore.errors import QueryError, StoreUnavailable, ValueTooLarge
from tristore.stores import GraphStore
from tristore.testing import store_settings


async def _seed(graph: GraphStore) -> None:
    await graph.write(
        [
            ("CREATE (:Customer {id: $id, name: $name, tier: 'gold'})", {"id": 1, "name": "Ada"}),
            ("CREATE (:Customer {id: $id, name: $name, tier: 'silver'})", {"id": 2, "name": "Bo"}),
            ("CREATE (:Product {id: 10, name: 'Lamp', category: 'home', price: 19.5})", None),
            ("CREATE (:Product {id: 11, name: 'Desk', category: 'home', price: 120.0})", None),
            (
                "MATCH (c:Customer {id: 1}), (p:Product {id: 10}) CREATE (c)-[:VIEWED]->(p)",
                None,
            ),
            (
                "MATCH (a:Customer {id: 1}), (b:Customer {id: 2}) CREATE (a)-[:FOLLOWS]->(b)",
                None,
            ),
        ]
    )


async def test_queries_and_one_hop(graph_store: GraphStore) -> None:
    await _seed(graph_store)
    rows = await graph_store.query(
        "MATCH (c:Customer)-[:VIEWED]->(p:Product) WHERE c.id = $id RETURN p.name AS name",
        {"id": 1},
    )
    assert rows == [{"name": "Lamp"}]
    follows = await graph_store.query_rows(
        "MATCH (:Customer {id: 1})-[:FOLLOWS]->(b:Customer) RETURN b.name"
    )
    assert follows == [["Bo"]]
    assert await graph_store.version() == "0.11.3"


async def test_failed_transaction_applies_nothing_and_discards_connection(
    graph_store: GraphStore,
) -> None:
    await _seed(graph_store)
    discarded_before = graph_store.writer.stats()["connections_discarded"]
    with pytest.raises(QueryError, match="Parser"):
        await graph_store.write(
            [
                ("CREATE (:Customer {id: 3, name: 'Cy', tier: 'gold'})", None),
                ("MATCH (n RETURN n", None),
            ]
        )
    assert await graph_store.query_rows("MATCH (c:Customer) RETURN count(c)") == [[2]]
    assert graph_store.writer.stats()["connections_discarded"] == discarded_before + 1
    # A fresh writer connection serves the next write.
    await graph_store.execute("CREATE (:Customer {id: 3, name: 'Cy', tier: 'gold'})")
    assert await graph_store.query_rows("MATCH (c:Customer) RETURN count(c)") == [[3]]


async def test_wrong_typed_parameter_is_a_query_error(graph_store: GraphStore) -> None:
    await _seed(graph_store)
    with pytest.raises(QueryError):
        await graph_store.query("MATCH (c:Customer) WHERE c.id = $id RETURN c", {"id": "one"})
    with pytest.raises(QueryError):
        await graph_store.query("MATCH (c:Customer) WHERE c.id = $id RETURN c", {"id": object()})


async def test_oversized_value_refused(graph_store: GraphStore) -> None:
    limit = graph_store.settings.graph.max_value_bytes
    with pytest.raises(ValueTooLarge):
        await graph_store.execute(
            "CREATE (:Customer {id: 9, name: $name, tier: 'gold'})", {"name": "x" * (limit + 1)}
        )


async def test_fifty_concurrent_writers_queue_instead_of_failing(graph_store: GraphStore) -> None:
    async def create(i: int) -> None:
        await graph_store.execute(
            "CREATE (:Customer {id: $id, name: $name, tier: 'standard'})",
            {"id": 100 + i, "name": f"c{i}"},
        )

    await asyncio.gather(*(create(i) for i in range(50)))
    assert await graph_store.query_rows("MATCH (c:Customer) RETURN count(c)") == [[50]]


async def test_one_database_per_path_per_process(tristore_settings: Settings) -> None:
    async with GraphStore(tristore_settings) as a, GraphStore(tristore_settings) as b:
        assert a.shared is b.shared
        await a.execute("CREATE (:Customer {id: 1, name: 'A', tier: 'gold'})")
        assert await b.query_rows("MATCH (c:Customer) RETURN count(c)") == [[1]]


async def test_path_locked_by_another_process(tmp_path: Path) -> None:
    settings = store_settings(tmp_path)
    path = settings.graph_path
    path.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import kuzu, sys, time; db = kuzu.Database(sys.argv[1]); print('ready', flush=True);"
            " time.sleep(30)",
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        store = GraphStore(settings)
        with pytest.raises(StoreUnavailable, match="locked by another process"):
            await store.open()
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
async def test_read_only_path(tmp_path: Path) -> None:  # pragma: no cover - root in CI
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    settings = store_settings(tmp_path).replace(graph={"path": str(ro / "g" / "graph.kuzu")})
    with pytest.raises(StoreUnavailable):
        await GraphStore(settings).open()


async def test_read_only_path_as_a_file_in_the_way(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a directory should be")
    settings = store_settings(tmp_path).replace(graph={"path": str(blocker / "graph.kuzu")})
    store = GraphStore(settings)
    with pytest.raises(StoreUnavailable, match="graph"):
        await store.open()


_CANCEL_THEN_CLOSE = """
import asyncio, sys
from tristore.stores import GraphStore
from tristore.testing import store_settings

async def main() -> None:
    for i in range(10):
        g = GraphStore(store_settings(sys.argv[1] + f"/{i}"))
        await g.open()
        await g.execute(
            "UNWIND range(1, 3000) AS i CREATE (:Customer {id: i, name: 'x', tier: 'gold'})"
        )
        slow = "MATCH (a:Customer), (b:Customer) WHERE a.id < 200 RETURN count(*)"
        tasks = [asyncio.create_task(g.query_rows(slow)) for _ in range(6)]
        await asyncio.sleep(0.005)
        for t in tasks:
            t.cancel()
        await g.close()
    print("survived")

asyncio.run(main())
"""


def test_cancelled_queries_then_close_do_not_crash(tmp_path: Path) -> None:
    # Closing a connection or database under a query still running in a worker thread
    # segfaults Kuzu; run in a child so a crash fails this test instead of the worker.
    done = subprocess.run(
        [sys.executable, "-c", _CANCEL_THEN_CLOSE, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "survived"
    assert "never retrieved" not in done.stderr
