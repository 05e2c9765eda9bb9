"""The coordinator's modules talk through their interfaces: no private reach-ins, one import order.

The commit protocol (``core``) works on a ``TxState`` through its public methods, and a
``Transaction`` reaches its coordinator only through a ``TxHost``. A change that reads another
object's underscore field again, or imports against the order core -> transaction -> txstate,
fails here rather than in a review.
"""

from __future__ import annotations

import ast
from pathlib import Path

import tristore.coordinator as coordinator_pkg

PKG = Path(coordinator_pkg.__file__).parent


def _tree(module: str) -> ast.Module:
    return ast.parse((PKG / f"{module}.py").read_text())


def _private_reads_through(tree: ast.Module, names: set[str]) -> list[str]:
    """``x._field`` where ``x`` is one of ``names`` (dunder names are not fields)."""
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in names
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"{node.value.id}.{node.attr} (line {node.lineno})")
    return found


def _imports(tree: ast.Module, *, typing_only: bool) -> set[str]:
    """Modules imported at run time (or, with ``typing_only``, under ``if TYPE_CHECKING``)."""
    checking: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            checking |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        and node.module
        and (id(node) in checking) == typing_only
    }


def test_the_commit_protocol_reads_no_private_field_of_a_transaction() -> None:
    assert _private_reads_through(_tree("core"), {"tx", "intent", "batch"}) == []


def test_a_transaction_reads_no_private_field_of_its_host_or_state() -> None:
    tree = _tree("transaction")
    assert _private_reads_through(tree, {"host", "tx", "coord", "coordinator"}) == []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute):
            inner = node.value
            if isinstance(inner.value, ast.Name) and inner.value.id == "self":
                # self._host.x / self._tx.x are fine; self._host._x is a reach-in.
                assert not node.attr.startswith("_") or node.attr.startswith("__"), (
                    f"self.{inner.attr}.{node.attr} (line {node.lineno})"
                )


def test_imports_run_one_way() -> None:
    assert "tristore.coordinator.core" not in _imports(_tree("transaction"), typing_only=False)
    assert "tristore.coordinator.core" not in _imports(_tree("transaction"), typing_only=True)
    state = _imports(_tree("txstate"), typing_only=False) | _imports(
        _tree("txstate"), typing_only=True
    )
    assert not state & {"tristore.coordinator.core", "tristore.coordinator.transaction"}
    # validate needs the Coordinator's type only.
    assert "tristore.coordinator.core" not in _imports(_tree("validate"), typing_only=False)
