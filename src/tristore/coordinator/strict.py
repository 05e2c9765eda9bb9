"""The strict ordering: a transaction's graph ops run before its SQLite commit (Epoxy's order).

The graph ops execute in a Kuzu write transaction of the transaction's own, never shared, while
the SQLite writer lane is held; SQLite commits only if they all succeeded, and the Kuzu COMMIT
follows right after. A graph error of any kind (including the data-dependent ones the deferred
ordering can only dead-letter, such as a duplicate primary key) therefore rolls back the SQL
too. The price: the Kuzu work is done inside the SQLite lane, one transaction at a time.

Order with the deferred transactions is kept by the graph applier's lock: a strict stage holds
it from before its ops to its Kuzu COMMIT, after applying every intent committed before it. If
the Kuzu COMMIT fails after the SQLite commit, the intent is already at the head of the applier's
queue and is replayed from there (its marker tells whether the COMMIT happened).
"""

from __future__ import annotations

import asyncio
import contextlib

from tristore.coordinator.faults import Faults
from tristore.coordinator.graph_applier import GraphApplier
from tristore.coordinator.graph_apply import apply_intents
from tristore.coordinator.log import Intent
from tristore.errors import CoordinatorError, DeadlockError, PoolTimeout
from tristore.stores.graph import GraphStore, GraphWriteTx


class StrictStage:
    """One strict transaction's open Kuzu transaction, and the applier lock it holds."""

    def __init__(
        self, applier: GraphApplier, intent: Intent, tx: GraphWriteTx, faults: Faults
    ) -> None:
        self._applier = applier
        self._intent = intent
        self._tx = tx
        self._faults = faults

    @classmethod
    async def open(
        cls,
        applier: GraphApplier,
        graph: GraphStore,
        intent: Intent,
        faults: Faults,
        *,
        timeout: float,
    ) -> StrictStage:
        """Take the applier lock, apply what committed before, stage ``intent``'s ops."""
        try:
            async with asyncio.timeout(timeout):
                await applier.lock.acquire()
        except TimeoutError as exc:
            raise DeadlockError(
                f"held the SQLite writer lane and waited {timeout:g}s for the graph applier "
                "(a long graph write, or a cycle); rolled back"
            ) from exc
        tx: GraphWriteTx | None = None
        try:
            await applier.drain_locked()
            if applier.queue:
                raise CoordinatorError(
                    f"the graph store could not apply {len(applier.queue)} earlier committed "
                    "transaction(s); this strict transaction was rolled back so that graph "
                    "changes keep commit order"
                )
            tx = graph.transaction(timeout=timeout)
            try:
                await tx.__aenter__()
            except PoolTimeout as exc:
                tx = None
                raise DeadlockError(
                    f"held the SQLite writer lane and waited {timeout:g}s for the Kuzu writer "
                    "lane; rolled back"
                ) from exc

            prepared = graph.prepared

            def stage(conn: object) -> None:
                apply_intents(
                    conn, [intent], faults, prepared, check_markers=False, fault="graph.stage"
                )

            await tx.run(stage)
        except BaseException as exc:
            if tx is not None:
                await tx.__aexit__(type(exc), exc, exc.__traceback__)
            applier.lock.release()
            raise
        return cls(applier, intent, tx, faults)

    async def commit(self) -> None:
        """The Kuzu COMMIT after the SQLite commit (the intent is queued at the applier's head)."""
        applier, intent, faults = self._applier, self._intent, self._faults
        try:
            try:
                await self._tx.run(lambda c: faults.fire("graph.commit"), commit=True)
            finally:
                await self._tx.__aexit__(None, None, None)
        except Exception:
            intent.maybe_applied = True  # replayed by the applier; the marker settles it
            applier.retry_now()
        else:
            applier.applied_head(intent)
        finally:
            applier.lock.release()

    async def abort(self) -> None:
        """Roll the Kuzu transaction back (the SQLite commit did not happen)."""
        try:
            with contextlib.suppress(Exception):
                error = CoordinatorError("rolled back")
                await self._tx.__aexit__(type(error), error, None)
        finally:
            self._applier.lock.release()
