"""The one write engine: every SQLite write transaction of a store goes through :class:`WriterTx`.

``SQLiteStore.write`` (a whole transaction in one call), ``SQLiteStore.transaction`` (a body
that awaits between statements) and the coordinator's step-by-step transaction
(``write_lane``) all run their steps, their COMMIT, their fallback to the writer thread and their
counters here, through :meth:`WriterTx.step`, on the writer connection of the store's one-lane
pool with ``BEGIN IMMEDIATE`` (SQLite allows one writer anyway, and a DEFERRED transaction that
upgrades to a write gets SQLITE_BUSY without honouring busy_timeout).

Inline steps. A thread hop costs more than a whole WAL/NORMAL commit, so when the commit is
cheap (journal_mode WAL, synchronous OFF/NORMAL) a step runs on the event loop thread itself, on
the same sqlite3 connection (opened with check_same_thread=False). That is safe because the
writer pool hands its one connection to one user at a time, and every path that queues work to
aiosqlite's thread awaits it before the holder continues; the one way a hop can outlive its
await, cancellation, sends every later step of that transaction to the thread too (and the lane
discards the connection if the rollback cannot be confirmed). So the two threads never use the
connection at once, and SQLite's own serialized mode (``sqlite3.threadsafety == 3``) is a second
guard. On the inline path:

* ``busy_timeout`` is 0: a lock held by another process gives SQLITE_BUSY at once instead of
  blocking the loop; the transaction is then redone on the writer thread with the real timeout.
* A progress handler counts VM steps; past ``sqlite.inline_max_steps`` it interrupts. SQLite
  rolls the *whole* transaction back when a write statement is interrupted (a read statement's
  interruption leaves it open), so the transaction is rolled back in either case and redone on
  the writer thread, where nothing blocks the loop.
* Redoing means replaying the earlier steps, each checked against the result it gave the first
  time: a step's ``fn`` may be called more than once and must have no effect outside the
  connection. A replayed step that gives another result (another process wrote in between)
  fails the transaction with :class:`ReplayDiverged`, a :class:`TransactionConflict`: the caller
  has already acted on the first result, and the transaction may be retried.
* Checkpoints never run inside an inline COMMIT (``wal_autocheckpoint = 0``): see
  :mod:`~tristore.stores.sqlite.checkpoints`.

A second process writing the same file costs this process its inline path whenever that
process holds the write lock: the write meets SQLITE_BUSY, is redone on the writer thread (a
thread hop, then a wait of up to ``sqlite.busy_timeout_ms`` for the lock, which is where single
writes stall), and a step-by-step transaction redone that way can find the other process's rows
and end in :class:`ReplayDiverged`. The file stays consistent; retrying is the caller's part.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from tristore.config import Settings
from tristore.pool import Pool
from tristore.stores.sqlite.checkpoints import Checkpointer
from tristore.stores.sqlite.connect import SQLiteConnection
from tristore.stores.sqlite.errors import DRIVER_ERRORS, ReplayDiverged, is_busy, translate

log = logging.getLogger("tristore.stores.sqlite")

T = TypeVar("T")
Step = Callable[[sqlite3.Connection], Any]

# VM steps between two calls of the budget's progress handler: rare enough to cost nothing on a
# single-row write (~50 steps), often enough that the budget is overshot by at most this much.
STEP_INTERVAL = 1000
DONE, BUSY, BUDGET = "done", "busy", "budget"
INLINE_SLICE_S = 0.0002  # longest run of back-to-back inline writes before yielding to the loop
WRITE_COUNTERS = ("writes_inline", "writes_thread", "fallbacks_busy", "fallbacks_budget")


class Budget:
    """The progress handler: interrupts once ``max_steps`` VM steps have run.

    Once tripped it keeps interrupting, so a statement that ``fn`` runs after catching the
    interruption fails too (if it has at least STEP_INTERVAL steps).
    """

    __slots__ = ("left", "max_steps", "tripped")

    def __init__(self, max_steps: int) -> None:
        self.max_steps = max_steps
        self.left = max_steps
        self.tripped = False

    def __call__(self) -> int:
        self.left -= STEP_INTERVAL
        if self.left < 0:
            self.tripped = True
        return self.tripped


def run_inline(
    conn: sqlite3.Connection,
    fn: Callable[[sqlite3.Connection], T],
    budget: Budget,
    *,
    begin: bool,
    end: bool,
) -> tuple[str, T | None]:
    """Run ``fn`` (after BEGIN, before COMMIT if asked) on this thread under a step budget.

    Returns (DONE, result), or (BUSY | BUDGET, None) after rolling the whole transaction back:
    the caller redoes it on the writer thread. Any other error propagates with the transaction
    left as SQLite left it (the caller rolls back). ``budget`` is re-armed here: one per engine
    serves every inline step, which run one at a time on the loop's thread.
    """
    budget.left = budget.max_steps
    budget.tripped = False
    conn.set_progress_handler(budget, STEP_INTERVAL)
    try:
        if begin:
            conn.execute("BEGIN IMMEDIATE")
        result = fn(conn)
    except BaseException as exc:
        conn.set_progress_handler(None, 0)
        if budget.tripped or is_busy(exc):
            rollback(conn)
            return (BUDGET if budget.tripped else BUSY), None
        raise
    # Cleared before COMMIT: an interrupted COMMIT would leave the transaction open.
    conn.set_progress_handler(None, 0)
    if budget.tripped:  # fn caught the interruption and went on: its work is not all there
        rollback(conn)
        return BUDGET, None
    if end:
        try:
            commit(conn)
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
            return BUSY, None  # rolled back: redo it on the thread, which waits for the lock
    return DONE, result


def begin_immediate(conn: sqlite3.Connection, wait_ms: int | None) -> None:
    """BEGIN IMMEDIATE on the writer thread, waiting up to ``wait_ms`` for the write lock.

    ``wait_ms`` is None when the connection's busy_timeout is already the real one (not inline);
    else it is set for this BEGIN only: once the lock is held a WAL writer does not wait again.
    """
    if wait_ms is None:
        conn.execute("BEGIN IMMEDIATE")
        return
    conn.execute(f"PRAGMA busy_timeout = {int(wait_ms)}")
    try:
        conn.execute("BEGIN IMMEDIATE")
    finally:
        conn.execute("PRAGMA busy_timeout = 0")


def rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def run_on_thread(
    conn: sqlite3.Connection,
    steps: Sequence[tuple[Step, Any]],
    fn: Callable[[sqlite3.Connection], T],
    wait_ms: int | None,
    begin: bool,
    end: bool,
) -> T:
    """On the writer thread: (BEGIN,) the earlier steps checked, ``fn``, (COMMIT), in one hop.

    Rolls back if any of it fails.
    """
    if begin:
        rollback(conn)
        begin_immediate(conn, wait_ms)
    try:
        for i, (step, expected) in enumerate(steps):
            if step(conn) != expected:
                raise ReplayDiverged(
                    "sqlite",
                    f"the transaction was redone on the writer thread (a statement met "
                    f"SQLITE_BUSY or exceeded sqlite.inline_max_steps) and its step {i + 1} "
                    "returned another result the second time (another writer changed the data "
                    "in between, or the step is not deterministic); rolled back, nothing of it "
                    "was kept: the transaction may be retried",
                )
        result = fn(conn)
    except BaseException:
        rollback(conn)
        raise
    if end:
        commit(conn)
    return result


def commit(conn: sqlite3.Connection) -> None:
    """The one COMMIT, on either thread; a failed COMMIT rolls back what is left of the
    transaction."""
    try:
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise


class WriterTx:
    """One write transaction on the writer connection, run step by step.

    Each step runs inline when the connection allows it, else (or after a fallback, or a
    cancelled hop) on the writer thread; see the module docstring. ``step(fn, commit=True)``
    ends it; :meth:`rollback` abandons it. A driver error from a step propagates as the sqlite3
    error (callers translate it); the transaction is then rolled back, or left for the caller's
    :meth:`rollback` when the error came from an inline step.
    """

    __slots__ = (
        "_begun",
        "_inline",
        "_steps",
        "_threaded",
        "_unsure",
        "conn",
        "engine",
    )

    def __init__(self, engine: WriteEngine, conn: SQLiteConnection, *, inline: bool = True) -> None:
        self.engine = engine
        self.conn = conn
        self._inline = conn.inline and inline
        self._steps: list[tuple[Step, Any]] = []  # for a replay: only kept while inline
        self._begun = False
        self._threaded = False  # some step of this transaction ran on the thread
        self._unsure = False  # a hop was cancelled: it may still be running on the thread

    @property
    def in_transaction(self) -> bool:
        """Whether the SQLite transaction is open (a step ran since BEGIN, and no COMMIT)."""
        return self.conn.raw.in_transaction

    async def step(self, fn: Callable[[sqlite3.Connection], T], *, commit: bool = False) -> T:
        """Run ``fn(conn)`` in the transaction (BEGIN IMMEDIATE first if needed, COMMIT after)."""
        if self._inline:
            outcome, result = run_inline(
                self.conn.raw, fn, self.engine.budget, begin=not self._begun, end=commit
            )
            if outcome is DONE:
                return self._done(fn, result, commit)  # type: ignore[arg-type]
            self.engine.fell_back(outcome)
            # The fallback left no transaction open: redo it all on the thread.
            replay: Sequence[tuple[Step, Any]] = tuple(self._steps)
            begin = True
        else:
            replay, begin = (), not self._begun
        wait = self.engine.wait_ms(self.conn)
        self._threaded = True
        try:
            result = await self.conn.run(
                lambda c: run_on_thread(c, replay, fn, wait, begin, commit)
            )
        except asyncio.CancelledError:
            # The hop may still be running: every later statement queues behind it.
            self._inline = False
            self._unsure = True
            raise
        except BaseException:
            self._forget()  # run_on_thread rolled back
            raise
        return self._done(fn, result, commit)

    def _done(self, fn: Callable[[sqlite3.Connection], T], result: T, end: bool) -> T:
        if not end:
            if self._inline:
                self._steps.append((fn, result))
            self._begun = True
            return result
        self.engine.committed(self.conn, threaded=self._threaded)
        self._forget()
        return result

    def _forget(self) -> None:
        self._steps.clear()
        self._begun = self._threaded = False

    @property
    def settled(self) -> bool:
        """No transaction open, and no hop that could still open one (False if unknown)."""
        if self._begun or self._unsure:
            return False
        try:
            return not self.conn.raw.in_transaction
        except sqlite3.Error:  # closed under us (a pool closed with a timeout)
            return False

    async def rollback(self) -> None:
        """Roll the transaction back (a no-op if none is open); errors propagate."""
        self._forget()
        if self._inline:
            rollback(self.conn.raw)
        else:
            await self.conn.run(rollback)  # behind any hop still running
            self._unsure = False

    async def abandon(self) -> bool:
        """Roll back whatever is open; True once that is confirmed.

        False when it cannot be: the rollback failed, or a cancelled hop may still be running
        (waiting behind it could take the whole busy timeout). The caller then discards the
        connection, whose state is unknown. The rollback is shielded from cancellation; a
        cancellation is raised (the connection must be discarded then too).
        """
        if self._unsure:
            self._forget()
            return False
        try:
            if self._inline:
                self._forget()
                rollback(self.conn.raw)
            else:
                await asyncio.shield(self.rollback())
        except Exception as exc:
            log.warning("sqlite: rolling back the writer connection failed: %s", exc)
            return False
        return True


class WriteEngine:
    """A store's writer lane (its one-connection pool), limits, counters and WAL relief."""

    def __init__(
        self, pool: Pool[SQLiteConnection], settings: Settings, checkpointer: Checkpointer
    ) -> None:
        self.pool = pool
        self.budget = Budget(settings.sqlite.inline_max_steps)
        self.busy_timeout_ms = settings.sqlite.busy_timeout_ms
        self.checkpointer = checkpointer
        self.counters = dict.fromkeys(WRITE_COUNTERS, 0)
        self._ran_since = time.perf_counter()

    # -- the counter path -------------------------------------------------------------------
    def committed(self, conn: SQLiteConnection, *, threaded: bool) -> None:
        self.counters["writes_thread" if threaded else "writes_inline"] += 1
        if conn.inline:
            self.checkpointer.note_commit(heavy=threaded)

    def fell_back(self, outcome: str) -> None:
        self.counters["fallbacks_busy" if outcome is BUSY else "fallbacks_budget"] += 1

    def wait_ms(self, conn: SQLiteConnection) -> int | None:
        """busy_timeout for a BEGIN on the writer thread (None: the connection has it already)."""
        return self.busy_timeout_ms if conn.inline else None

    # -- the three ways in ------------------------------------------------------------------
    async def write(self, fn: Callable[[sqlite3.Connection], T], timeout: float | None) -> T:
        """A whole transaction: ``fn`` then COMMIT, in one step (see ``SQLiteStore.write``).

        :meth:`WriterTx.step` with ``commit=True``, its inline half written out here: the
        commonest write then costs no WriterTx and no coroutine of its own.
        """
        async with self.pool.acquire(timeout=timeout) as conn:
            checkpointer = self.checkpointer
            if conn.inline and not (
                (checkpointer.must_restart or checkpointer.want_restart)
                and await checkpointer.relieve(conn)
            ):
                try:
                    outcome, result = run_inline(conn.raw, fn, self.budget, begin=True, end=True)
                except BaseException as exc:
                    try:
                        rollback(conn.raw)
                    except sqlite3.Error:
                        self.pool.discard(conn)  # a failed ROLLBACK: its state is unknown
                    if isinstance(exc, DRIVER_ERRORS):
                        raise translate(exc) from exc
                    raise
                if outcome is DONE:
                    self.committed(conn, threaded=False)
                    inline = True
                else:
                    self.fell_back(outcome)
                    inline = False
            else:
                inline = False
            if not inline:
                tx = WriterTx(self, conn, inline=False)
                try:
                    return await tx.step(fn, commit=True)  # type: ignore[no-any-return]
                except BaseException as exc:
                    if not await tx.abandon():
                        self.pool.discard(conn)
                    if isinstance(exc, DRIVER_ERRORS):
                        raise translate(exc) from exc
                    raise
        # After the lane is back: a yield while holding it would keep every queued writer
        # waiting through the loop turns too.
        if time.perf_counter() - self._ran_since >= INLINE_SLICE_S:
            await self.yield_slice()
        return result  # type: ignore[return-value]

    @asynccontextmanager
    async def lane(self, timeout: float | None, *, inline: bool = True) -> AsyncIterator[WriterTx]:
        """The writer lane held, the WAL relieved, a :class:`WriterTx` to drive; see
        ``SQLiteStore.write_lane``."""
        # getconn/putconn rather than ``async with acquire()``: the pool discards a connection
        # whose user left with a cancellation, and this one is kept when its rollback is sure.
        conn = await self.pool.getconn(timeout)
        kept = False
        try:
            restarted = await self.checkpointer.relieve(conn)
            tx = WriterTx(self, conn, inline=inline and not restarted)
            try:
                yield tx
            finally:
                kept = tx.settled or await tx.abandon()
        finally:
            # The return is synchronous up to the connector's reset, which does not suspend:
            # a cancellation cannot land in it.
            await self.pool.putconn(conn, discard=not kept)

    @asynccontextmanager
    async def transaction(self, timeout: float | None) -> AsyncIterator[SQLiteConnection]:
        """A body that awaits between statements, on the writer thread (see ``SQLiteStore``)."""
        # On the thread throughout: the body gets the aiosqlite connection and may leave
        # statements queued there (a caught timeout), which an inline COMMIT would overtake.
        async with self.lane(timeout, inline=False) as tx:
            try:
                await tx.step(_nothing)  # BEGIN IMMEDIATE
            except DRIVER_ERRORS as exc:
                raise translate(exc) from exc
            yield tx.conn
            try:
                await tx.step(_nothing, commit=True)
            except DRIVER_ERRORS as exc:
                raise translate(exc) from exc

    async def yield_slice(self) -> None:
        """Let the loop run at least every INLINE_SLICE_S of inline writes.

        An inline write never suspends, so a task writing in a loop would otherwise never let
        another task run. A yield per write would cost a loop iteration each; one per slice
        bounds the loop's lag at the slice plus one transaction. It yields twice: a timer that
        fell due during the slice fires in the next loop turn but wakes its task only in the turn
        after, so after one ``sleep(0)`` this task's next slice would run first. The slice's
        length was chosen by measurement: tools/bench/measurements/loop-lag.txt.
        """
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        self._ran_since = time.perf_counter()


def _nothing(conn: sqlite3.Connection) -> None:
    return None
