"""Graph work on the Kuzu writer thread: committed intents applied with their markers.

One function applies any number of intents, in commit order, inside the write transaction it is
given (:meth:`tristore.stores.graph.GraphStore.transaction`): a batch of fresh intents, one intent
re-applied alone, a recovered backlog and a strict transaction's stage are all this function.
Each intent's ``AppliedTx {txid}`` marker is written in the same Kuzu transaction as its ops, so
"the marker exists" and "the ops are in the graph" are one fact, and an intent whose marker
exists is skipped: applying twice is a no-op.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tristore.coordinator import graph_merge
from tristore.coordinator.faults import Faults
from tristore.coordinator.log import Intent
from tristore.stores.graph_prepared import PreparedStatements

MARKER_TABLE = "AppliedTx"
MARKER_DDL = f"CREATE NODE TABLE IF NOT EXISTS {MARKER_TABLE}(txid STRING PRIMARY KEY)"
MARKER_CREATE = f"CREATE (:{MARKER_TABLE} {{txid: $txid}})"
# A batch's markers in one statement: a statement's fixed set-up cost would otherwise double a
# batch's.
MARKERS_CREATE = f"UNWIND $ids AS txid CREATE (:{MARKER_TABLE} {{txid: txid}})"
MARKERS_IN = f"MATCH (a:{MARKER_TABLE}) WHERE a.txid IN $ids RETURN a.txid"
MARKERS_DELETE = f"MATCH (a:{MARKER_TABLE}) WHERE a.txid IN $ids DELETE a"


def apply_intents(
    conn: Any,
    intents: Sequence[Intent],
    faults: Faults,
    prepared: PreparedStatements,
    *,
    check_markers: bool,
    fault: str | None = None,
) -> list[Intent]:
    """Run the intents' ops and markers in the open transaction; returns those already applied.

    ``check_markers``: some intent may have been applied before (recovered from the log, or its
    earlier COMMIT's outcome is unknown); fresh intents skip the look-up. ``fault``: the test
    fault point fired at the end (default: ``graph.replay`` when checking markers, else
    ``graph.commit``). ``prepared``: the graph store's statement cache, which it drops on close
    (a cache of the coordinator's own would keep Ladybug's file locked after the store closed).
    """
    skipped: list[Intent] = []
    todo = list(intents)
    if check_markers:
        ids = [i.txid for i in intents]
        found = {row[0] for row in conn.execute(MARKERS_IN, {"ids": ids}).get_all()}
        skipped = [i for i in intents if i.txid in found]
        todo = [i for i in intents if i.txid not in found]
    if not todo:
        return skipped
    ops = [op for intent in todo for op in intent.graph_ops]
    for cypher, params in graph_merge.plan(ops):
        prepared.execute(conn, cypher, params)
    if len(todo) == 1:  # the plain CREATE: an UNWIND of one costs more than it saves
        prepared.execute(conn, MARKER_CREATE, {"txid": todo[0].txid})
    else:
        prepared.execute(conn, MARKERS_CREATE, {"ids": [i.txid for i in todo]})
    if fault is None:
        fault = "graph.replay" if check_markers else "graph.commit"
    faults.fire(fault)
    return skipped
