"""One coordinated transaction as the commit protocol sees it, and what it may ask of its host.

:class:`~tristore.coordinator.transaction.Transaction` is the caller's face of a transaction. The
coordinator's commit protocol works on its :class:`TxState` only: the SQLite writer lane it
holds, the graph and cache work it staged, its hooks and how it ended. The transaction reaches its
coordinator only through :class:`TxHost`. So neither side reads the other's private fields, and
the modules import in one direction: ``core`` -> ``transaction`` -> ``txstate``.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import sqlite3
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from tristore.coordinator.log import Intent
from tristore.coordinator.ops import CacheOp, GraphOp
from tristore.errors import CoordinatorTimeout, PoolTimeout
from tristore.stores.sqlite import SQLiteConnection, SQLiteStore, WriterTx

log = logging.getLogger(__name__)

T = TypeVar("T")
Hook = Callable[[], Any]  # returns None or an awaitable

# Whether a coordinated transaction is open in this task: opening a second one would wait on the
# SQLite writer lane the first one holds, a self-deadlock that is refused at once instead.
open_in_task: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "tristore_coordinated_transaction_open", default=False
)


@dataclass(frozen=True, slots=True)
class TxHost:
    """What a transaction may ask of the coordinator that runs it, and nothing more."""

    sqlite: SQLiteStore
    sql_value_limit: int
    graph_value_limit: int
    cache_value_limit: int
    check_open: Callable[[], None]
    count: Callable[[str], None]
    commit: Callable[[TxState], Awaitable[None]]


class TxState:
    """The lane, the staged work and the outcome of one coordinated transaction."""

    def __init__(self, host: TxHost, timeout: float) -> None:
        self.host = host
        self.txid = uuid.uuid4().hex
        self.timeout = timeout
        self.state = "new"
        self.pending: tuple[str, ...] = ()
        self.apply_errors: list[str] = []
        self.hook_errors: list[BaseException] = []
        self.graph_ops: list[GraphOp] = []
        self.cache_ops: list[CacheOp] = []
        self.abort_hooks: list[Hook] = []
        self.commit_hooks: list[Hook] = []
        self.intent: Intent | None = None  # set once committed, if graph or cache work was staged
        self._acq: Any = None
        self._conn: SQLiteConnection | None = None
        self._wtx: WriterTx | None = None
        self._in_transaction = False

    # -- the SQLite writer lane -------------------------------------------------------------
    async def take_lane(self) -> None:
        """Wait (bounded by ``timeout``) for the SQLite writer lane and get ready to write."""
        sqlite = self.host.sqlite
        acq = sqlite.writer.acquire(timeout=self.timeout)
        try:
            conn = await acq.__aenter__()
        except PoolTimeout as exc:
            self.host.count("lock_timeouts")
            raise CoordinatorTimeout(
                f"waited {self.timeout:g}s for the SQLite writer lane (the first lock of a "
                "coordinated transaction); nothing was done"
            ) from exc
        try:
            restarted = await sqlite.relieve_wal(conn)
        except BaseException:
            await acq.__aexit__(None, None, None)
            raise
        self._acq, self._conn = acq, conn
        self._wtx = sqlite.writer_tx(conn, inline=not restarted)

    @property
    def in_transaction(self) -> bool:
        """Whether the SQLite transaction is open (a statement ran since BEGIN)."""
        return self._in_transaction

    async def step(self, fn: Callable[[sqlite3.Connection], T], *, commit: bool = False) -> T:
        """Run ``fn`` in the SQLite transaction (see :meth:`WriterTx.step`); driver errors pass."""
        conn, wtx = self._conn, self._wtx
        assert conn is not None and wtx is not None, "the SQLite lane is not held"
        try:
            return await wtx.step(fn, commit=commit)
        finally:
            self._in_transaction = conn.raw.in_transaction

    def staged_intent(self) -> Intent | None:
        """The graph and cache work to log with the commit, or None if there is none."""
        if self.graph_ops or self.cache_ops:
            return Intent(self.txid, self.graph_ops, self.cache_ops)
        return None

    async def release_lane(self) -> None:
        """Give the lane back after the commit. Never raises: the commit is done."""
        acq = self._acq
        self._conn = self._acq = self._wtx = None
        if acq is not None:
            # Never raises: the caller holds a cache turn that the transactions behind it wait
            # for.
            try:
                await acq.__aexit__(None, None, None)
            except Exception:  # pragma: no cover - the pool's return path does not raise
                log.exception("coordinated transaction %s: returning the SQLite lane", self.txid)

    # -- endings ----------------------------------------------------------------------------
    def committed(self, intent: Intent | None) -> None:
        self.state = "committed"
        self.intent = intent
        self.host.count("committed")

    async def abort(self) -> None:
        """Roll SQLite back, give the lane back, run the abort hooks."""
        await self._rollback_sqlite()
        self.state = "rolled_back"
        self.host.count("rolled_back")
        await self.run_hooks(self.abort_hooks)

    async def _rollback_sqlite(self) -> None:
        conn, acq, wtx = self._conn, self._acq, self._wtx
        if conn is None or acq is None or wtx is None:
            return
        self._conn = self._acq = self._wtx = None
        failed: BaseException | None = None
        try:
            await asyncio.shield(wtx.rollback())
        except BaseException as exc:  # cancelled, or the rollback itself failed: unknown state
            self.host.sqlite.writer.discard(conn)
            failed = exc
        await acq.__aexit__(None, None, None)
        if failed is not None and not isinstance(failed, Exception):
            raise failed

    async def run_hooks(self, hooks: Sequence[Hook]) -> None:
        """Call each hook; a failing one is logged and kept in ``hook_errors``, not raised."""
        for fn in hooks:
            try:
                result = fn()
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                log.exception("coordinated transaction %s: hook %r failed", self.txid, fn)
                self.hook_errors.append(exc)
