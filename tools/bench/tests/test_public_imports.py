"""The tooling uses tristore through its public names only.

A private name (``tristore.x._y``, or ``_y`` imported from a tristore module) may change or
vanish in any commit; a tool that depends on one breaks silently, and the asv history measured
through it with it. What the tools import is read from their source (every ``import`` and
``from ... import`` statement, top level or inside a function), not from a list kept by hand.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[1] / "src" / "tristore_bench"
LIBRARY = "tristore"


def _imports(path: Path) -> list[tuple[int, str, str | None]]:
    """(line, module, imported name or None) of every import of the library in ``path``."""
    found: list[tuple[int, str, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.extend((node.lineno, node.module, alias.name) for alias in node.names)
    return [
        (line, module, name)
        for line, module, name in found
        if module == LIBRARY or module.startswith(LIBRARY + ".")
    ]


def _private(module: str, name: str | None) -> bool:
    parts = [*module.split("."), *([name] if name else [])]
    return any(part.startswith("_") for part in parts)


def test_the_scan_sees_the_tools_imports() -> None:
    # The scan itself: the workloads do import the library (inside their functions).
    found = {module for _, module, _ in _imports(TOOLS / "workloads.py")}
    assert {"tristore.pool", "tristore.stores", "tristore.coordinator"} <= found
    assert _private("tristore.pool", "_Holder") and _private("tristore._x", None)
    assert not _private("tristore.stores", "SQLiteStore")


@pytest.mark.parametrize(
    "path", sorted(TOOLS.rglob("*.py")), ids=lambda p: str(p.relative_to(TOOLS))
)
def test_no_private_name_of_the_library(path: Path) -> None:
    private = [
        f"{path.name}:{line}: {module}" + (f" import {name}" if name else "")
        for line, module, name in _imports(path)
        if _private(module, name)
    ]
    assert not private, private
