"""The plugin as a user meets it: a separate project, no conftest from this repository.

Each test writes a throwaway project into ``tmp_path`` and runs ``python -m pytest`` there, so
the fixtures come only from the installed ``pytest11`` entry point. The project runs
pytest-asyncio in its default (strict) mode. ``README_EXAMPLE`` is the example printed in the
README ("Testing your code against real stores"): this test keeps it working.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

README_CONFIG = """\
[pytest]
asyncio_default_fixture_loop_scope = function
"""

README_EXAMPLE = """\
import asyncio
import json

import pytest

from tristore.errors import QueryError
from tristore.schema import REFRESH_ANALYTICS_SQL, calculate_total_py, order_amounts_py
from tristore.testing import (
    Factory,
    assert_absent,
    assert_computed_columns,
    assert_consistent,
    assert_referential_integrity,
)

pytestmark = pytest.mark.asyncio  # strict mode; drop it under asyncio_mode = auto


async def test_sqlite_computes_the_order_amounts(factory, sqlite_store):
    order = await factory.order(price=19.99, quantity=3, discount=0.15)
    assert (order.total_price, order.discount_amount, order.final_price) == order_amounts_py(
        19.99, 3, 0.15
    )
    await assert_computed_columns(sqlite_store)  # every row against the business rule


async def test_the_stored_function(factory, sqlite_store):
    order = await factory.order(price=10.0, quantity=3, discount=0.1)
    (total,) = await sqlite_store.fetchone(
        "SELECT calculate_total(price, quantity, discount, 0.2) FROM orders WHERE id = ?",
        (order.id,),
    )
    assert total == calculate_total_py(10.0, 3, 0.1, 0.2) == 32.4


async def test_a_failed_transaction_leaves_no_trace(factory, sqlite_store):
    customer = await factory.customer(tier="standard")
    with pytest.raises(RuntimeError):
        async with sqlite_store.transaction() as conn:
            await conn.aio.execute("UPDATE customers SET tier = 'gold' WHERE id = ?", [customer.id])
            raise RuntimeError("payment declined")
    row = await sqlite_store.fetchone("SELECT tier FROM customers WHERE id = ?", (customer.id,))
    assert row == ("standard",)


async def test_customer_order_analytics_across_the_stores(stores):
    make = Factory(stores.sqlite, graph=stores.graph)  # mirrors rows into the graph
    order = await make.order(quantity=2, created_at="2026-11-05 10:00:00")
    await stores.sqlite.execute(
        REFRESH_ANALYTICS_SQL, {"period": "2026-11", "customer_id": order.customer_id}
    )
    spent = await stores.sqlite.fetchone(
        "SELECT total_spent FROM analytics WHERE customer_id = ?", (order.customer_id,)
    )
    assert spent == (order.final_price,)
    key = f"order:{order.id}"
    await stores.cache.execute("HSET", key, "status", order.status, "quantity", order.quantity)
    await assert_consistent(stores, "order", order.id, cache_key=key)  # SQLite = graph = Redis
    await assert_referential_integrity(stores.sqlite)
    with pytest.raises(QueryError, match="FOREIGN KEY"):
        await make.order(customer_id=424242)
    await assert_absent(stores, "order", order.id + 1)


async def test_fifty_concurrent_orders(factory, sqlite_store):
    orders = await asyncio.gather(*(factory.order() for _ in range(50)))
    assert len({o.id for o in orders}) == 50
    assert (await assert_computed_columns(sqlite_store))["orders"] == 50


async def test_a_subscriber_receives_the_event(redis_store):
    async with redis_store.client() as conn:
        pubsub = conn.pubsub()
        await pubsub.subscribe("orders")
        await redis_store.publish("orders", json.dumps({"event": "order_created", "order_id": 7}))
        async with asyncio.timeout(10):
            message = None
            while message is None:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
        await pubsub.aclose()
    assert json.loads(message["data"]) == {"event": "order_created", "order_id": 7}


async def test_unknown_factory_field(factory):
    with pytest.raises(TypeError, match="unknown field 'qty'"):
        await factory.order(qty=2)
