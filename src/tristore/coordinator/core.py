"""The coordinator: the commit protocol, the apply phases and recovery.

See the package docstring for what a caller can rely on; this module is how it is done. One
commit, with the locks it holds (always taken in this order, each wait bounded):

    SQLite writer lane ──────────────────────────────┐ (held from __aenter__)
      body: tx.sql steps, inline when SQLite allows (BEGIN IMMEDIATE rides on the first one)
      Kuzu writer lane ─────────────────────────────────────────────┐ (bounded: DeadlockError)
        hop: replay graph backlog, (BEGIN,) graph ops (no COMMIT yet)
          ║ meanwhile on the loop, step: INSERT intent + piggy-backed "applied" marks
        step: COMMIT                                                  <- the commit point
      take a cache turn (a ticket: cache phases run in commit order)
    release SQLite lane ─────────────────────────────┘
        hop: the batch's AppliedTx markers, Kuzu COMMIT  ║ cache turn: one EVALSHA (backlog first)
    release Kuzu lane ──────────────────────────────────────────────┘

The Kuzu lane is held by the open batch (group apply: commits that queue share one Kuzu COMMIT),
so under load a commit joins the batch and, when the graph lock is free, hands its stage to the
Kuzu thread from the caller's task, before the protocol's own task has had its first loop turn.

Running the graph ops in a Kuzu transaction that is still open when SQLite commits is what catches
a Cypher syntax error, an unknown property or a wrong-typed parameter *before* anything commits,
without executing the ops twice (a dry run plus a real run would double the graph cost).
The caller's transaction object is in :mod:`.transaction`; the protocol here works on its
:class:`~.txstate.TxState` only. The Kuzu-thread functions are in :mod:`.graph_apply`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import redis.exceptions as rexc

from tristore.coordinator import log as intent_log
from tristore.coordinator.faults import Faults
from tristore.coordinator.graph_apply import (
    MARKER_DDL,
    MARKERS_DELETE,
    commit_graph,
    replay_graph,
    rollback_graph,
    stage_graph,
)
from tristore.coordinator.graph_batch import GraphBatch
from tristore.coordinator.log import Intent, Mark
from tristore.coordinator.ops import APPLY_SCRIPT, marker_key, script_args
from tristore.coordinator.transaction import Transaction
from tristore.coordinator.trylock import TryLock
from tristore.coordinator.txstate import TxHost, TxState, open_in_task
from tristore.coordinator.validate import validate_consistency
from tristore.errors import (
    ConfigError,
    CoordinatorError,
    DeadlockError,
    PoolTimeout,
    StoreUnavailable,
    TristoreError,
)
from tristore.stores import CacheStore, GraphStore, SQLiteStore
from tristore.stores.graph import translate as graph_translate
from tristore.stores.sqlite import translate as sqlite_translate

log = logging.getLogger(__name__)

# A batch's members wait for its one Kuzu COMMIT; past this many the wait outgrows the saving.
MAX_GRAPH_BATCH = 1024
MAX_GRAPH_BATCH_WAIT = 60.0


@dataclass(frozen=True)
class RecoveryReport:
    found: int  # pending intents read from the log (rescan) or waiting in memory
    applied: int  # intents that settled during this pass
    pending: int  # still waiting for a store
    failed: int  # settled as failed during this pass
    seconds: float


# A stage handed to the Kuzu thread before the protocol's task ran: the batch, and its outcome.
_Started = tuple[GraphBatch, Coroutine[Any, Any, None]]


class _Turns:
    """Tickets served strictly in order: the cache phases of transactions in commit order.

    A ticket is taken while the SQLite writer lane is still held, so ticket order is commit
    order; waiting for the turn happens after the lane is released.
    """

    def __init__(self) -> None:
        self._next = 0
        self._serving = 0
        self._waiters: dict[int, asyncio.Future[None]] = {}
        self._abandoned: set[int] = set()

    def take(self) -> int:
        ticket = self._next
        self._next += 1
        return ticket

    async def wait(self, ticket: int) -> None:
        if ticket == self._serving:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[ticket] = fut
        try:
            await fut
        except BaseException:
            self._waiters.pop(ticket, None)
            if fut.done() and not fut.cancelled():
                self.done(ticket)  # the turn came as we were cancelled: pass it on
            else:
                self._abandoned.add(ticket)  # skip it when it comes
            raise

    def done(self, ticket: int) -> None:
        self._serving = ticket + 1
        while self._serving in self._abandoned:
            self._abandoned.discard(self._serving)
            self._serving += 1
        fut = self._waiters.pop(self._serving, None)
        if fut is not None and not fut.done():
            fut.set_result(None)


class _ReplayFailed(CoordinatorError):
    pass


class Coordinator:
    """Transactions across SQLite, Kuzu and Redis: SQLite commits, the others follow in order.

    One coordinator per set of stores (Kuzu allows one process per database anyway). Call
    :meth:`open` (creates the intent log and marker table, then runs recovery) before use.
    """

    def __init__(
        self,
        sqlite: SQLiteStore,
        graph: GraphStore,
        cache: CacheStore,
        *,
        lock_timeout: float = 5.0,
        recovery_interval: float | None = 5.0,
        marker_ttl: float = 7 * 86_400.0,
        retention: float | None = 3_600.0,
        max_replays: int = 5,
        retry_backoff: float = 0.5,
        flush_delay: float = 0.05,
        graph_batch_size: int = 32,
        graph_batch_wait: float = 0.01,
    ) -> None:
        for name, value in (
            ("lock_timeout", lock_timeout),
            ("marker_ttl", marker_ttl),
            ("retry_backoff", retry_backoff),
            ("flush_delay", flush_delay),
            ("recovery_interval", recovery_interval),
            ("retention", retention),
        ):
            if value is None and name in {"recovery_interval", "retention"}:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigError(f"coordinator.{name}: expected seconds > 0, got {value!r}")
        if isinstance(max_replays, bool) or not isinstance(max_replays, int) or max_replays < 1:
            raise ConfigError(f"coordinator.max_replays: expected an int >= 1, got {max_replays!r}")
        if (
            isinstance(graph_batch_size, bool)
            or not isinstance(graph_batch_size, int)
            or not 1 <= graph_batch_size <= MAX_GRAPH_BATCH
        ):
            raise ConfigError(
                f"coordinator.graph_batch_size: expected an int in [1, {MAX_GRAPH_BATCH}], "
                f"got {graph_batch_size!r}"
            )
        if (
            isinstance(graph_batch_wait, bool)
            or not isinstance(graph_batch_wait, int | float)
            or not 0 < graph_batch_wait <= MAX_GRAPH_BATCH_WAIT
        ):
            raise ConfigError(
                f"coordinator.graph_batch_wait: expected seconds in (0, {MAX_GRAPH_BATCH_WAIT:g}], "
                f"got {graph_batch_wait!r}"
            )
        if cache.cluster:
            raise ConfigError(
                "coordinator: cache ops are applied by one Lua script per transaction, which a "
                "Redis Cluster cannot run across hash slots; use a standalone Redis"
            )
        self.sqlite = sqlite
        self.graph = graph
        self.cache = cache
        self.lock_timeout = float(lock_timeout)
        self.recovery_interval = recovery_interval
        self.marker_ttl = float(marker_ttl)
        self.retention = retention
        self.max_replays = max_replays
        self.retry_backoff = float(retry_backoff)
        self.flush_delay = float(flush_delay)
        self.graph_batch_size = graph_batch_size
        self.graph_batch_wait = float(graph_batch_wait)
        self.faults = Faults()
        self._host = TxHost(
            sqlite=sqlite,
            sql_value_limit=sqlite.settings.sqlite.max_value_bytes,
            graph_value_limit=graph.settings.graph.max_value_bytes,
            cache_value_limit=cache.settings.redis.max_value_bytes,
            check_open=self._require_open,
            count=self._count,
            commit=self._commit,
        )
        self._open = False
        self._graph_backlog: deque[Intent] = deque()
        self._batch: GraphBatch | None = None  # the open shared Kuzu transaction, if any
        # Held while a batch is staged into, committed or rolled back: one of them at a time.
        self._graph_lock = TryLock()
        self._cache_backlog: deque[Intent] = deque()
        self._done: list[Mark] = []
        self._live: set[str] = set()  # committed intents whose apply phase is running
        self._turns = _Turns()
        self._sha: str | None = None
        self._cache_retry_at = 0.0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._recovering: asyncio.Lock | None = None
        self._stop = asyncio.Event()
        self._counts: dict[str, int] = dict.fromkeys(
            (
                "begun",
                "committed",
                "rolled_back",
                "applied",
                "failed",
                "pending_after_commit",
                "graph_apply_errors",
                "cache_apply_errors",
                "replayed",
                "lock_timeouts",
                "deadlocks",
                "pruned",
                "graph_batches",
                "cache_round_trips",
            ),
            0,
        )

    @classmethod
    def for_stores(cls, stores: Any, **options: Any) -> Coordinator:
        """From anything with ``sqlite``, ``graph`` and ``cache`` (Stores, PoolManager)."""
        return cls(stores.sqlite, stores.graph, stores.cache, **options)

    # -- life cycle -------------------------------------------------------------------------
    async def open(self) -> RecoveryReport:
        """Create the log and marker tables, roll pending intents forward, start the sweeper."""
        if self._open:
            return RecoveryReport(0, 0, self.pending_count(), 0, 0.0)
        self._recovering = asyncio.Lock()
        self._stop = asyncio.Event()
        await self.sqlite.write(intent_log.create)
        await self.graph.write([(MARKER_DDL, None)])
        self._open = True
        try:
            report = await self.recover()
        except BaseException:
            self._open = False
            raise
        if self.recovery_interval is not None:
            self._sweeper = asyncio.create_task(self._sweep_loop(), name="tristore-recovery")
        return report

    async def close(self) -> None:
        """Refuse new transactions, let running commits finish, flush the applied marks."""
        if not self._open:
            return
        self._open = False
        # Not cancelled: a pass stopped mid-hop would leave a Kuzu connection in use by a worker
        # thread while the pool closes it. The sweeper stops at its next wake-up instead.
        self._stop.set()
        for task in (self._sweeper, self._flusher):
            if task is not None:
                await asyncio.gather(task, return_exceptions=True)
        self._sweeper = self._flusher = None
        if self._batch is not None:
            await self._commit_batch(self._batch)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(TristoreError):
            await self.flush()

    async def __aenter__(self) -> Coordinator:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _require_open(self) -> None:
        if not self._open:
            raise CoordinatorError("coordinator is not open: call `await coordinator.open()`")

    def transaction(self, *, timeout: float | None = None) -> Transaction:
        """A coordinated transaction; ``timeout`` bounds the wait for the SQLite writer lane."""
        return Transaction(self._host, self.lock_timeout if timeout is None else timeout)

    # -- commit -----------------------------------------------------------------------------
    async def _commit(self, tx: TxState) -> None:
        # Shielded: once started, the protocol runs to its end even if the caller is cancelled,
        # so a cancellation can never leave one store committed and the locks held.
        context = contextvars.copy_context()
        context.run(open_in_task.set, False)  # hooks run in this task may open transactions
        intent = tx.staged_intent()
        tx.state = "committing"
        started = self._stage_now(intent)
        protocol = self._commit_protocol(tx, intent, started)
        await asyncio.shield(self._spawn(protocol, context))

    def _stage_now(self, intent: Intent | None) -> _Started | None:
        """Stage into the open batch from the caller's task, if the graph lock is free.

        A batch is open when commits queue, and then the protocol's new task waits its turn
        behind everything else the loop has to run (~170 us with 25 clients,
        tools/bench/measurements/coordinated-cycle.txt): staging first lets the Kuzu thread work
        meanwhile. Anything unusual goes the protocol's own way.
        """
        batch = self._batch
        if (
            intent is None
            or not intent.graph_ops
            or batch is None
            or not self._graph_lock.try_acquire()
        ):
            return None
        try:
            return batch, self._start_stage(batch, intent)
        except BaseException:  # graph store closing, say: the protocol meets it and says so
            self._graph_lock.release()
            return None

    async def _commit_protocol(
        self, tx: TxState, intent: Intent | None, started: _Started | None
    ) -> None:
        batch: GraphBatch | None = None
        try:
            if intent is not None and intent.graph_ops:
                batch = await self._stage_and_commit(tx, intent, started)
            else:
                await self._commit_with_marks(tx, intent)
        except BaseException:
            await tx.abort()
            raise
        # -- committed: from here on nothing is raised to the caller --
        tx.committed(intent)
        ticket = None
        if intent is not None and intent.cache_ops:
            # Queued while the SQLite lane is still held, so the backlog is in commit order; the
            # first turn that comes sends every intent committed by then in one round trip.
            ticket = self._turns.take()
            self._cache_backlog.append(intent)
        if batch is not None:
            self._schedule_batch_commit(batch)  # before the lane goes: who queues for it counts
        await tx.release_lane()
        if intent is not None:
            self._live.add(intent.txid)
            try:
                try:
                    self.faults.fire("after_commit")
                except Exception:
                    await self._abandon(intent, batch, ticket)
                else:
                    await self._finish(intent, batch, ticket)
            finally:
                self._live.discard(intent.txid)
            self._settle(intent)
            tx.pending = intent.pending_stores()
            tx.apply_errors = list(intent.errors)
            if tx.pending:
                self._count("pending_after_commit")
        await tx.run_hooks(tx.commit_hooks)

    async def _with_marks(self, commit: Callable[[list[Mark]], Awaitable[None]]) -> None:
        """``commit`` carries the "applied" marks held in memory; restored if it fails."""
        marks, self._done = self._done, []
        try:
            await commit(marks)
        except BaseException:
            self._done[:0] = marks  # SQLite rolled back: the marks are still to be written
            raise

    async def _commit_with_marks(self, tx: TxState, intent: Intent | None) -> None:
        """The SQLite commit of a transaction without graph work."""
        await self._with_marks(lambda marks: self._commit_sqlite(tx, intent, marks))

    # -- the graph batch --------------------------------------------------------------------
    async def _stage_and_commit(
        self, tx: TxState, intent: Intent, started: _Started | None
    ) -> GraphBatch:
        """Stage the graph ops in the shared Kuzu transaction, then commit SQLite.

        Both happen under the graph lock (taken here, or by :meth:`_stage_now` with the stage
        already running), so the batch cannot be committed between this transaction's stage and
        its SQLite commit (its ops would then be in Kuzu while SQLite might still roll back).
        """
        if started is None:
            await self._graph_lock.acquire()
            try:
                started = await self._stage_in_batch(intent)
            except BaseException:
                self._graph_lock.release()
                raise
        batch, staging = started
        try:
            await self._with_marks(
                lambda marks: self._stage_logging(tx, batch, staging, intent, marks)
            )
            batch.members.append(intent)
            return batch
        finally:
            self._graph_lock.release()

    async def _stage_in_batch(self, intent: Intent) -> _Started:
        """Open a batch if none is, and hand the stage to the Kuzu thread (graph lock held)."""
        batch = self._batch
        if batch is None:
            batch = self._batch = await self._open_batch()
        try:
            return batch, self._start_stage(batch, intent)
        except BaseException:
            await self._end_batch(batch, rollback=False)
            raise

    async def _stage_logging(
        self,
        tx: TxState,
        batch: GraphBatch,
        staging: Coroutine[Any, Any, None],
        intent: Intent,
        marks: list[Mark],
    ) -> None:
        """The Kuzu thread stages while the loop writes the intent row; then SQLite commits.

        Both are on the commit's serial path (the SQLite writer lane is held throughout), so
        doing them side by side instead of one after the other shortens every commit by the
        intent write. Whatever fails, the stage is waited for before the batch is given up.
        """
        logged: BaseException | None = None
        try:
            await self._sqlite_step(tx, _log_work(intent, marks), commit=False)
        except BaseException as exc:
            logged = exc
        try:
            await staging
        except BaseException:
            await self._end_batch(batch, rollback=False)  # Kuzu rolled it back already
            raise
        if logged is not None:
            await self._end_batch(batch, rollback=True)
            raise logged
        faults = self.faults
        try:
            await self._sqlite_step(tx, lambda c: faults.fire("sqlite.commit"), commit=True)
        except BaseException:
            await self._end_batch(batch, rollback=True)
            raise

    async def _open_batch(self) -> GraphBatch:
        lane = self.graph.writer.acquire(timeout=self.lock_timeout)
        try:
            conn = await lane.__aenter__()
        except PoolTimeout as exc:
            self._count("deadlocks")
            raise DeadlockError(
                f"held the SQLite writer lane and waited {self.lock_timeout:g}s for the "
                "Kuzu writer lane (a long graph write, or a cycle); rolled back"
            ) from exc
        return GraphBatch(lane, conn)

    def _schedule_batch_commit(self, batch: GraphBatch) -> None:
        """Commit the batch now, unless more commits queue for the SQLite lane to join it.

        Joining is bounded in size (``graph_batch_size``) and in time (``graph_batch_wait``
        after the first member), so a member never waits for a batch longer than that.
        """
        if batch is not self._batch:
            return
        if len(batch.members) >= self.graph_batch_size or not self.sqlite.writer.waiting:
            self._spawn(self._commit_batch(batch))
        elif batch.timer is None:
            batch.timer = asyncio.get_running_loop().call_later(
                self.graph_batch_wait, lambda: self._spawn(self._commit_batch(batch))
            )

    def _spawn(self, coro: Any, context: contextvars.Context | None = None) -> asyncio.Task[Any]:
        """A task ``close()`` waits for."""
        task = asyncio.get_running_loop().create_task(coro, context=context)
        self._tasks.add(task)
        task.add_done_callback(_forget(self._tasks))
        return task

    async def _commit_batch(self, batch: GraphBatch) -> None:
        """One Kuzu COMMIT for every member; on failure they all wait in the backlog."""
        async with self._graph_lock:
            if batch is not self._batch:
                return  # committed or rolled back meanwhile
            self._batch = None
            committed = False
            txids = [member.txid for member in batch.members]
            try:
                await self.graph.run(batch.conn, lambda c: commit_graph(c, self.faults, txids))
                committed = True
                self._count("graph_batches")
            except Exception as exc:
                # Whether COMMIT happened is unknown: the markers settle it when the members are
                # replayed, which happens before any later graph work (the backlog goes first).
                with contextlib.suppress(TristoreError):
                    self.graph.writer.discard(batch.conn)
                self._graph_backlog.extend(batch.members)
                self._count("graph_apply_errors")
                log.warning(
                    "graph apply of %d transaction(s) failed, left pending: %s",
                    len(batch.members),
                    exc,
                )
            finally:
                await batch.lane.__aexit__(None, None, None)
                batch.settle(committed)

    async def _end_batch(self, batch: GraphBatch, *, rollback: bool) -> None:
        """Give the batch up (caller holds the graph lock): members are replayed one by one."""
        if batch is self._batch:
            self._batch = None
        if rollback and batch.begun:
            await self._drop_graph(batch.conn)
        else:
            with contextlib.suppress(TristoreError):
                self.graph.writer.discard(batch.conn)  # it saw an error inside a transaction
        self._graph_backlog.extend(batch.members)  # in commit order, behind nothing newer
        try:
            await batch.lane.__aexit__(None, None, None)
        finally:
            batch.settle(False)

    def _start_stage(self, batch: GraphBatch, intent: Intent) -> Coroutine[Any, Any, None]:
        """Hand the stage to the Kuzu thread now; await the result to learn how it went."""
        begin = not batch.begun
        # The backlog is replayed before a batch opens; while one is open it stays empty (only
        # an ending batch adds to it), so graph work keeps commit order.
        backlog = list(self._graph_backlog) if begin else []
        faults = self.faults

        def work(c: Any) -> tuple[int, Exception | None, Exception | None]:
            replayed, error = replay_graph(c, backlog, faults)
            if error is not None:
                return replayed, error, None
            try:
                stage_graph(c, intent, faults, begin=begin, marker=False)
            except Exception as exc:
                return replayed, None, exc
            return replayed, None, None

        return self._staged(batch, backlog, self.graph.start(batch.conn, work))

    async def _staged(
        self,
        batch: GraphBatch,
        backlog: list[Intent],
        running: Coroutine[Any, Any, tuple[int, Exception | None, Exception | None]],
    ) -> None:
        replayed, error, failed = await running
        self._replayed(backlog[:replayed])
        if failed is not None:
            raise graph_translate(failed) from failed
        if error is not None:
            self._replay_failed(backlog[replayed], error)
            raise _ReplayFailed(
                f"the graph store could not apply {len(self._graph_backlog)} earlier committed "
                f"transaction(s) ({graph_translate(error)}); this one was rolled back so that "
                "graph changes keep commit order"
            ) from error
        batch.begun = True

    async def _commit_sqlite(self, tx: TxState, intent: Intent | None, marks: list[Mark]) -> None:
        if not tx.in_transaction and intent is None and not marks:
            return  # nothing was written: there is nothing to commit
        faults = self.faults
        log_work = _log_work(intent, marks)

        def work(c: sqlite3.Connection) -> None:
            # BEGIN IMMEDIATE (if no tx.sql ran) and COMMIT come from the step around this.
            faults.fire("sqlite.commit")
            log_work(c)

        await self._sqlite_step(tx, work, commit=True)

    @staticmethod
    async def _sqlite_step(
        tx: TxState, fn: Callable[[sqlite3.Connection], None], *, commit: bool
    ) -> None:
        try:
            await tx.step(fn, commit=commit)
        except sqlite3.Error as exc:
            raise sqlite_translate(exc) from exc

    async def _finish(self, intent: Intent, batch: GraphBatch | None, ticket: int | None) -> None:
        # The stores are independent and the batch's Kuzu COMMIT already runs in a task of its
        # own, so the cache script goes out meanwhile: the two waits one after the other take as
        # long as a gather, without its two tasks per commit.
        await self._finish_cache(intent, ticket)
        if batch is not None:
            await self._finish_graph(intent, batch)

    async def _abandon(self, intent: Intent, batch: GraphBatch | None, ticket: int | None) -> None:
        """Leave a committed intent to recovery, as a process dying right after the commit would."""
        try:
            if batch is not None:
                async with self._graph_lock:
                    if batch is self._batch:
                        await self._end_batch(batch, rollback=True)
        finally:
            if ticket is not None:  # the turn must be passed on whatever happened above
                await self._turns.wait(ticket)
                self._turns.done(ticket)  # the intent stays in the cache backlog

    async def _drop_graph(self, conn: Any) -> None:
        """Roll back the open Kuzu transaction and discard the connection."""
        with contextlib.suppress(Exception):
            await self.graph.run(conn, rollback_graph)
        with contextlib.suppress(TristoreError):
            self.graph.writer.discard(conn)

    async def _finish_graph(self, intent: Intent, batch: GraphBatch) -> None:
        if await batch.done:
            intent.graph_done = True
        # else: the batch ended without its COMMIT and the intent waits in the graph backlog

    async def _finish_cache(self, intent: Intent, ticket: int | None) -> None:
        if ticket is None:
            return
        await self._turns.wait(ticket)
        try:
            # An earlier turn may have sent this intent already, with everything queued then.
            if not intent.cache_done and time.monotonic() >= self._cache_retry_at:
                await self._apply_cache()
        finally:
            self._turns.done(ticket)

    # -- cache apply (always called while holding a turn) -----------------------------------
    async def _apply_cache(self) -> None:
        """Send the cache backlog, oldest first, ``pipeline_size`` scripts per round trip."""
        backlog = self._cache_backlog
        size = self.cache.settings.redis.pipeline_size
        while backlog:
            batch = list(itertools.islice(backlog, size))
            try:
                self.faults.fire("cache.apply")
                results = await self._run_scripts(batch)
            except Exception as exc:
                # Unreachable, timed out or refused: retried in order later. Scripts that ran
                # before the failure left their markers, so sending them again is a no-op.
                self._cache_retry_at = time.monotonic() + self.retry_backoff
                self._count("cache_apply_errors")
                log.warning(
                    "redis apply failed, %d transaction(s) left pending: %s", len(backlog), exc
                )
                return
            for item, result in zip(batch, results, strict=True):
                backlog.popleft()
                item.cache_done = True
                item.errors.extend(_script_errors(result))
                self._settle(item)

    async def _run_scripts(self, batch: Sequence[Intent]) -> list[Any]:
        ttl_ms = int(self.marker_ttl * 1000)
        calls = [(marker_key(i.txid), script_args(i.cache_ops, ttl_ms)) for i in batch]
        self._count("cache_round_trips")
        async with self.cache.client(timeout=self.lock_timeout) as conn:
            for attempt in (1, 2):
                if self._sha is None:
                    self._sha = await conn.script_load(APPLY_SCRIPT)
                try:
                    if len(calls) == 1:
                        key, argv = calls[0]
                        return [await conn.evalsha(self._sha, 1, key, *argv)]
                    pipe = conn.pipeline(transaction=False)
                    for key, argv in calls:
                        pipe.evalsha(self._sha, 1, key, *argv)
                    return list(await pipe.execute())
                except rexc.NoScriptError:
                    # Redis restarted and lost its script cache; reload and send again (the
                    # markers make a second send of an already applied script a no-op).
                    self._sha = None
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")  # pragma: no cover

    # -- settling and the applied marks -----------------------------------------------------
    def _settle(self, intent: Intent) -> None:
        if not intent.done or intent.marked or intent.txid in self._live:
            return
        intent.marked = True
        self._done.append(intent_log.mark_row(intent))
        self._count("failed" if intent.errors else "applied")
        if intent.errors:
            log.error("transaction %s committed, failed to apply: %s", intent.txid, intent.errors)
        if intent.settled is not None and not intent.settled.done():
            intent.settled.set_result(None)
        if self._flusher is None and self._open:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_later())

    async def _flush_later(self) -> None:
        try:
            await asyncio.sleep(self.flush_delay)
            self._flusher = None
            await self.flush()
        except TristoreError as exc:  # the next commit or sweep carries the marks instead
            log.debug("coordinator: flushing applied marks failed: %s", exc)
        finally:
            if self._flusher is asyncio.current_task():
                self._flusher = None

    async def flush(self) -> None:
        """Write the "applied" marks still held in memory (normally carried by the next commit)."""
        if not self._done:
            return
        rows, self._done = self._done, []
        try:
            await self.sqlite.write(lambda c: intent_log.mark(c, rows), timeout=self.lock_timeout)
        except BaseException:
            self._done[:0] = rows
            raise

    # -- recovery ---------------------------------------------------------------------------
    async def recover(self, *, rescan: bool = True) -> RecoveryReport:
        """Roll committed-but-unapplied intents forward, in commit order.

        ``rescan`` reads pending intents from the log (start-up, or another process's crash);
        without it only the in-memory backlog is retried (the periodic sweep).
        """
        self._require_open()
        assert self._recovering is not None
        started = time.monotonic()
        before = dict(self._counts)
        async with self._recovering:
            if rescan:
                await self._rescan()
            found = self.pending_count()
            await self._drain_graph()
            await self._drain_cache()
            with contextlib.suppress(TristoreError):
                await self.flush()
        return RecoveryReport(
            found=found,
            applied=self._counts["applied"] - before["applied"],
            pending=self.pending_count(),
            failed=self._counts["failed"] - before["failed"],
            seconds=time.monotonic() - started,
        )

    async def _rescan(self) -> None:
        loaded = await self.sqlite.read(intent_log.load_pending)
        known = {i.txid for i in (*self._graph_backlog, *self._cache_backlog)} | self._live
        known |= {row[3] for row in self._done}
        fresh = [i for i in loaded if i.txid not in known]
        if not fresh:
            return
        # Appended under both orders' locks, so no live transaction slips its work in between.
        async with self.graph.writer.acquire(timeout=self.lock_timeout):
            ticket = self._turns.take()
            await self._turns.wait(ticket)
            try:
                for intent in fresh:
                    if not intent.graph_done:
                        self._graph_backlog.append(intent)
                    if not intent.cache_done:
                        self._cache_backlog.append(intent)
            finally:
                self._turns.done(ticket)

    async def _drain_graph(self) -> None:
        if not self._graph_backlog:
            return
        acq = self.graph.writer.acquire(timeout=self.lock_timeout)
        try:
            conn = await acq.__aenter__()
        except (PoolTimeout, StoreUnavailable) as exc:
            log.warning("recovery: graph writer lane unavailable, will retry: %s", exc)
            return
        try:
            backlog = list(self._graph_backlog)
            faults = self.faults
            try:
                replayed, error = await self.graph.run(
                    conn, lambda c: replay_graph(c, backlog, faults)
                )
            except Exception as exc:
                replayed, error = 0, exc
            self._replayed(backlog[:replayed])
            if error is not None:
                self.graph.writer.discard(conn)
                self._replay_failed(backlog[replayed], error)
        finally:
            await acq.__aexit__(None, None, None)

    async def _drain_cache(self) -> None:
        if not self._cache_backlog:
            return
        ticket = self._turns.take()
        await self._turns.wait(ticket)
        try:
            self._cache_retry_at = 0.0
            await self._apply_cache()
        finally:
            self._turns.done(ticket)

    def _replayed(self, intents: Sequence[Intent]) -> None:
        for intent in intents:
            if self._graph_backlog and self._graph_backlog[0] is intent:
                self._graph_backlog.popleft()
            intent.graph_done = True
            self._count("replayed")
            self._settle(intent)

    def _replay_failed(self, intent: Intent, error: Exception) -> None:
        intent.attempts += 1
        if intent.attempts < self.max_replays:
            log.warning(
                "graph replay of %s failed (attempt %d of %d): %s",
                intent.txid,
                intent.attempts,
                self.max_replays,
                error,
            )
            return
        # A replay that fails this often is deterministic (the graph changed under it): give
        # up on it so the intents behind it are not blocked forever; the validator reports it.
        if self._graph_backlog and self._graph_backlog[0] is intent:
            self._graph_backlog.popleft()
        intent.graph_done = True
        intent.errors.append(f"graph: {graph_translate(error)}")
        self._settle(intent)

    async def _sweep_loop(self) -> None:
        assert self.recovery_interval is not None
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.recovery_interval):
                    await self._stop.wait()
            if self._stop.is_set():
                return
            try:
                await self.recover(rescan=False)
                if self.retention is not None:
                    await self.prune(self.retention)
            except Exception:  # a sweep must never kill the sweeper
                log.exception("coordinator: recovery sweep failed")

    async def prune(self, older_than: float, *, limit: int = 500) -> int:
        """Forget settled intents applied more than ``older_than`` seconds ago, with markers.

        Markers go first: an intent row without markers is harmless (settled rows are never
        replayed), a marker without its row would read as an uncommitted effect.
        """
        before = time.time() - older_than
        rows = await self.sqlite.read(lambda c: intent_log.prunable(c, before, limit))
        if not rows:
            return 0
        graph_ids = [txid for txid, has_graph, _ in rows if has_graph]
        cache_keys = [marker_key(txid) for txid, _, has_cache in rows if has_cache]
        if graph_ids:
            await self.graph.write([(MARKERS_DELETE, {"ids": graph_ids})])
        if cache_keys:
            await self.cache.execute("DEL", *cache_keys)
        txids = [txid for txid, _, _ in rows]
        deleted = await self.sqlite.write(lambda c: intent_log.delete(c, txids))
        self._count("pruned", deleted)
        return deleted

    # -- introspection ----------------------------------------------------------------------
    def pending_count(self) -> int:
        return len({i.txid for i in (*self._graph_backlog, *self._cache_backlog)})

    def _count(self, name: str, n: int = 1) -> None:
        self._counts[name] += n

    def stats(self) -> dict[str, int]:
        return {
            **self._counts,
            "graph_backlog": len(self._graph_backlog),
            "cache_backlog": len(self._cache_backlog),
            "pending": self.pending_count(),
            "marks_unflushed": len(self._done),
        }

    async def validate(self, **options: Any) -> Any:
        """Shorthand for :func:`tristore.coordinator.validate_consistency`."""
        return await validate_consistency(self, **options)


def _log_work(intent: Intent | None, marks: list[Mark]) -> Callable[[sqlite3.Connection], None]:
    """The intent row and the "applied" marks, written in the committing SQLite transaction."""

    def work(c: sqlite3.Connection) -> None:
        if intent is not None:
            intent.seq = intent_log.insert(c, intent)
        intent_log.mark(c, marks)

    return work


def _script_errors(result: Any) -> list[str]:
    code = int(result[0])
    if code == 0:  # applied before (a replay): the marker says how it went then
        seen = result[1] if len(result) > 1 else b"applied"
        return ["cache: failed at an earlier apply"] if seen in (b"failed", "failed") else []
    return [f"cache: {_text(m)}" for m in result[1:]]


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _forget(tasks: set[asyncio.Task[Any]]) -> Callable[[asyncio.Task[Any]], None]:
    def done(task: asyncio.Task[Any]) -> None:
        tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a caller that was cancelled never awaits it

    return done
