"""The transaction object: ``async with coordinator.transaction() as tx``.

It holds the SQLite writer lane from ``__aenter__`` to the end of the commit, runs ``tx.sql``
statements at once inside the SQLite transaction, and stages graph and cache operations (checked
here, applied by the coordinator at commit). Any failure marks the transaction failed, so that it
rolls back as a whole even if the body swallowed the error.
"""

from __future__ import annotations

import asyncio
import contextvars
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from tristore.coordinator.ops import cache_op, check_sql, graph_op
from tristore.coordinator.txstate import Hook, TxHost, TxState, open_in_task
from tristore.errors import CoordinatorError, CoordinatorTimeout, DeadlockError, TristoreError
from tristore.stores.sqlite import DRIVER_ERRORS, Params, check_params
from tristore.stores.sqlite import translate as sqlite_translate

T = TypeVar("T")


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

    def __init__(self, host: TxHost, timeout: float) -> None:
        self._host = host
        self._tx = TxState(host, timeout)
        self._failure: BaseException | None = None
        self._sql_lock = asyncio.Lock()
        self._token: contextvars.Token[bool] | None = None

    @property
    def txid(self) -> str:
        return self._tx.txid

    @property
    def state(self) -> str:
        return self._tx.state

    @property
    def pending(self) -> tuple[str, ...]:
        return self._tx.pending

    @property
    def apply_errors(self) -> list[str]:
        return self._tx.apply_errors

    @property
    def hook_errors(self) -> list[BaseException]:
        return self._tx.hook_errors

    @property
    def committed(self) -> bool:
        return self._tx.state == "committed"

    # -- life cycle -------------------------------------------------------------------------
    async def __aenter__(self) -> Transaction:
        host, tx = self._host, self._tx
        if open_in_task.get():
            host.count("deadlocks")
            raise DeadlockError(
                "a coordinated transaction is already open in this task: a nested one would wait "
                "forever for the SQLite writer lane the outer one holds"
            )
        host.check_open()
        if tx.state != "new":
            raise CoordinatorError("a Transaction object can be entered only once")
        await tx.take_lane()
        self._token = open_in_task.set(True)
        tx.state = "open"
        host.count("begun")
        return self

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        # Reset first: hooks run below may open a transaction of their own (the lane is free by
        # then), which must not be mistaken for nesting.
        if self._token is not None:
            open_in_task.reset(self._token)
            self._token = None
        if exc_type is None and self._failure is None:
            await self._host.commit(self._tx)
            return False
        await self._tx.abort()
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
            check_params(params, self._host.sql_value_limit)
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
        try:
            self._tx.graph_ops.append(graph_op(cypher, params, self._host.graph_value_limit))
        except TristoreError as exc:
            self._failure = exc
            raise

    def cache(self, *command: Any) -> None:
        """Stage a Redis write, e.g. ``tx.cache("HSET", key, "field", value)``."""
        self._require_open()
        try:
            self._tx.cache_ops.append(cache_op(command, self._host.cache_value_limit))
        except TristoreError as exc:
            self._failure = exc
            raise

    def on_abort(self, fn: Hook) -> None:
        """Call ``fn()`` (sync or async) if the transaction rolls back: undo outside effects."""
        self._require_open()
        self._tx.abort_hooks.append(fn)

    def after_commit(self, fn: Hook) -> None:
        """Call ``fn()`` once committed and applied (or pending); errors are logged, not raised."""
        self._require_open()
        self._tx.commit_hooks.append(fn)

    async def applied(self, timeout: float | None = None) -> None:
        """Wait until a committed transaction's graph and cache work is applied (or failed)."""
        tx = self._tx
        intent = tx.intent
        if tx.state != "committed":
            raise CoordinatorError(f"transaction {tx.txid} is {tx.state}, not committed")
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
                    f"transaction {tx.txid}: {', '.join(intent.pending_stores())} still "
                    f"pending after {timeout:g}s (recovery keeps retrying)"
                ) from None
        tx.pending = intent.pending_stores()
        tx.apply_errors = list(intent.errors)

    # -- internals --------------------------------------------------------------------------
    def _require_open(self) -> None:
        if self._tx.state != "open":
            raise CoordinatorError(f"transaction {self.txid} is {self._tx.state}, not open")

    async def _run_sql(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        tx = self._tx
        async with self._sql_lock:
            if self._failure is not None:
                raise CoordinatorError(
                    f"transaction {tx.txid} already failed ({self._failure}); it will roll back"
                ) from self._failure
            try:
                result = await tx.step(fn)
            except DRIVER_ERRORS as exc:  # sqlite3's, and its bare OverflowError for a huge int
                err = sqlite_translate(exc)
                self._failure = err
                raise err from exc
            except BaseException as exc:
                self._failure = exc
                raise
            if not tx.in_transaction:
                # fn committed or rolled back behind the coordinator's back: whatever it wrote
                # is outside this transaction now. Refuse to go on.
                self._failure = CoordinatorError(
                    f"transaction {tx.txid}: the SQL ended the SQLite transaction itself"
                )
                raise self._failure
            return result


def _execute(conn: sqlite3.Connection, sql: str, params: Params) -> SqlResult:
    cur = conn.execute(sql, params)
    rows = cur.fetchall() if cur.description else []
    return SqlResult(rows, cur.lastrowid, cur.rowcount)
