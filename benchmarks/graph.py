"""The graph store: point lookup, 1-hop, 2-hop, recommendations; single writes and bulk COPY.

Parameterized by data-set size and engine (kuzu, and ladybug when installed), so both engines
appear side by side on the site.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from . import common
from .common import AsyncBench, cache_or_skip, require, settings_in, skip_if_unavailable

READS = 50  # queries per timed call
_REGISTRY = common.registry()


def _engines() -> list[str]:
    # From what is installed, not from tristore: the parameter list must be the same at every
    # commit asv measures (the asv matrix installs both engines), or results would not line up.
    return ["kuzu"] + (["ladybug"] if importlib.util.find_spec("ladybug") else [])


ENGINES = _engines()
SIZES = ["small", "large"]


def _require_engine(engine: str) -> None:
    """Skip on commits whose tristore predates choosing the graph engine."""
    if engine != "kuzu":
        require("tristore.stores.graph", "available_engines")


def _seed_in_subprocess(directory: Path, size: str, engine: str) -> None:
    """Seed with one engine in a fresh interpreter: kuzu and ladybug cannot share a process."""
    code = (
        "import sys; from tristore.testing.setup import seed_files; "
        "seed_files(sys.argv[1], sys.argv[2], seed=7, engine=sys.argv[3])"
    )
    args = [sys.executable, "-c", code, str(directory), size, engine]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"seeding {engine}/{size} failed:\n{done.stderr[-2000:]}")


class GraphReads(AsyncBench):
    params = [SIZES, ENGINES]
    param_names = ["size", "engine"]

    @cache_or_skip
    def setup_cache(self) -> dict[str, str]:
        require("tristore.testing.setup", "seed_files")  # skip commits without it
        seeded = {}
        for engine in ENGINES:
            try:
                _require_engine(engine)
            except NotImplementedError:
                continue  # setup() skips this engine's benchmarks at this commit
            for size in SIZES:
                directory = Path(f"seeded-graph-{engine}-{size}").resolve()
                _seed_in_subprocess(directory, size, engine)
                seeded[f"{engine}-{size}"] = str(directory)
        return seeded

    def setup(self, seeded: dict[str, str], size: str, engine: str) -> None:
        skip_if_unavailable(seeded)
        stores = require("tristore.stores", "GraphStore")
        _require_engine(engine)
        schema = require("tristore.schema", "RECOMMENDATIONS_CYPHER")
        self.setup_loop()
        src = Path(seeded[f"{engine}-{size}"]) / "graph.kuzu"
        dst = Path(self.tmpdir) / "graph.kuzu"
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)
        settings = settings_in(self.tmpdir, graph={"engine": engine})
        self.graph: Any = stores.GraphStore(settings, apply_schema=False)
        self.run(self.graph.open())
        self.recommend = schema.RECOMMENDATIONS_CYPHER

    def teardown(self, seeded: dict[str, str], size: str, engine: str) -> None:
        self.close_opened("graph")
        self.teardown_loop()

    def _reads(self, cypher: str, params: dict[str, Any]) -> None:
        self.batch(READS, lambda: self.graph.query_rows(cypher, params))

    def time_point_lookup_x50(self, seeded: dict[str, str], size: str, engine: str) -> None:
        """The registry's graph_point_read (tristore_bench.workloads), 50 times."""
        self._reads(_REGISTRY.POINT_LOOKUP, _REGISTRY.LOOKUP_PARAMS)

    # The version of the series before the lookup moved to the registry (asv's hash of this
    # benchmark's source then): the same query, so its history continues.
    time_point_lookup_x50.version = (  # type: ignore[attr-defined]
        "173c528f1d4bd5a27b11d76d0110fe7b3a2122cf0cb443d7b3043b1e40567bce"
    )

    def time_one_hop_x50(self, seeded: dict[str, str], size: str, engine: str) -> None:
        self._reads(
            "MATCH (c:Customer)-[:PURCHASED]->(p:Product) WHERE c.id = $id RETURN count(p)",
            {"id": 42},
        )

    def time_two_hop_x50(self, seeded: dict[str, str], size: str, engine: str) -> None:
        self._reads(
            "MATCH (c:Customer)-[:FOLLOWS]->(:Customer)-[:PURCHASED]->(p:Product)"
            " WHERE c.id = $id RETURN count(DISTINCT p)",
            {"id": 42},
        )

    def time_recommendations_x50(self, seeded: dict[str, str], size: str, engine: str) -> None:
        self._reads(self.recommend, {"product_id": 7, "limit": 5})


class GraphWrites(AsyncBench):
    params = [ENGINES]
    param_names = ["engine"]

    def setup(self, engine: str) -> None:
        stores = require("tristore.stores", "GraphStore")
        _require_engine(engine)
        self.setup_loop()
        self.graph: Any = stores.GraphStore(settings_in(self.tmpdir, graph={"engine": engine}))
        self.run(self.graph.open())
        self.next_id = 0

    def teardown(self, engine: str) -> None:
        self.close_opened("graph")
        self.teardown_loop()

    def time_single_write_x20(self, engine: str) -> None:
        """20 single-node CREATE transactions through the writer lane."""

        async def many() -> None:
            for _ in range(20):
                self.next_id += 1
                await self.graph.execute(
                    "CREATE (:Customer {id: $id, name: 'n', tier: 'standard'})",
                    {"id": self.next_id},
                )

        self.run(many())


class GraphBulkCopy(AsyncBench):
    params = [ENGINES]
    param_names = ["engine"]
    number = 1
    rounds = 1
    repeat = (2, 4, 4.0)

    def setup(self, engine: str) -> None:
        schema = require("tristore.schema", "generate", "write_graph_csv", "load_graph")
        self.schema = schema
        self.dataset = schema.generate("medium", 7)
        self.engine = require(engine, "Database")
        self.setup_loop()
        self.copies = 0

    def teardown(self, engine: str) -> None:
        self.teardown_loop()

    def time_copy_medium(self, engine: str) -> None:
        """COPY FROM CSV of the medium data set (3k nodes, ~33k edges) into a fresh database."""
        self.copies += 1
        target = Path(self.tmpdir) / f"copy-{self.copies}"
        target.mkdir()
        db = self.engine.Database(str(target / "graph.kuzu"))
        conn = self.engine.Connection(db)
        self.schema.apply_graph_schema(conn)
        self.schema.load_graph(conn, self.dataset, target / "csv")
        conn.close()
        db.close()
