"""Isolation between tests: the same rows, nodes and keys written by every test, in any order.

In this process, the two ``test_same_*`` tests below write identical data and each first checks
that it starts from empty stores. The subprocess tests run a generated module of such tests in a
throwaway project, in both orders, on one process and on two xdist workers (``-n 2``), with
``-p no:randomly`` so the order given is the order run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tristore.testing import Stores

# -- in process -----------------------------------------------------------------------------------


async def _write_the_shared_data(stores: Stores) -> None:
    # Empty at the start, whatever ran before ...
    assert await stores.sqlite.fetchone("SELECT count(*) FROM customers") == (0,)
    assert await stores.graph.query_rows("MATCH (n) RETURN count(n)") == [[0]]
    assert await stores.cache.execute("DBSIZE") == 0
    # ... then the same primary key, UNIQUE email, node key and Redis keys as the other test:
    # any leak between the two would fail here with a constraint error or a count of 2.
    await stores.sqlite.execute(
        "INSERT INTO customers (id, email, name, country) VALUES (1, 'same@example.com', 'S', 'GB')"
    )
    await stores.graph.execute("CREATE (:Customer {id: 1, name: 'S', tier: 'standard'})")
    assert await stores.cache.execute("SET", "shared:key", "mine", "NX")
    assert await stores.cache.execute("INCR", "shared:counter") == 1


async def test_same_rows_and_keys_first(stores: Stores) -> None:
    await _write_the_shared_data(stores)


async def test_same_rows_and_keys_second(stores: Stores) -> None:
    await _write_the_shared_data(stores)


# -- in a throwaway project, both orders, with and without xdist -------------------------------

INNER_MODULE = textwrap.dedent(
    """
    import json
    import os
    from urllib.parse import urlsplit

    import pytest

    pytestmark = pytest.mark.asyncio  # the project runs pytest-asyncio in strict mode


    async def _shared(stores, name):
        assert await stores.sqlite.fetchone("SELECT count(*) FROM customers") == (0,)
        assert await stores.graph.query_rows("MATCH (n) RETURN count(n)") == [[0]]
        assert await stores.cache.execute("DBSIZE") == 0
        await stores.sqlite.execute(
            "INSERT INTO customers (id, email, name, country)"
            " VALUES (1, 'same@example.com', 'S', 'GB')"
        )
        await stores.graph.execute("CREATE (:Customer {id: 1, name: 'S', tier: 'standard'})")
        assert await stores.cache.execute("SET", "shared:key", name, "NX")
        assert await stores.cache.execute("INCR", "shared:counter") == 1
        record = {
            "test": name,
            "worker": os.environ.get("PYTEST_XDIST_WORKER", "main"),
            "redis_port": urlsplit(stores.settings.redis.url).port,  # never the password
            "sqlite": str(stores.sqlite.path),
            "graph": str(stores.graph.path),
        }
        with open(os.environ["ISOLATION_LOG"], "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\\n")

    """
) + "".join(
    f"\nasync def test_{name}(stores):\n    await _shared(stores, {name!r})\n\n"
    for name in ("a1", "b1", "a2", "b2", "a3", "b3")
)

NAMES = ["a1", "b1", "a2", "b2", "a3", "b3"]


def run_pytest(
    project: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """``python -m pytest`` in ``project`` as a user would run it, bounded in time."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "TRISTORE_"))}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=project,
        env=clean | (env or {}),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    (root / "test_shared.py").write_text(INNER_MODULE)
    return root


@pytest.mark.parametrize("workers", [0, 2], ids=["one-process", "xdist-2"])
@pytest.mark.parametrize("order", ["forward", "reverse"])
def test_isolated_in_either_order(project: Path, workers: int, order: str) -> None:
    names = NAMES if order == "forward" else NAMES[::-1]
    log = project / "isolation.jsonl"
    args = [f"test_shared.py::test_{n}" for n in names]
    args += ["-p", "no:randomly", "--basetemp", str(project / "basetemp")]
    args += ["-n", str(workers)] if workers else ["-p", "no:xdist"]
    result = run_pytest(project, *args, env={"ISOLATION_LOG": str(log)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 passed" in result.stdout
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted(r["test"] for r in records) == sorted(NAMES)
    if not workers:
        assert [r["test"] for r in records] == names  # the order asked for is the order run
    # Every test had its own files; every worker its own redis-server, one per session.
    assert len({r["sqlite"] for r in records}) == len({r["graph"] for r in records}) == 6
    ports = {r["worker"]: set() for r in records}
    for r in records:
        ports[r["worker"]].add(r["redis_port"])
    assert all(len(p) == 1 for p in ports.values())
    if workers:
        assert set(ports) == {"gw0", "gw1"}
        assert ports["gw0"] != ports["gw1"]
