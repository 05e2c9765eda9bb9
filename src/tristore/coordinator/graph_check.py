"""Graph ops validated before the SQLite commit, without a Kuzu write transaction of their own.

The deferred ordering applies graph ops after the commit, so whatever can be rejected must be
rejected before it. ``EXPLAIN <op>`` with the op's parameters makes Kuzu parse, bind (labels,
properties, functions) and plan the op, type-check its parameters, and execute nothing. Kuzu
binds a write statement only where a write transaction could start, so the EXPLAIN runs on the
writer lane; it writes nothing, so there is nothing to roll back (the rollback that poisons Kuzu
0.11.3 needs an update to undo).

A statement text with one parameter signature (names and value types, see
:func:`~tristore.coordinator.ops.param_signature`) binds the same way every time, so a passed
check is remembered and the common case costs a dictionary lookup on the commit path.

What is left for apply time are errors that depend on the data (a duplicate primary key, a
failed cast of a value) or on the store (a full disk); the applier handles those (see
:mod:`.graph_applier`).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

from tristore.coordinator.graph_merge import LITERAL, PARAM
from tristore.coordinator.ops import GraphOp, param_signature
from tristore.errors import DeadlockError, PoolTimeout, QueryError
from tristore.stores.graph import GraphStore, translate

# Remembered checks; past this many distinct (text, signature) pairs the memory starts over.
MAX_REMEMBERED = 4096


class GraphCheck:
    """Validates graph ops against the live schema, remembering what passed."""

    def __init__(self, graph: GraphStore) -> None:
        self._graph = graph
        self._passed: set[Hashable] = set()
        self.explained = 0  # EXPLAINs run (checks that were not remembered)

    def forget(self) -> None:
        """Check everything again (after a schema change)."""
        self._passed.clear()

    async def validate(self, ops: Sequence[GraphOp], *, timeout: float) -> None:
        """Raise :class:`~tristore.errors.QueryError` naming the first op Kuzu would reject."""
        todo: list[tuple[Hashable, GraphOp]] = []
        for op in ops:
            key = (op[0], param_signature(op[1]))
            if key not in self._passed:
                _check_names(*op)
                todo.append((key, op))
        if not todo:
            return
        try:
            async with self._graph.writer.acquire(timeout=timeout) as conn:
                await self._explain(conn, [op for _, op in todo])
        except PoolTimeout as exc:  # only the acquire raises it
            raise DeadlockError(
                f"held the SQLite writer lane and waited {timeout:g}s for the Kuzu writer lane "
                "to check the graph ops (a long graph write, or a cycle); rolled back"
            ) from exc
        self.explained += len(todo)
        if len(self._passed) + len(todo) > MAX_REMEMBERED:
            self._passed.clear()
        self._passed.update(key for key, _ in todo)

    async def _explain(self, conn: Any, ops: list[GraphOp]) -> None:
        try:
            await self._graph.run(conn, lambda c: _explain(c, ops))
        except _Rejected as rejected:
            self._graph.writer.discard(conn)  # it saw an error: never reuse it
            cypher, exc = rejected.args
            raise QueryError(
                "graph", f"tx.graph: the graph store rejects {_short(cypher)}: {translate(exc)}"
            ) from exc
        except Exception:
            self._graph.writer.discard(conn)
            raise


class _Rejected(Exception):
    pass


def _explain(conn: Any, ops: Sequence[GraphOp]) -> None:
    for cypher, params in ops:
        try:
            conn.execute("EXPLAIN " + cypher, params).get_all()
        except Exception as exc:
            raise _Rejected(cypher, exc) from exc


def _check_names(cypher: str, params: dict[str, Any]) -> None:
    """Every ``$name`` in the statement has a value (Kuzu's EXPLAIN binds a missing one as NULL)."""
    used = set(PARAM.findall(LITERAL.sub("''", cypher)))
    missing = sorted(used - params.keys())
    if missing:
        raise QueryError(
            "graph",
            f"tx.graph: {_short(cypher)} uses ${', $'.join(missing)} but no value was given",
        )


def _short(cypher: str, width: int = 80) -> str:
    text = " ".join(cypher.split())
    return repr(text if len(text) <= width else text[: width - 3] + "...")
