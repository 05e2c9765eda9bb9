"""Transactions across SQLite, Kuzu and Redis that survive crashes (Epoxy-lite).

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
    assert tx.committed and not tx.pending

Why not two-phase commit: Kuzu and Redis have no PREPARE, and Redis has no rollback. Instead
**SQLite is the commit point**. The business rows and an *intent* (txid, graph ops, cache ops as
JSON) commit in one SQLite transaction; the graph and cache work is applied after that commit,
idempotently, and a recovery sweep rolls forward any intent whose apply did not finish:

- graph ops run in a Kuzu transaction together with an ``AppliedTx {txid}`` marker node; the Kuzu
  transaction is opened *before* the SQLite commit (so a Cypher syntax error, an unknown property
  or a wrong-typed parameter aborts everything with nothing committed anywhere) and committed
  right after it. Replaying an intent whose marker exists is a no-op;
- cache ops run in one Lua script that applies them only if ``tristore:applied:{txid}`` is absent
  and then sets it (with a TTL, ``marker_ttl``, default 7 days), atomically;
- the intent is then marked ``applied`` in SQLite (carried by the next commit, or flushed shortly
  after when idle). Recovery at :meth:`Coordinator.open` and every ``recovery_interval`` seconds.

Failure before the SQLite commit (an exception in the body, a constraint violation, a bad Cypher
statement, a lock wait past its bound) rolls the whole transaction back and raises a typed error
(:class:`~tristore.errors.QueryError`, :class:`~tristore.errors.CoordinatorError` and its
subclasses); ``on_abort`` hooks run. The Kuzu connection that saw an error is discarded.

**Committed but pending.** Once SQLite has committed, the transaction *is* committed: a failure
while applying (Redis down, a Kuzu write failing) is not an error for the caller. The ``async
with`` block exits normally with ``tx.committed`` true and ``tx.pending`` naming the stores still
to be applied (``("cache",)`` while Redis is down); ``await tx.applied(timeout)`` waits for them.
We chose this over raising because an exception would invite the caller to retry work that is
already durable; the intent stays pending and is rolled forward, in commit order, when the store
returns. Work a store *rejects* at apply time is reported in ``tx.apply_errors``, the intent is
marked ``failed`` and the validator reports it; it is never retried. The apply script checks key
types before writing anything, so a ``WRONGTYPE`` key leaves the cache untouched.

**Isolation: what a reader sees, and when.**

- *SQLite*: serializable. The transaction holds the single writer lane with ``BEGIN IMMEDIATE``
  from its first statement to its commit; ``tx.sql`` sees its own writes; other readers see the
  transaction's rows all at once at the commit (WAL snapshots), never part of it.
- *Kuzu*: a reader sees a transaction's graph ops all at once, at the Kuzu COMMIT, which follows
  the SQLite commit within one thread hop (about a millisecond here; until recovery if the Kuzu
  commit fails). Graph changes become visible in SQLite commit order, never before the
  SQLite commit, so a graph reader may briefly lag SQLite, never lead it. Graph ops cannot read
  SQLite; they see the graph with every earlier coordinated transaction applied.
- *Redis*: a reader sees a transaction's cache ops all at once (one script) after the SQLite
  commit, in commit order (transactions take a turn while still holding the SQLite lane). It may
  lag SQLite and Kuzu, by a round trip normally or until Redis returns when it is down; later
  transactions' cache ops queue behind pending ones, so Redis never shows a newer value and
  then an older one.
- After the ``async with`` block returns with ``tx.pending`` empty, the caller reads its own
  writes in all three stores.

**Locks and deadlocks.** Locks are taken in one order, each wait bounded by ``lock_timeout``:
the SQLite writer lane (at ``__aenter__``; timeout: :class:`~tristore.errors.CoordinatorTimeout`),
the Kuzu writer lane (at commit, while holding SQLite; timeout:
:class:`~tristore.errors.DeadlockError`, rolled back), then a cache turn, taken before the
SQLite lane is released so that turns follow commit order. Waiting for the turn happens after the
commit, so it never raises: it lasts as long as the cache phases ahead of it, each bounded by the
Redis timeouts (and after one fails, the rest queue behind it without touching Redis until
``retry_backoff`` has passed). Opening a coordinated transaction inside another in the same
task raises :class:`~tristore.errors.DeadlockError` at once. Inside the body use ``tx.sql``, not
``sqlite.write()``: the latter waits for the lane the transaction holds (bounded by the pool's
timeout). The coordinator also queues graph work behind an unapplied (pending) graph intent: if
that intent still cannot be applied, new transactions with graph ops are rolled back with a
:class:`~tristore.errors.CoordinatorError` rather than applied out of order.

**Scope.** One coordinator per set of stores, in one process (Kuzu allows one process per
database). Standalone Redis only (a script cannot span cluster slots). Cache ops come from an
allow-list of writes (see :data:`CACHE_COMMANDS`); graph parameters must be JSON values. An
intent pending for longer than ``marker_ttl`` could apply its cache ops twice; start-up recovery
makes that window "the store set stays down for a week".

Graph ops run as prepared statements cached per writer connection (Kuzu re-parses and re-plans a
statement on every ``execute``; the cache removes about a third of a small write's cost).

:func:`validate_consistency` compares transactions (intent log vs markers) and caller-described
entities across the stores and reports any drift. ``coordinator.faults`` is a test-only switch to
inject failures at named points of the protocol.
"""

from tristore.coordinator.core import Coordinator, RecoveryReport
from tristore.coordinator.faults import Faults
from tristore.coordinator.graph_apply import MARKER_TABLE
from tristore.coordinator.log import TABLE as INTENT_TABLE
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
    "Drift",
    "EntityCheck",
    "Faults",
    "RecoveryReport",
    "SqlResult",
    "Transaction",
    "marker_key",
    "validate_consistency",
]
