"""The coordinator's modules talk through their interfaces: no private reach-ins, one import order.

A ``Transaction`` owns its commit and uses the coordinator's services through their public
names; the appliers, the check, the strict stage and recovery never import the transaction or
the coordinator at run time. A change that reads another object's underscore field, or imports
against that order, fails here rather than in a review.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import tristore.coordinator as coordinator_pkg

PKG = Path(coordinator_pkg.__file__).parent
SERVICES = ("graph_applier", "graph_apply", "graph_check", "graph_merge", "cache_apply", "strict")


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


def test_a_transaction_reads_no_private_field_of_its_coordinator() -> None:
    tree = _tree("transaction")
    assert _private_reads_through(tree, {"c", "coordinator", "intent"}) == []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute):
            inner = node.value
            if isinstance(inner.value, ast.Name) and inner.value.id == "self":
                # self._coordinator.x is fine; self._coordinator._x is a reach-in.
                assert not node.attr.startswith("_") or node.attr.startswith("__"), (
                    f"self.{inner.attr}.{node.attr} (line {node.lineno})"
                )


@pytest.mark.parametrize("module", ["core", "recovery", *SERVICES])
def test_no_module_reads_private_fields_of_the_objects_it_is_given(module: str) -> None:
    names = {"coordinator", "tx", "intent", "applier", "graph", "cache", "item", "batch"}
    assert _private_reads_through(_tree(module), names) == []


@pytest.mark.parametrize("module", SERVICES)
def test_services_never_import_the_transaction_or_the_coordinator(module: str) -> None:
    imported = _imports(_tree(module), typing_only=False) | _imports(
        _tree(module), typing_only=True
    )
    assert not imported & {"tristore.coordinator.core", "tristore.coordinator.transaction"}


def test_imports_run_one_way() -> None:
    assert "tristore.coordinator.core" not in _imports(_tree("transaction"), typing_only=False)
    assert "tristore.coordinator.core" not in _imports(_tree("recovery"), typing_only=False)
    # validate needs the Coordinator's type only.
    assert "tristore.coordinator.core" not in _imports(_tree("validate"), typing_only=False)
