"""The coordinator: its services, its life cycle, and what it reports.

A :class:`~.transaction.Transaction` owns its commit and uses the services here: the graph
check (:mod:`.graph_check`), the graph applier (:mod:`.graph_applier`), the cache applier
(:mod:`.cache_apply`), the strict stage (:mod:`.strict`) and the "applied" marks, which settled
intents leave for the intent log and which the next commit carries (or a short flush writes).
Recovery, the sweep and pruning are in :mod:`.recovery`.

Locks are taken in one order, each wait bounded by ``lock_timeout``: the SQLite writer lane, then
the Kuzu writer lane (the graph check on a cache miss, or a strict stage with the graph
applier's lock), then a cache turn. The graph applier never waits for the SQLite lane.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from tristore.config import CoordinatorSettings
from tristore.coordinator import log as intent_log
from tristore.coordinator import recovery
from tristore.coordinator.cache_apply import CacheApplier
from tristore.coordinator.faults import Faults
from tristore.coordinator.graph_applier import GraphApplier
from tristore.coordinator.graph_apply import MARKER_DDL
from tristore.coordinator.graph_check import GraphCheck
from tristore.coordinator.log import DeadLetter, Intent, Mark
from tristore.coordinator.ops import marker_key
from tristore.coordinator.recovery import RecoveryReport
from tristore.coordinator.strict import StrictStage
from tristore.coordinator.transaction import ORDERINGS, Ordering, Transaction
from tristore.coordinator.validate import validate_consistency
from tristore.errors import ConfigError, CoordinatorError, TristoreError
from tristore.stores import CacheStore, GraphStore, SQLiteStore

log = logging.getLogger(__name__)


class Coordinator:
    """Transactions across SQLite, Kuzu and Redis: SQLite commits, the others follow in order.

    One coordinator per set of stores (Kuzu allows one process per database anyway). Options
    default to ``sqlite.settings.coordinator`` (the ``[coordinator]`` settings); keywords
    override them, checked against the same ranges. Call :meth:`open` (creates the intent log
    and marker table, then runs recovery) before use.
    """

    def __init__(
        self,
        sqlite: SQLiteStore,
        graph: GraphStore,
        cache: CacheStore,
        **options: Any,
    ) -> None:
        for off in ("recovery_interval", "retention"):
            if off in options and options[off] is None:
                options[off] = 0.0
        self.settings: CoordinatorSettings = sqlite.settings.replace(
            coordinator=options
        ).coordinator
        if cache.cluster:
            raise ConfigError(
                "coordinator: cache ops are applied by one Lua script per transaction, which a "
                "Redis Cluster cannot run across hash slots; use a standalone Redis"
            )
        s = self.settings
        self.sqlite = sqlite
        self.graph = graph
        self.cache = cache
        self.lock_timeout = s.lock_timeout
        self.graph_wait = s.graph_wait
        self.faults = Faults()
        self.graph_check = GraphCheck(graph)
        self.graph_applier = GraphApplier(
            graph,
            self.faults,
            batch_size=s.graph_batch_size,
            lock_timeout=s.lock_timeout,
            retry_backoff=s.retry_backoff,
            max_replays=s.max_replays,
            settle=self.settle,
            count=self.count,
        )
        self.cache_applier = CacheApplier(
            cache,
            self.faults,
            marker_ttl=s.marker_ttl,
            lock_timeout=s.lock_timeout,
            retry_backoff=s.retry_backoff,
            settle=self.settle,
            count=self.count,
        )
        self._open = False
        self._marks: list[Mark] = []  # settled intents' final states, not yet in the log
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self.recovering: asyncio.Lock | None = None
        self.rescan_due = False  # an intent was left to recovery: the next sweep reads the log
        self._stop = asyncio.Event()
        self._counts: dict[str, int] = dict.fromkeys(
            (
                "begun",
                "committed",
                "rolled_back",
                "applied",
                "failed",
                "dead_lettered",
                "retried",
                "pending_after_commit",
                "graph_wait_expired",
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
        """Create the log and marker tables, roll pending intents forward, start the workers."""
        if self._open:
            return RecoveryReport(0, 0, self.pending_count(), 0, 0.0)
        self.recovering = asyncio.Lock()
        self._stop = asyncio.Event()
        await self.sqlite.write(intent_log.create)
        await self.graph.write([(MARKER_DDL, None)])
        self._open = True
        self.graph_applier.start()
        try:
            report = await self.recover()
        except BaseException:
            self._open = False
            await self.graph_applier.stop()
            raise
        if self.settings.recovery_interval:
            self._sweeper = asyncio.create_task(
                recovery.sweep(self, self.settings.recovery_interval, self._stop),
                name="tristore-recovery",
            )
        return report

    async def close(self) -> None:
        """Refuse new transactions, let running commits finish, flush the applied marks.

        Intents still queued for a store that is down stay pending in the log; the next
        :meth:`open` rolls them forward.
        """
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
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(TristoreError):
            await self.graph_applier.drain()
        await self.graph_applier.stop()
        with contextlib.suppress(TristoreError):
            await self.flush()

    async def __aenter__(self) -> Coordinator:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def require_open(self) -> None:
        if not self._open:
            raise CoordinatorError("coordinator is not open: call `await coordinator.open()`")

    def transaction(
        self, *, timeout: float | None = None, ordering: Ordering | None = None
    ) -> Transaction:
        """A coordinated transaction; ``timeout`` bounds the wait for the SQLite writer lane.

        ``ordering`` (default: the coordinator's): ``"deferred"`` applies graph ops after the
        SQLite commit, ``"strict"`` executes them before it (see the package docstring).
        """
        chosen = self.settings.ordering if ordering is None else ordering
        if chosen not in ORDERINGS:
            raise ConfigError(f"ordering: expected one of {list(ORDERINGS)}, got {ordering!r}")
        return Transaction(self, self.lock_timeout if timeout is None else timeout, chosen)

    # -- services for transactions ----------------------------------------------------------
    def spawn(
        self, coro: Coroutine[Any, Any, Any], context: contextvars.Context | None = None
    ) -> asyncio.Task[Any]:
        """A task ``close()`` waits for."""
        task = asyncio.get_running_loop().create_task(coro, context=context)
        self._tasks.add(task)
        task.add_done_callback(_forget(self._tasks))
        return task

    async def stage_strict(self, intent: Intent) -> StrictStage:
        return await StrictStage.open(
            self.graph_applier, self.graph, intent, self.faults, timeout=self.lock_timeout
        )

    async def with_marks(self, commit: Callable[[list[Mark]], Awaitable[None]]) -> None:
        """``commit`` carries the "applied" marks held in memory; restored if it fails."""
        marks, self._marks = self._marks, []
        try:
            await commit(marks)
        except BaseException:
            self._marks[:0] = marks  # SQLite rolled back: the marks are still to be written
            raise

    def abandoned(self) -> None:
        """A committed intent was left to recovery (a test fault): the next sweep rescans."""
        self.rescan_due = True

    def count(self, name: str, n: int = 1) -> None:
        self._counts[name] += n

    # -- settling and the applied marks -----------------------------------------------------
    def settle(self, intent: Intent) -> None:
        """Called by an applier when it finished its part; once both are, the intent is settled."""
        if not intent.done or intent.marked:
            return
        intent.marked = True
        self._marks.append(intent_log.mark_row(intent))
        self.count("failed" if intent.errors else "applied")
        if intent.errors:
            log.error("transaction %s committed, failed to apply: %s", intent.txid, intent.errors)
        if intent.settled is not None and not intent.settled.done():
            intent.settled.set_result(None)
        if self._flusher is None and self._open:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_later())

    async def _flush_later(self) -> None:
        try:
            await asyncio.sleep(self.settings.flush_delay)
            self._flusher = None
            await self.flush()
        except TristoreError as exc:  # the next commit or sweep carries the marks instead
            log.debug("coordinator: flushing applied marks failed: %s", exc)
        finally:
            if self._flusher is asyncio.current_task():
                self._flusher = None

    async def flush(self) -> None:
        """Write the "applied" marks still held in memory (normally carried by the next commit)."""
        if not self._marks:
            return
        rows, self._marks = self._marks, []
        try:
            await self.sqlite.write(lambda c: intent_log.mark(c, rows), timeout=self.lock_timeout)
        except BaseException:
            self._marks[:0] = rows
            raise

    def unflushed(self) -> set[str]:
        return {row[3] for row in self._marks}

    # -- recovery and dead letters ----------------------------------------------------------
    async def recover(self, *, rescan: bool = True) -> RecoveryReport:
        """Roll committed-but-unapplied intents forward, in commit order.

        ``rescan`` reads pending intents from the log (start-up, or another process's crash);
        without it only the in-memory queues are retried (the periodic sweep).
        """
        self.require_open()
        return await recovery.recover(self, rescan=rescan)

    async def dead_letters(self) -> list[DeadLetter]:
        """Committed transactions a store rejected when applied alone, with their errors."""
        await self.flush()
        return await self.sqlite.read(intent_log.load_failed)

    async def retry(self, txids: list[str] | None = None) -> RecoveryReport:
        """Apply dead letters again (all, or ``txids``), in commit order, after a fix.

        A dead letter that fails again is dead-lettered again with its new error.
        """
        self.require_open()
        await self.flush()
        letters = await self.sqlite.read(lambda c: intent_log.load_failed(c, txids))
        if not letters:
            return RecoveryReport(0, 0, self.pending_count(), 0, 0.0)
        ids = [d.txid for d in letters]
        # A cache script that failed wrote nothing but its marker ("failed"): drop the marker
        # so the script runs again.
        cache_failed = [marker_key(d.txid) for d in letters if d.error and "cache:" in d.error]
        if cache_failed:
            await self.cache.execute("DEL", *cache_failed)
        await self.sqlite.write(lambda c: intent_log.requeue(c, ids))
        self.count("retried", len(ids))
        return await recovery.recover(self, rescan=True)

    async def prune(self, older_than: float, *, limit: int = 500) -> int:
        """Forget settled intents applied more than ``older_than`` seconds ago, with markers."""
        return await recovery.prune(self, older_than, limit=limit)

    # -- introspection ----------------------------------------------------------------------
    def pending_count(self) -> int:
        queued = (*self.graph_applier.queue, *self.cache_applier.backlog)
        return len({i.txid for i in queued})

    def stats(self) -> dict[str, int]:
        return {
            **self._counts,
            "graph_backlog": len(self.graph_applier.queue),
            "cache_backlog": len(self.cache_applier.backlog),
            "pending": self.pending_count(),
            "marks_unflushed": len(self._marks),
            "graph_checks": self.graph_check.explained,
            "graph_containments": self.graph.containments,
        }

    async def validate(self, **options: Any) -> Any:
        """Shorthand for :func:`tristore.coordinator.validate_consistency`."""
        return await validate_consistency(self, **options)


def _forget(tasks: set[asyncio.Task[Any]]) -> Callable[[asyncio.Task[Any]], None]:
    def done(task: asyncio.Task[Any]) -> None:
        tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a caller that was cancelled never awaits it

    return done
