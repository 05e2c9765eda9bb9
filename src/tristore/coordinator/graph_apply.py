"""Graph work, run on the Kuzu writer connection's thread: stage, commit, replay.

Every function here is called through ``GraphStore.run`` on a connection checked out of the
writer lane, so one thread at a time touches a given connection.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from tristore.coordinator.faults import Faults
from tristore.coordinator.log import Intent

MARKER_TABLE = "AppliedTx"
MARKER_DDL = f"CREATE NODE TABLE IF NOT EXISTS {MARKER_TABLE}(txid STRING PRIMARY KEY)"
MARKER_CREATE = f"CREATE (:{MARKER_TABLE} {{txid: $txid}})"
MARKERS_IN = f"MATCH (a:{MARKER_TABLE}) WHERE a.txid IN $ids RETURN a.txid"
MARKERS_DELETE = f"MATCH (a:{MARKER_TABLE}) WHERE a.txid IN $ids DELETE a"


class _Prepared:
    """Prepared statements per Kuzu connection, reused across transactions.

    ``Connection.execute(str, params)`` prepares the statement every time (parse, bind, plan:
    about a third of a small write here) and binds parameter types from the query, not from the
    values (its ``_prepare`` ignores non-dataframe parameters), so executing a cached prepared
    statement behaves exactly like executing the string. ``_prepare`` is private (the public
    ``prepare`` is deprecated in favour of ``execute``): without it every call takes the plain path.
    Only the writer lane's connections use this, one thread at a time; a discarded connection
    takes its statements with it (weak keys).
    """

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._by_conn: weakref.WeakKeyDictionary[Any, OrderedDict[str, Any]] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def execute(self, conn: Any, cypher: str, params: dict[str, Any]) -> Any:
        prepare = getattr(conn, "_prepare", None)
        if not params or prepare is None:
            return conn.execute(cypher, params)
        with self._lock:
            cache = self._by_conn.get(conn)
            if cache is None:
                cache = self._by_conn[conn] = OrderedDict()
            stmt = cache.get(cypher)
        if stmt is None:
            prepared = prepare(cypher)
            if not prepared.is_success():  # let execute() raise the engine's own error
                return conn.execute(cypher, params)
            # Keep only the engine's statement: the wrapper holds its connection, which would
            # keep every discarded connection alive through this weak-keyed cache.
            stmt = _Statement(prepared._prepared_statement)
            with self._lock:
                cache[cypher] = stmt
                while len(cache) > self._size:
                    cache.popitem(last=False)
        else:
            with self._lock:
                cache.move_to_end(cypher)
        return conn.execute(stmt, params)


class _Statement:
    """What ``Connection.execute`` reads from a prepared statement, without the connection."""

    __slots__ = ("_prepared_statement",)

    def __init__(self, inner: Any) -> None:
        self._prepared_statement = inner


_prepared = _Prepared()


def stage_graph(conn: Any, intent: Intent, faults: Faults) -> None:
    # A failed BEGIN leaves the connection unusable (reusing it segfaults): no ROLLBACK then.
    conn.execute("BEGIN TRANSACTION")
    try:
        for cypher, params in intent.graph_ops:
            _prepared.execute(conn, cypher, params)
        faults.fire("graph.stage")
        _prepared.execute(conn, MARKER_CREATE, {"txid": intent.txid})
    except BaseException:
        with contextlib.suppress(Exception):
            conn.execute("ROLLBACK")
        raise


def commit_graph(conn: Any, faults: Faults) -> None:
    try:
        faults.fire("graph.commit")
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(Exception):
            conn.execute("ROLLBACK")
        raise


def replay_graph(
    conn: Any, intents: Sequence[Intent], faults: Faults
) -> tuple[int, Exception | None]:
    """Apply intents in order, each in its own Kuzu transaction with its marker; skip applied ones.

    Returns how many are now applied and the error that stopped the rest (order matters: a later
    intent is never applied before an earlier one).
    """
    if not intents:
        return 0, None
    try:
        ids = [i.txid for i in intents]
        applied = {row[0] for row in conn.execute(MARKERS_IN, {"ids": ids}).get_all()}
    except Exception as exc:
        return 0, exc
    for n, intent in enumerate(intents):
        if intent.txid in applied:
            continue
        try:
            conn.execute("BEGIN TRANSACTION")
        except Exception as exc:
            return n, exc
        try:
            for cypher, params in intent.graph_ops:
                _prepared.execute(conn, cypher, params)
            _prepared.execute(conn, MARKER_CREATE, {"txid": intent.txid})
            faults.fire("graph.replay")
            conn.execute("COMMIT")
        except Exception as exc:
            with contextlib.suppress(Exception):
                conn.execute("ROLLBACK")
            return n, exc
    return len(intents), None


def rollback_graph(conn: Any) -> None:
    conn.execute("ROLLBACK")
