"""Transactions across SQLite, Kuzu and Redis that never lose a committed write.

Usage::

    coordinator = Coordinator(sqlite, graph, cache)      # or Coordinator.for_stores(stores)
    await coordinator.open()                             # creates the log, runs recovery
    async with coordinator.transaction() as tx:
        order = await tx.sql("INSERT INTO orders (...) VALUES (?, ?) RETURNING id", (c, p))
        tx.graph("MATCH (c:Customer {id: $c}), (p:Product {id: $p}) "
                 "CREATE (c)-[:PURCHASED {order_id: $o}]->(p)",
                 {"c": c, "p": p, "o": order.scalar()})
        tx.cache("HINCRBY", f"customer:{c}", "orders", 1)
        tx.on_abort(refund)            # side effects outside the three stores
        tx.after_commit(send_email)
    assert tx.committed
    await tx.applied()                 # read-your-writes in all three stores

Why not two-phase commit: Kuzu and Redis have no PREPARE, and Redis has no rollback. Instead
**SQLite is the commit point**. The business rows and an *intent* (txid, graph ops, cache ops as
JSON) commit in one SQLite transaction; the graph and cache work is applied from the intent,
idempotently (a marker per transaction in each store, written with its effects), and recovery
rolls forward any intent whose apply did not finish. **A committed transaction is never lost**:
it reaches the graph and the cache, or it is reported failed with its error and can be retried.

**Two orderings** (``Coordinator(..., ordering=...)``, or per transaction with
``coordinator.transaction(ordering=...)``; the ``[coordinator]`` settings hold the default):

- ``"deferred"`` (the default; a transactional outbox with early validation). Before the SQLite
  commit each graph op is validated without running it (:mod:`.graph_check`: syntax, labels and
  properties, parameter types). The SQLite lane is held for the SQL and the intent only. After
  the commit the graph applier (:mod:`.graph_applier`) applies committed intents in commit
  order, in batches of one Kuzu transaction, on the Kuzu thread, with adjacent ops of one shape
  merged into one statement (:mod:`.graph_merge`). What the check cannot see (a duplicate
  primary key, a full disk) is met after the commit: the transaction stays committed, its
  members' batch is re-applied member by member, and a member that fails alone is a *dead
  letter*: ``tx.apply_errors`` and :meth:`Coordinator.dead_letters` show its error, ``tristore
  coordinator status`` lists it, and :meth:`Coordinator.retry` applies it again after a fix.
- ``"strict"`` (Epoxy's ordering, :mod:`.strict`). The graph ops execute in a Kuzu write
  transaction of their own before the SQLite commit, and SQLite commits only if they succeeded,
  so *any* graph error rolls back the SQL too; Kuzu commits right after SQLite. The cost: the
  Kuzu work is done inside the SQLite writer lane, one transaction at a time, and a strict
  transaction first waits for the deferred ones committed before it to be applied.

Cache ops run in one Lua script per transaction that applies them only if
``tristore:applied:{txid}`` is absent and then sets it (with a TTL, ``marker_ttl``), in commit
order (:mod:`.cache_apply`). The intent is marked ``applied`` in SQLite once both parts are done.

Failure before the SQLite commit (an exception in the body, a constraint violation, a rejected
graph op, a lock wait past its bound) rolls the whole transaction back and raises a typed error
(:class:`~tristore.errors.QueryError`, :class:`~tristore.errors.CoordinatorError` and its
subclasses); ``on_abort`` hooks run. **Committed but pending**: once SQLite has committed, a
failure while applying (Redis down, Kuzu unavailable) is not an error for the caller. The
``async with`` block returns once the first apply attempt is over, with ``tx.committed`` true
and ``tx.pending`` naming the stores still to be applied; ``await tx.applied(timeout)`` waits
for them. An exception would invite the caller to retry work that is already durable. A deferred
commit waits for its graph apply at most ``graph_wait`` (0.1 s by default): an engine stall
(Kuzu stops its writer for each automatic checkpoint) then leaves the graph pending instead of
holding every commit behind it.

**What a reader sees, and when.**

- *SQLite*: serializable. The transaction holds the single writer lane with ``BEGIN IMMEDIATE``
  from its first statement to its commit; ``tx.sql`` sees its own writes; other readers see
  the transaction's rows all at once at the commit (WAL snapshots), never part of it.
- *Kuzu*: a reader sees a transaction's graph ops all at once, never before its SQLite commit,
  in SQLite commit order. Deferred: with the batch that applies it, normally within one batch
  (a few milliseconds) and before the ``async with`` block returns; later while Kuzu stalls
  past ``graph_wait`` or is failing (``tx.pending`` then names the graph). Strict: right after
  the SQLite commit.
  Graph ops cannot read SQLite; they see the graph with every earlier committed transaction
  applied.
- *Redis*: a transaction's cache ops all at once (one script), after its SQLite commit, in
  commit order; by the end of the ``async with`` block unless Redis is down.
- After ``await tx.applied()`` the caller reads its own writes in all three stores.

**Engines.** Kuzu 0.11.3 (archived) leaves a node that a rolled-back write transaction updated
failing every later update, or crashes later, until its in-memory state is rebuilt; the graph
store contains that with a CHECKPOINT after any rollback
(:meth:`tristore.stores.GraphStore.contain`). Kuzu's CHECKPOINT is itself not crash-safe: a
process killed during one can leave a log that does not replay, and the graph file then does not
open. Ladybug has neither defect and is the engine to choose for new deployments.

**Locks and deadlocks.** Locks are taken in one order, each wait bounded by ``lock_timeout``:
the SQLite writer lane (at ``__aenter__``; timeout: :class:`~tristore.errors.CoordinatorTimeout`),
then the Kuzu writer lane (a graph check the first time a statement shape is seen, or a strict
stage; timeout: :class:`~tristore.errors.DeadlockError`, rolled back), then a cache turn, taken
before the SQLite lane is released so that turns follow commit order. The graph applier never
waits for the SQLite lane. Opening a coordinated transaction inside another in the same task
raises :class:`~tristore.errors.DeadlockError` at once. Inside the body use ``tx.sql``, not
``sqlite.write()``: the latter waits for the lane the transaction holds.

**Scope.** One coordinator per set of stores, in one process (Kuzu allows one process per
database). Standalone Redis only (a script cannot span cluster slots). Cache ops come from an
allow-list of writes (see :data:`CACHE_COMMANDS`); graph parameters must be JSON values.

:func:`validate_consistency` compares transactions (intent log vs markers) and caller-described
entities across the stores and reports any drift. ``coordinator.faults`` is a test-only switch to
inject failures at named points of the protocol.
"""

from tristore.coordinator.core import Coordinator, RecoveryReport
from tristore.coordinator.faults import Faults
from tristore.coordinator.graph_apply import MARKER_TABLE
from tristore.coordinator.log import TABLE as INTENT_TABLE
from tristore.coordinator.log import DeadLetter
from tristore.coordinator.ops import CACHE_COMMANDS, MARKER_PREFIX, marker_key
from tristore.coordinator.transaction import SqlResult, Transaction
from tristore.coordinator.validate import (
    ConsistencyReport,
    Drift,
    EntityCheck,
    validate_consistency,
)

__all__ = [
    "CACHE_COMMANDS",
    "INTENT_TABLE",
    "MARKER_PREFIX",
    "MARKER_TABLE",
    "ConsistencyReport",
    "Coordinator",
    "DeadLetter",
    "Drift",
    "EntityCheck",
    "Faults",
    "RecoveryReport",
    "SqlResult",
    "Transaction",
    "marker_key",
    "validate_consistency",
]