"""


def run_pytest(
    project: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """``python -m pytest`` in ``project`` as a user would run it, bounded in time."""
    # Variables of the outer run (xdist worker ids, addopts, tristore settings) stay out.
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "TRISTORE_"))}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=project,
        env=clean | (env or {}),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_readme_example_runs_in_a_separate_project(tmp_path: Path) -> None:
    project = _write(
        tmp_path / "shop", {"pytest.ini": README_CONFIG, "tests/test_orders.py": README_EXAMPLE}
    )
    result = run_pytest(project, "-q", "--basetemp", str(tmp_path / "basetemp"))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert re.search(r"\b7 passed\b", result.stdout), output


FAILING_PROJECT = {
    "pytest.ini": README_CONFIG,
    "test_fine.py": textwrap.dedent(
        """
        import pytest

        @pytest.mark.asyncio
        async def test_sqlite_and_graph_need_no_redis(sqlite_store, graph_store):
            assert await sqlite_store.fetchone("SELECT count(*) FROM orders") == (0,)
            assert await graph_store.query_rows("MATCH (n) RETURN count(n)") == [[0]]
        """
    ),
    "test_cache.py": textwrap.dedent(
        """
        import pytest

        @pytest.mark.asyncio
        async def test_needs_redis(redis_store):
            await redis_store.set("k", "v")
        """
    ),
    "badgraph/conftest.py": textwrap.dedent(
        """
        import sys

        import pytest

        sys.modules["ladybug"] = None  # as if it were not installed

        @pytest.fixture
        def tristore_overrides():
            return {"graph": {"engine": "ladybug"}}
        """
    ),
    "badgraph/test_graph_engine.py": textwrap.dedent(
        """
        import pytest

        @pytest.mark.asyncio
        async def test_needs_ladybug(graph_store):
            pass
        """
    ),
    "badpath/conftest.py": textwrap.dedent(
        """
        import pytest

        @pytest.fixture
        def tristore_overrides():
            return {"sqlite": {"path": "/tmp/everyone-shares-this.db"}}
        """
    ),
    "badpath/test_shared_path.py": textwrap.dedent(
        """
        import pytest

        @pytest.mark.asyncio
        async def test_shared_path(sqlite_store):
            pass
        """
    ),
}


def test_without_pytest_asyncio_pytest_still_runs_and_store_tests_say_why(tmp_path: Path) -> None:
    # A module that fails to import stands in for a missing pytest-asyncio; `-p no:asyncio`
    # keeps pytest from loading the real plugin through its entry point.
    shadow = _write(tmp_path / "shadow", {"pytest_asyncio.py": "raise ImportError('absent')\n"})
    project = _write(
        tmp_path / "plain",
        {
            "pytest.ini": "[pytest]\n",
            "test_plain.py": textwrap.dedent(
                """
                def test_unrelated():
                    assert 1 + 1 == 2

                def test_wants_a_store(sqlite_store):
                    pass
                """
            ),
        },
    )
    result = run_pytest(
        project,
        "-q",
        "-p",
        "no:asyncio",
        "--basetemp",
        str(tmp_path / "basetemp"),
        env={"PYTHONPATH": str(shadow)},
    )
    out = result.stdout
    assert re.search(r"\b1 passed, 1 error\b", out), out + result.stderr
    assert "tristore: sqlite_store needs pytest-asyncio: pip install pytest-asyncio" in out


def test_a_store_that_cannot_start_is_a_setup_error_naming_it(tmp_path: Path) -> None:
    project = _write(tmp_path / "broken", FAILING_PROJECT)
    result = run_pytest(
        project,
        "-q",
        "-rE",
        "--basetemp",
        str(tmp_path / "basetemp"),
        env={"TRISTORE_REDIS_BINARY": "/nonexistent/redis-server"},
    )
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert re.search(r"\b1 passed, 3 errors\b", out), out
    assert "ERROR at setup of test_needs_redis" in out
    assert (
        "tristore: the redis store could not start: [redis] redis-server binary "
        "'/nonexistent/redis-server' (from TRISTORE_REDIS_BINARY) does not exist"
    ) in out
    assert "ERROR at setup of test_needs_ladybug" in out
    assert (
        "tristore: the graph store could not start: [graph] graph engine 'ladybug' is not installed"
    ) in out
    assert "ERROR at setup of test_shared_path" in out
    assert "tristore: tristore_overrides may not set sqlite.path" in out
