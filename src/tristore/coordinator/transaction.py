"""The transaction: ``async with coordinator.transaction() as tx``, and its commit protocol.

A :class:`Transaction` is the one owner of a coordinated transaction. It holds the SQLite writer
lane from ``__aenter__`` to the end of its commit, runs ``tx.sql`` statements at once inside the
SQLite transaction, and stages graph and cache operations in its :class:`~.log.Intent`, the record
that is logged with the commit and that the appliers work from: ops, pending stores and errors
are the intent's, never copies. The coordinator provides the services (validation, the two
appliers, the applied marks); the order in which a commit uses them is here, in
:meth:`Transaction._commit`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import sqlite3
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from tristore.coordinator import log as intent_log
from tristore.coordinator.log import Intent, Mark
from tristore.coordinator.ops import cache_op, check_sql, graph_op
from tristore.errors import (
    CoordinatorError,
    CoordinatorTimeout,
    DeadlockError,
    PoolTimeout,
    TristoreError,
)
from tristore.stores.sqlite import DRIVER_ERRORS, Params, WriterTx, check_params
from tristore.stores.sqlite import translate as sqlite_translate

if TYPE_CHECKING:
    from tristore.coordinator.core import Coordinator
    from tristore.coordinator.strict import StrictStage

T = TypeVar("T")
Hook = Callable[[], Any]  # returns None or an awaitable
Ordering = Literal["deferred", "strict"]
ORDERINGS: tuple[str, ...] = ("deferred", "strict")

log = logging.getLogger(__name__)

# Whether a coordinated transaction is open in this task: opening a second one would wait on the
# SQLite writer lane the first one holds, a self-deadlock that is refused at once instead.
open_in_task: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "tristore_coordinated_transaction_open", default=False
)


@dataclass(frozen=True)
class SqlResult:
    """What ``tx.sql`` returns: fetched rows (RETURNING or SELECT), lastrowid and rowcount."""

    rows: list[tuple[Any, ...]]
    lastrowid: int | None
    rowcount: int

    def scalar(self) -> Any:
        """The first column of the first row, or None."""
        return self.rows[0][0] if self.rows else None


class Transaction:
    """``async with coordinator.transaction() as tx``: see the package docstring.

    After the block: ``state`` is ``"committed"`` or ``"rolled_back"``; ``pending`` names the
    stores whose part is committed but not yet applied (empty once fully applied);
    ``apply_errors`` lists graph or cache work a store rejected after the commit (the
    transaction is then a dead letter, see :meth:`Coordinator.retry`).
    """

    def __init__(self, coordinator: Coordinator, timeout: float, ordering: Ordering) -> None:
        self._coordinator = coordinator
        self._timeout = timeout
        self.ordering = ordering
        self.intent = Intent(uuid.uuid4().hex, [], [])
        self._state = "new"
        self._failure: BaseException | None = None
        self._sql_lock = asyncio.Lock()
        self._token: contextvars.Token[bool] | None = None
        self._lane: contextlib.AsyncExitStack | None = None
        self._writer: WriterTx | None = None  # the step-by-step writer while the lane is held
        self._abort_hooks: list[Hook] = []
        self._commit_hooks: list[Hook] = []
        self.hook_errors: list[BaseException] = []

    @property
    def txid(self) -> str:
        return self.intent.txid

    @property
    def state(self) -> str:
        return self._state

    @property
    def committed(self) -> bool:
        return self._state == "committed"

    @property
    def pending(self) -> tuple[str, ...]:
        return self.intent.pending_stores() if self._state == "committed" else ()

    @property
    def apply_errors(self) -> list[str]:
        return list(self.intent.errors)

    # -- life cycle -------------------------------------------------------------------------
    async def __aenter__(self) -> Transaction:
        coordinator = self._coordinator
        if open_in_task.get():
            coordinator.count("deadlocks")
            raise DeadlockError(
                "a coordinated transaction is already open in this task: a nested one would wait "
                "forever for the SQLite writer lane the outer one holds"
            )
        coordinator.require_open()
        if self._state != "new":
            raise CoordinatorError("a Transaction object can be entered only once")
        lane = contextlib.AsyncExitStack()
        try:
            self._writer = await lane.enter_async_context(
                coordinator.sqlite.write_lane(self._timeout)
            )
        except PoolTimeout as exc:
            coordinator.count("lock_timeouts")
            raise CoordinatorTimeout(
                f"waited {self._timeout:g}s for the SQLite writer lane (the first lock of a "
                "coordinated transaction); nothing was done"
            ) from exc
        self._lane = lane
        self._token = open_in_task.set(True)
        self._state = "open"
        coordinator.count("begun")
        return self

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        # Reset first: hooks run below may open a transaction of their own (the lane is free by
        # then), which must not be mistaken for nesting.
        if self._token is not None:
            open_in_task.reset(self._token)
            self._token = None
        if exc_type is None and self._failure is None:
            # Shielded: once started, the commit runs to its end even if the caller is
            # cancelled, so a cancellation never leaves one store committed and a lane held.
            context = contextvars.copy_context()
            context.run(open_in_task.set, False)  # hooks run in this task may open transactions
            await asyncio.shield(self._coordinator.spawn(self._commit(), context))
            return False
        failure = exc if exc is not None else self._failure
        await self._abort(failure)
        if exc_type is None:
            raise CoordinatorError(
                f"transaction {self.txid} was rolled back: an operation in it failed "
                f"({self._failure})"
            ) from self._failure
        return False

    # -- staged operations ------------------------------------------------------------------
    async def sql(self, sql: str, params: Params = ()) -> SqlResult:
        """Run one parameterized statement now, inside the transaction; rows/ids come back."""
        self._require_open()
        try:
            check_sql(sql)
            check_params(params, self._coordinator.sqlite.settings.sqlite.max_value_bytes)
        except TristoreError as exc:
            self._failure = exc
            raise
        return await self._run_sql(lambda c: _execute(c, sql, params))

    async def sql_fn(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` inside the transaction (several statements, no await between).

        ``fn`` must not commit or roll back. It runs on the event loop when the SQLite writer is
        in inline mode, else on its thread; it may be called again on the thread (with the
        transaction's earlier statements replayed) if a statement meets SQLITE_BUSY or exceeds
        ``sqlite.inline_max_steps``, so it must have no effects outside the connection and
        return an equal value for the same data (see :class:`tristore.stores.sqlite.WriterTx`).
        """
        self._require_open()
        return await self._run_sql(fn)

    def graph(self, cypher: str, params: Mapping[str, Any] | None = None) -> None:
        """Stage a Cypher write: validated before the commit, applied after it (see the
        package docstring for the two orderings)."""
        self._require_open()
        limit = self._coordinator.graph.settings.graph.max_value_bytes
        try:
            self.intent.graph_ops.append(graph_op(cypher, params, limit))
        except TristoreError as exc:
            self._failure = exc
            raise

    def cache(self, *command: Any) -> None:
        """Stage a Redis write, e.g. ``tx.cache("HSET", key, "field", value)``."""
        self._require_open()
        limit = self._coordinator.cache.settings.redis.max_value_bytes
        try:
            self.intent.cache_ops.append(cache_op(command, limit))
        except TristoreError as exc:
            self._failure = exc
            raise

    def on_abort(self, fn: Hook) -> None:
        """Call ``fn()`` (sync or async) if the transaction rolls back: undo outside effects."""
        self._require_open()
        self._abort_hooks.append(fn)

    def after_commit(self, fn: Hook) -> None:
        """Call ``fn()`` once committed and applied (or pending); errors are logged, not raised."""
        self._require_open()
        self._commit_hooks.append(fn)

    async def applied(self, timeout: float | None = None) -> None:
        """Wait until a committed transaction's graph and cache work is applied (or failed).

        Afterwards a reader of any of the three stores sees this transaction's writes (unless
        ``apply_errors`` says a store rejected them).
        """
        intent = self.intent
        if self._state != "committed":
            raise CoordinatorError(f"transaction {self.txid} is {self._state}, not committed")
        if intent.done:
            return
        if intent.settled is None:
            intent.settled = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(intent.settled)
        except TimeoutError:
            raise CoordinatorTimeout(
                f"transaction {self.txid}: {', '.join(intent.pending_stores())} still "
                f"pending after {timeout:g}s (recovery keeps retrying)"
            ) from None

    # -- the commit protocol ----------------------------------------------------------------
    async def _commit(self) -> None:
        """Validate (or stage, strict), commit SQLite, queue the apply, release, wait for it."""
        c = self._coordinator
        intent = self.intent
        logged = intent if intent.graph_ops or intent.cache_ops else None
        strict: StrictStage | None = None
        try:
            if intent.graph_ops:
                if self.ordering == "strict":
                    strict = await c.stage_strict(intent)
                else:
                    await c.graph_check.validate(intent.graph_ops, timeout=c.lock_timeout)
            await c.with_marks(lambda marks: self._commit_sqlite(logged, marks))
        except BaseException as exc:
            if strict is not None:
                await strict.abort()
            await self._abort(exc)
            raise
        # -- committed: from here on nothing is raised to the caller --
        self._state = "committed"
        c.count("committed")
        ticket: int | None = None
        abandoned = False
        if logged is not None:
            try:
                c.faults.fire("after_commit")
            except Exception:
                # As if the process died right here: the intent is in the log, pending, and
                # only recovery will apply it.
                abandoned = True
                c.abandoned()
            else:
                # Queued while the lane is held: both queues are in commit order.
                if intent.graph_ops:
                    c.graph_applier.enqueue(intent)
                if intent.cache_ops:
                    ticket = c.cache_applier.enqueue(intent)
        await self._release_lane()
        if strict is not None and abandoned:
            await strict.abort()  # left to recovery, graph part included
        elif logged is not None and not abandoned:
            if strict is not None:
                await strict.commit()
            if ticket is not None:
                await c.cache_applier.finish(intent, ticket)
            # Bounded: an engine stall (a Kuzu checkpoint) must not hold every commit; past
            # graph_wait the graph stays pending, and tx.applied() waits for it.
            if (
                intent.graph_ops
                and strict is None
                and not await c.graph_applier.attempted(intent, c.graph_wait)
            ):
                c.count("graph_wait_expired")
            if intent.pending_stores():
                c.count("pending_after_commit")
        await self._run_hooks(self._commit_hooks)

    async def _commit_sqlite(self, intent: Intent | None, marks: list[Mark]) -> None:
        writer = self._writer
        assert writer is not None, "the SQLite lane is not held"
        if not writer.in_transaction and intent is None and not marks:
            return  # nothing was written: there is nothing to commit
        faults = self._coordinator.faults

        def work(conn: sqlite3.Connection) -> None:
            # BEGIN IMMEDIATE (if no tx.sql ran) and COMMIT come from the step around this.
            faults.fire("sqlite.commit")
            if intent is not None:
                intent.seq = intent_log.insert(conn, intent)
            intent_log.mark(conn, marks)

        try:
            await writer.step(work, commit=True)
        except sqlite3.Error as exc:
            raise sqlite_translate(exc) from exc

    async def _release_lane(self) -> None:
        """Give the lane back after the commit. Never raises: the commit is done."""
        lane, self._lane, self._writer = self._lane, None, None
        if lane is not None:
            try:
                await lane.aclose()
            except Exception:  # pragma: no cover - the pool's return path does not raise
                log.exception("coordinated transaction %s: returning the SQLite lane", self.txid)

    async def _abort(self, failure: BaseException | None) -> None:
        """Roll SQLite back (the lane does it on an error exit), give the lane back, run hooks."""
        lane, self._lane, self._writer = self._lane, None, None
        if lane is not None:
            error = failure if failure is not None else CoordinatorError("rolled back")
            await lane.__aexit__(type(error), error, error.__traceback__)
        self._state = "rolled_back"
        self._coordinator.count("rolled_back")
        await self._run_hooks(self._abort_hooks)

    async def _run_hooks(self, hooks: list[Hook]) -> None:
        """Call each hook; a failing one is logged and kept in ``hook_errors``, not raised."""
        for fn in hooks:
            try:
                result = fn()
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                log.exception("coordinated transaction %s: hook %r failed", self.txid, fn)
                self.hook_errors.append(exc)

    # -- internals --------------------------------------------------------------------------
    def _require_open(self) -> None:
        if self._state != "open":
            raise CoordinatorError(f"transaction {self.txid} is {self._state}, not open")

    async def _run_sql(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        async with self._sql_lock:
            if self._failure is not None:
                raise CoordinatorError(
                    f"transaction {self.txid} already failed ({self._failure}); it will roll back"
                ) from self._failure
            writer = self._writer
            try:
                result = await writer.step(fn)
            except DRIVER_ERRORS as exc:  # sqlite3's, and its bare OverflowError for a huge int
                err = sqlite_translate(exc)
                self._failure = err
                raise err from exc
            except BaseException as exc:
                self._failure = exc
                raise
            if not writer.in_transaction:
                # fn committed or rolled back behind the coordinator's back: whatever it wrote
                # is outside this transaction now. Refuse to go on.
                self._failure = CoordinatorError(
                    f"transaction {self.txid}: the SQL ended the SQLite transaction itself"
                )
                raise self._failure
            return result


def _execute(conn: sqlite3.Connection, sql: str, params: Params) -> SqlResult:
    cur = conn.execute(sql, params)
    rows = cur.fetchall() if cur.description else []
    return SqlResult(rows, cur.lastrowid, cur.rowcount)
