"""Graph work, run on the Kuzu writer connection's thread: stage, commit, replay.

Every function here is called through ``GraphStore.run`` on a connection checked out of the
writer lane, so one thread at a time touches a given connection.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from tristore.coordinator.faults import Faults
from tristore.coordinator.log import Intent
from tristore.stores.graph_prepared import PreparedStatements

MARKER_TABLE = "AppliedTx"
MARKER_DDL = f"CREATE NODE TABLE IF NOT EXISTS {MARKER_TABLE}(txid STRING PRIMARY KEY)"
MARKER_CREATE = f"CREATE (:{MARKER_TABLE} {{txid: $txid}})"
# A batch's markers in one statement: Kuzu's per-query set-up (zeroed vectors and buffers, ~1M
# instructions) is most of a small write's cost, and a marker per member doubled it.
MARKERS_CREATE = f"UNWIND $ids AS txid CREATE (:{MARKER_TABLE} {{txid: txid}})"
MARKERS_IN = f"MATCH (a:{MARKER_TABLE}) WHERE a.txid IN $ids RETURN a.txid"
MARKERS_DELETE = f"MATCH (a:{MARKER_TABLE}) WHERE a.txid IN $ids DELETE a"


_prepared = PreparedStatements()


def stage_graph(
    conn: Any, intent: Intent, faults: Faults, *, begin: bool = True, marker: bool = True
) -> None:
    """The intent's ops (and marker) in the open Kuzu transaction (``begin``: open it first).

    ``marker=False`` leaves the marker to :func:`commit_graph`, which writes a whole batch's in
    the same transaction. On any error Kuzu has rolled the whole transaction back, earlier
    intents of a batch included.
    """
    # A failed BEGIN leaves the connection unusable (reusing it segfaults): no ROLLBACK then.
    if begin:
        conn.execute("BEGIN TRANSACTION")
    try:
        for cypher, params in intent.graph_ops:
            _prepared.execute(conn, cypher, params)
        faults.fire("graph.stage")
        if marker:
            _prepared.execute(conn, MARKER_CREATE, {"txid": intent.txid})
    except BaseException:
        with contextlib.suppress(Exception):
            conn.execute("ROLLBACK")
        raise


def commit_graph(conn: Any, faults: Faults, txids: Sequence[str] = ()) -> None:
    """COMMIT the open transaction, writing the markers of ``txids`` in it first."""
    try:
        if len(txids) == 1:  # the plain CREATE: an UNWIND of one costs more than it saves
            _prepared.execute(conn, MARKER_CREATE, {"txid": txids[0]})
        elif txids:
            _prepared.execute(conn, MARKERS_CREATE, {"ids": list(txids)})
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
