"""The transaction object: ``async with coordinator.transaction() as tx``.

It holds the SQLite writer lane from ``__aenter__`` to the end of the commit, runs ``tx.sql``
statements at once inside the SQLite transaction, and stages graph and cache operations (checked
here, applied by the coordinator at commit). Any failure marks the transaction failed, so that it
rolls back as a whole even if the body swallowed the error.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import sqlite3
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from tristore.coordinator.ops import cache_op, check_sql, graph_op
from tristore.errors import (
    CoordinatorError,
    CoordinatorTimeout,
    DeadlockError,
    PoolTimeout,
    TristoreError,
)
from tristore.stores.sqlite import (
    DRIVER_ERRORS,
    Params,
    SQLiteConnection,
    WriterTx,
    check_params,
)
from tristore.stores.sqlite import translate as sqlite_translate

if TYPE_CHECKING:
    from tristore.coordinator.core import Coordinator
    from tristore.coordinator.log import Intent

log = logging.getLogger(__name__)

T = TypeVar("T")
Hook = Callable[[], Any]  # returns None or an awaitable

# The coordinated transaction open in this task, if any: opening a second one would wait on the
# SQLite writer lane the first one holds, a self-deadlock that is refused at once instead.
_current: contextvars.ContextVar[Transaction | None] = contextvars.ContextVar(
    "tristore_coordinated_transaction", default=None
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
    stores whose part is committed but not yet applied (empty when fully applied);
    ``apply_errors`` lists cache or graph work a store rejected after the commit.
    """

    def __init__(self, coordinator: Coordinator, timeout: float) -> None:
        self.coordinator = coordinator
        self.txid = uuid.uuid4().hex
        self.state = "new"
        self.pending: tuple[str, ...] = ()
        self.apply_errors: list[str] = []
        self.hook_errors: list[BaseException] = []
        self._timeout = timeout
        self._graph_ops: list[tuple[str, dict[str, Any]]] = []
        self._cache_ops: list[list[str]] = []
        self._abort_hooks: list[Hook] = []
        self._commit_hooks: list[Hook] = []
        self._acq: Any = None
        self._conn: SQLiteConnection | None = None
        self._wtx: WriterTx | None = None
        self._begun = False
        self._failure: BaseException | None = None
        self._sql_lock = asyncio.Lock()
        self._token: contextvars.Token[Transaction | None] | None = None
        self._intent: Intent | None = None

    @property
    def committed(self) -> bool:
        return self.state == "committed"

    # -- life cycle -------------------------------------------------------------------------
    async def __aenter__(self) -> Transaction:
        coord = self.coordinator
        if _current.get() is not None:
            coord._count("deadlocks")
            raise DeadlockError(
                "a coordinated transaction is already open in this task: a nested one would wait "
                "forever for the SQLite writer lane the outer one holds"
            )
        coord._require_open()
        if self.state != "new":
            raise CoordinatorError("a Transaction object can be entered only once")
        self._acq = coord.sqlite.writer.acquire(timeout=self._timeout)
        try:
            self._conn = await self._acq.__aenter__()
        except PoolTimeout as exc:
            coord._count("lock_timeouts")
            raise CoordinatorTimeout(
                f"waited {self._timeout:g}s for the SQLite writer lane (the first lock of a "
                "coordinated transaction); nothing was done"
            ) from exc
        try:
            await coord.sqlite.relieve_wal(self._conn)
        except BaseException:
            await self._acq.__aexit__(None, None, None)
            raise
        self._wtx = coord.sqlite.writer_tx(self._conn)
        self._token = _current.set(self)
        self.state = "open"
        coord._count("begun")
        return self

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        # Reset first: hooks run below may open a transaction of their own (the lane is free by
        # then), which must not be mistaken for nesting.
        if self._token is not None:
            _current.reset(self._token)
            self._token = None
        if exc_type is None and self._failure is None:
            await self.coordinator._commit(self)
            return False
        await self._abort()
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
            check_params(params, self.coordinator.sqlite.settings.sqlite.max_value_bytes)
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
        """Stage a Cypher write; it runs (and is validated) at commit, before SQLite commits."""
        self._require_open()
        limit = self.coordinator.graph.settings.graph.max_value_bytes
        try:
            self._graph_ops.append(graph_op(cypher, params, limit))
        except TristoreError as exc:
            self._failure = exc
            raise

    def cache(self, *command: Any) -> None:
        """Stage a Redis write, e.g. ``tx.cache("HSET", key, "field", value)``."""
        self._require_open()
        limit = self.coordinator.cache.settings.redis.max_value_bytes
        try:
            self._cache_ops.append(cache_op(command, limit))
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
        """Wait until a committed transaction's graph and cache work is applied (or failed)."""
        intent = self._intent
        if self.state != "committed":
            raise CoordinatorError(f"transaction {self.txid} is {self.state}, not committed")
        if intent is None:
            return
        if not intent.done:
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
        self.pending = intent.pending_stores()
        self.apply_errors = list(intent.errors)

    # -- internals --------------------------------------------------------------------------
    def _require_open(self) -> None:
        if self.state != "open":
            raise CoordinatorError(f"transaction {self.txid} is {self.state}, not open")

    async def _run_sql(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn, wtx = self._conn, self._wtx
        assert conn is not None and wtx is not None
        async with self._sql_lock:
            if self._failure is not None:
                raise CoordinatorError(
                    f"transaction {self.txid} already failed ({self._failure}); it will roll back"
                ) from self._failure
            try:
                result = await wtx.step(fn)
            except DRIVER_ERRORS as exc:  # sqlite3's, and its bare OverflowError for a huge int
                err = sqlite_translate(exc)
                self._failure = err
                raise err from exc
            except BaseException as exc:
                self._failure = exc
                raise
            finally:
                self._begun = conn.raw.in_transaction
            if not self._begun:
                # fn committed or rolled back behind the coordinator's back: whatever it wrote
                # is outside this transaction now. Refuse to go on.
                self._failure = CoordinatorError(
                    f"transaction {self.txid}: the SQL ended the SQLite transaction itself"
                )
                raise self._failure
            return result

    async def _abort(self) -> None:
        await self._rollback_sqlite()
        self.state = "rolled_back"
        self.coordinator._count("rolled_back")
        await self._run_hooks(self._abort_hooks)

    async def _rollback_sqlite(self) -> None:
        conn, acq, wtx = self._conn, self._acq, self._wtx
        if conn is None or acq is None or wtx is None:
            return
        self._conn = self._acq = self._wtx = None
        failed: BaseException | None = None
        try:
            await asyncio.shield(wtx.rollback())
        except BaseException as exc:  # cancelled, or the rollback itself failed: unknown state
            self.coordinator.sqlite.writer.discard(conn)
            failed = exc
        await acq.__aexit__(None, None, None)
        if failed is not None and not isinstance(failed, Exception):
            raise failed

    async def _release_sqlite(self) -> None:
        acq = self._acq
        self._conn = self._acq = self._wtx = None
        if acq is not None:
            # Never raises: the commit is done, and the caller holds a cache turn that the
            # transactions behind it are waiting for.
            try:
                await acq.__aexit__(None, None, None)
            except Exception:  # pragma: no cover - the pool's return path does not raise
                log.exception("coordinated transaction %s: returning the SQLite lane", self.txid)

    async def _run_hooks(self, hooks: Sequence[Hook]) -> None:
        for fn in hooks:
            try:
                result = fn()
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                log.exception("coordinated transaction %s: hook %r failed", self.txid, fn)
                self.hook_errors.append(exc)


def _execute(conn: sqlite3.Connection, sql: str, params: Params) -> SqlResult:
    cur = conn.execute(sql, params)
    rows = cur.fetchall() if cur.description else []
    return SqlResult(rows, cur.lastrowid, cur.rowcount)
