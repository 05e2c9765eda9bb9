"""Kuzu and its fork Ladybug behind one GraphStore, one engine per process.

Both native modules register the same pybind11 type names: importing the second one in a process
fails and the process segfaults on exit. So every engine runs in its own interpreter here (a test
worker has kuzu loaded already), and the refusal to load the second engine is itself tested.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tristore.stores.graph import available_engines

pytestmark = pytest.mark.timeout(180)

needs_ladybug = pytest.mark.skipif(
    "ladybug" not in available_engines(), reason="ladybug is not installed"
)

# Seeds the small data set with one engine, then answers the benchmark's reads, writes once and
# hits a Cypher error and a failed BEGIN: everything a caller does through GraphStore.
_ENGINE_SESSION = textwrap.dedent(
    """
    import asyncio, json, sys
    from tristore.errors import QueryError
    from tristore.schema import RECOMMENDATIONS_CYPHER
    from tristore.stores import GraphStore
    from tristore.testing import store_settings
    from tristore.testing.setup import seed_files

    engine, directory = sys.argv[1], sys.argv[2]
    seed_files(directory, "small", seed=7, engine=engine)
    READS = {
        "point": ("MATCH (c:Customer) WHERE c.id = $id RETURN c.name", {"id": 42}),
        "one_hop": (
            "MATCH (c:Customer)-[:PURCHASED]->(p:Product) WHERE c.id = $id RETURN count(p)",
            {"id": 42},
        ),
        "two_hop": (
            "MATCH (c:Customer)-[:FOLLOWS]->(:Customer)-[:PURCHASED]->(p:Product)"
            " WHERE c.id = $id RETURN count(DISTINCT p)",
            {"id": 42},
        ),
        "recommend": (RECOMMENDATIONS_CYPHER, {"product_id": 7, "limit": 5}),
    }

    async def main():
        settings = store_settings(directory).replace(graph={"engine": engine})
        out = {}
        async with GraphStore(settings, apply_schema=False) as g:
            for name, (cypher, params) in READS.items():
                out[name] = await g.query_rows(cypher, params)
                out[name + "_again"] = await g.query_rows(cypher, params)  # prepared reuse
            await g.execute(
                "CREATE (:Customer {id: $id, name: 'new', tier: 'gold'})", {"id": 10_001}
            )
            out["written"] = await g.query_rows(
                "MATCH (c:Customer) WHERE c.id = $id RETURN c.tier", {"id": 10_001}
            )
            try:
                await g.query_rows("MATCH (c:Nope) RETURN c")
            except QueryError as exc:
                out["cypher_error"] = type(exc).__name__
            try:  # a nested BEGIN fails; that writer connection must never be reused
                await g.write([("BEGIN TRANSACTION", None)])
            except QueryError as exc:
                out["failed_begin"] = type(exc).__name__
            await g.execute(
                "CREATE (:Customer {id: $id, name: 'after', tier: 'basic'})", {"id": 10_002}
            )
            out["after_errors"] = await g.query_rows(
                "MATCH (c:Customer) WHERE c.id >= $id RETURN count(c)", {"id": 10_001}
            )
            out["modules"] = sorted(m for m in ("kuzu", "ladybug") if m in sys.modules)
        print(json.dumps(out))

    asyncio.run(main())
    """
)


def _session(engine: str, directory: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", _ENGINE_SESSION, engine, str(directory)],
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert done.returncode == 0, f"{engine} session failed ({done.returncode}):\n{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_available_engines_imports_neither() -> None:
    code = (
        "import sys; from tristore.stores import available_engines; "
        "print(available_engines(), 'kuzu' in sys.modules, 'ladybug' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    engines, kuzu_loaded, ladybug_loaded = done.stdout.rsplit(" ", 2)
    assert "kuzu" in engines
    assert (kuzu_loaded, ladybug_loaded.strip()) == ("False", "False")


@needs_ladybug
@pytest.mark.parametrize(("first", "second"), [("kuzu", "ladybug"), ("ladybug", "kuzu")])
def test_a_second_engine_in_one_process_is_a_typed_error(
    first: str, second: str, tmp_path: Path
) -> None:
    code = textwrap.dedent(
        f"""
        import asyncio
        from tristore.errors import StoreUnavailable
        from tristore.stores import GraphStore
        from tristore.testing import store_settings

        async def main():
            base = store_settings({str(tmp_path)!r})
            async with GraphStore(base.replace(graph={{"engine": {first!r}}})) as g:
                assert await g.query_rows("RETURN 1") == [[1]]
                try:
                    await GraphStore(base.replace(graph={{"engine": {second!r}}})).open()
                except StoreUnavailable as exc:
                    print("refused:", exc)
                # The first engine is untouched by the refusal.
                assert await g.query_rows("RETURN 2") == [[2]]

        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr  # no segfault at exit either
    assert f"graph engine '{second}' cannot be loaded: '{first}' is already loaded" in done.stdout


@needs_ladybug
def test_both_engines_answer_alike(tmp_path: Path) -> None:
    kuzu = _session("kuzu", tmp_path / "kuzu")
    ladybug = _session("ladybug", tmp_path / "ladybug")
    assert kuzu["modules"] == ["kuzu"] and ladybug["modules"] == ["ladybug"]
    for out in (kuzu, ladybug):
        assert out["point"] and out["point"] == out["point_again"]
        assert out["written"] == [["gold"]]
        assert out["cypher_error"] == out["failed_begin"] == "QueryError"
        assert out["after_errors"] == [[2]]
    for key in ("point", "one_hop", "two_hop", "recommend", "written", "after_errors"):
        assert kuzu[key] == ladybug[key], key
