"""Probe finding: errors a caller can act on are typed, with a one-line reason.

``fetchall("SELECT ?", (2**70,))`` raised a bare OverflowError (so did ``execute`` and ``tx.sql``),
``graph.query("RETURN 1", [1, 2])`` a TypeError, and a ``TRISTORE_CONFIG`` naming a directory or a
non-UTF-8 file crashed the CLI with a traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tristore.errors import QueryError
from tristore.stores import GraphStore, SQLiteStore

TOO_WIDE = 2**70


async def test_too_wide_an_integer_is_a_query_error_on_every_sqlite_path(
    sqlite_store: SQLiteStore,
) -> None:
    calls = {
        "fetchall": lambda: sqlite_store.fetchall("SELECT ?", (TOO_WIDE,)),
        "fetchone": lambda: sqlite_store.fetchone("SELECT ?", (TOO_WIDE,)),
        "execute": lambda: sqlite_store.execute("SELECT ?", (TOO_WIDE,)),
        "execute_insert": lambda: sqlite_store.execute_insert("SELECT ?", (-TOO_WIDE,)),
        "executemany": lambda: sqlite_store.executemany("SELECT ?", [(1,), (TOO_WIDE,)]),
        "named": lambda: sqlite_store.fetchall("SELECT :n", {"n": TOO_WIDE}),
        "write_fn": lambda: sqlite_store.write(lambda c: c.execute("SELECT ?", (TOO_WIDE,))),
        "read_fn": lambda: sqlite_store.read(lambda c: c.execute("SELECT ?", (TOO_WIDE,))),
    }
    for name, call in calls.items():
        with pytest.raises(QueryError, match="64-bit INTEGER") as info:
            await call()
        assert "\n" not in str(info.value), name
    # The bounds themselves are stored and read back; the stores still work.
    edges = [-(2**63), 2**63 - 1]
    assert await sqlite_store.fetchall("SELECT ?, ?", edges) == [tuple(edges)]


async def test_too_wide_an_integer_in_a_coordinated_transaction(coordinator: Any) -> None:
    with pytest.raises(QueryError, match="64-bit INTEGER"):
        async with coordinator.transaction() as tx:
            await tx.sql("SELECT ?", (TOO_WIDE,))
    assert tx.state == "rolled_back"
    # tx.sql_fn hands the connection to the caller's function: the same error, typed.
    with pytest.raises(QueryError, match="64-bit INTEGER"):
        async with coordinator.transaction() as tx:
            await tx.sql_fn(lambda c: c.execute("SELECT ?", (TOO_WIDE,)).fetchall())
    assert tx.state == "rolled_back"


@pytest.mark.parametrize("params", [[1, 2], (1,), "ab", {1: "x"}])
async def test_positional_graph_parameters_are_a_query_error(
    graph_store: GraphStore, params: Any
) -> None:
    for call in (graph_store.query, graph_store.query_rows, graph_store.execute):
        with pytest.raises(QueryError, match=r"parameters must be a mapping of \$names"):
            await call("RETURN 1", params)
    assert await graph_store.query("RETURN $x AS x", {"x": 1}) == [{"x": 1}]


def _doctor_with_config(tmp_path: Path, config: Path) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TRISTORE_")}
    environ |= {"TRISTORE_DATA_DIR": str(tmp_path / "data"), "TRISTORE_CONFIG": str(config)}
    return subprocess.run(
        [sys.executable, "-m", "tristore.cli", "doctor"],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,  # a hang guard only
    )


@pytest.mark.parametrize(
    ("kind", "needle"),
    [
        ("directory", "is a directory, expected a TOML file"),
        ("latin-1", "not UTF-8 text (byte 0xe9 at offset"),
    ],
)
def test_unreadable_config_file_is_a_one_line_config_error(
    tmp_path: Path, kind: str, needle: str
) -> None:
    config = tmp_path / "conf"
    if kind == "directory":
        config.mkdir()
    else:
        config.write_bytes("[sqlite]\n# caf\u00e9\ncache_size = 2000\n".encode("latin-1"))
    done = _doctor_with_config(tmp_path, config)
    assert done.returncode != 0
    assert needle in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
