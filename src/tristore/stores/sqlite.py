"""SQLite in WAL mode through aiosqlite: one writer lane, a pool of readers.

Every write goes through a single connection with ``BEGIN IMMEDIATE``: SQLite allows one writer
anyway, and a DEFERRED transaction that upgrades to a write gets SQLITE_BUSY without honouring
busy_timeout.

Inline writes. A thread hop costs ~40 us here, more than a whole WAL/NORMAL commit (~20 us), so
when the commit is cheap (journal_mode WAL, synchronous OFF/NORMAL) a write transaction runs on the
event loop thread itself, on the same sqlite3 connection (opened with check_same_thread=False).
That is safe because the writer pool hands its one connection to one user at a time, and every
path that queues work to aiosqlite's thread awaits it before the holder continues; the one way a
hop can outlive its await, cancellation, discards the connection (the pool does it on a
CancelledError, :class:`WriterTx` goes to the thread for good). So the two threads never use the
connection at once, and SQLite's own serialized mode (``sqlite3.threadsafety == 3``) is a second
guard. On the inline path:

* ``busy_timeout`` is 0: a lock held by another process gives SQLITE_BUSY at once instead of
  blocking the loop; the transaction is then run on the writer thread with the real timeout.
* A progress handler counts VM steps; past ``sqlite.inline_max_steps`` it interrupts. SQLite
  3.40 rolls the *whole* transaction back when a write statement is interrupted (a read
  statement's interruption leaves it open), so the transaction is rolled back in either case and
  rerun on the writer thread, where nothing blocks the loop: ``write(fn)`` may call ``fn`` twice.
* ``wal_autocheckpoint`` is 0 (a checkpoint inside a COMMIT would block the loop): PASSIVE
  checkpoints run on a thread and connection of their own (:class:`_Checkpointer`).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from tristore.config import Settings
from tristore.errors import QueryError, StoreUnavailable
from tristore.pool import Pool, PoolConfig
from tristore.schema import register_functions, sqlite_script
from tristore.stores.limits import check_values

log = logging.getLogger(__name__)

T = TypeVar("T")
STORE = "sqlite"
Params = Sequence[Any] | dict[str, Any]


class SQLiteConnection:
    """An aiosqlite connection plus a one-hop ``run``.

    ``run`` uses aiosqlite's ``_execute`` (queue a callable to the connection's thread): the public
    API has no way to run several statements in one hop, and this is the same queue every public
    method uses, so ordering with them is preserved.
    """

    __slots__ = ("aio", "inline", "readonly")

    def __init__(self, aio: aiosqlite.Connection, *, readonly: bool, inline: bool = False) -> None:
        self.aio = aio
        self.readonly = readonly
        # True on a writer whose busy_timeout is 0 and whose statements may run on the loop.
        self.inline = inline

    @property
    def raw(self) -> sqlite3.Connection:
        return self.aio._conn

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self.aio._execute(fn, self.aio._conn)

    @property
    def in_transaction(self) -> bool:
        return self.aio.in_transaction


def _apply_pragmas(conn: sqlite3.Connection, settings: Settings, *, readonly: bool) -> None:
    s = settings.sqlite
    # Values are validated Literals/ints from the settings; PRAGMA takes no bound parameters.
    conn.execute(f"PRAGMA busy_timeout = {int(s.busy_timeout_ms)}")
    if not readonly:
        mode = conn.execute(f"PRAGMA journal_mode = {s.journal_mode}").fetchone()[0]
        if str(mode).upper() != s.journal_mode:
            raise StoreUnavailable(STORE, f"journal_mode is {mode}, expected {s.journal_mode}")
    conn.execute(f"PRAGMA synchronous = {s.synchronous}")
    conn.execute(f"PRAGMA cache_size = {int(_cache_size(settings, readonly=readonly))}")
    conn.execute("PRAGMA foreign_keys = ON")
    if readonly:
        conn.execute("PRAGMA query_only = ON")
    verify_pragmas(conn, settings, readonly=readonly)


def _cache_size(settings: Settings, *, readonly: bool) -> int:
    # The writer's cache holds pages it has just written, which readers cannot share: see
    # sqlite.writer_cache_size.
    return settings.sqlite.cache_size if readonly else settings.sqlite.writer_cache_size


_SYNC_NAMES = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


def read_pragmas(conn: sqlite3.Connection) -> dict[str, Any]:
    return {
        "journal_mode": str(conn.execute("PRAGMA journal_mode").fetchone()[0]).upper(),
        "busy_timeout_ms": conn.execute("PRAGMA busy_timeout").fetchone()[0],
        "cache_size": conn.execute("PRAGMA cache_size").fetchone()[0],
        "synchronous": _SYNC_NAMES[conn.execute("PRAGMA synchronous").fetchone()[0]],
        "foreign_keys": bool(conn.execute("PRAGMA foreign_keys").fetchone()[0]),
    }


def verify_pragmas(
    conn: sqlite3.Connection, settings: Settings, *, readonly: bool, inline: bool = False
) -> None:
    """Read the pragmas back: a pragma SQLite does not understand is silently ignored.

    ``readonly``: a reader, whose cache_size is ``sqlite.cache_size`` (the writer's is
    ``sqlite.writer_cache_size``); ``inline``: the writer in inline mode (busy_timeout 0).
    """
    s = settings.sqlite
    actual = read_pragmas(conn)
    expected = {
        "journal_mode": s.journal_mode,
        "busy_timeout_ms": 0 if inline else s.busy_timeout_ms,
        "cache_size": _cache_size(settings, readonly=readonly),
        "synchronous": s.synchronous,
        "foreign_keys": True,
    }
    wrong = {k: (actual[k], v) for k, v in expected.items() if actual[k] != v}
    if wrong:
        detail = ", ".join(f"{k}={a!r} (expected {e!r})" for k, (a, e) in wrong.items())
        raise StoreUnavailable(STORE, f"pragmas not applied: {detail}")


def inline_eligible(conn: sqlite3.Connection) -> bool:
    """Whether a commit on ``conn`` is cheap enough to run on the loop: WAL, synchronous <= NORMAL.

    Read from the connection, not the settings: what SQLite applied is what a commit costs. FULL
    and EXTRA sync the WAL on every commit (milliseconds on a real disk); a rollback journal writes
    and syncs the database file itself.
    """
    mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).upper()
    sync = conn.execute("PRAGMA synchronous").fetchone()[0]
    return mode == "WAL" and sync <= 1


def _enter_inline_mode(conn: sqlite3.Connection, settings: Settings) -> None:
    conn.execute("PRAGMA busy_timeout = 0")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    # A WAL file that grew under a burst is cut back to this size when it restarts.
    conn.execute(f"PRAGMA journal_size_limit = {int(settings.sqlite.checkpoint_wal_bytes)}")
    verify_pragmas(conn, settings, readonly=False, inline=True)
    if conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] != 0:
        raise StoreUnavailable(STORE, "pragmas not applied: wal_autocheckpoint is not 0")


def is_busy(exc: BaseException) -> bool:
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY


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


def translate(exc: BaseException, *, reader: bool = False) -> Exception:
    """Map a sqlite3 error to tristore's typed errors (the caller re-raises it ``from exc``)."""
    msg = str(exc)
    if reader and "readonly" in msg:
        return QueryError(STORE, f"{msg}: readers are query_only, write with write()/execute()")
    if isinstance(exc, sqlite3.IntegrityError):
        return QueryError(STORE, f"constraint violated: {msg}")
    if isinstance(exc, OverflowError):
        return QueryError(STORE, f"a parameter is outside SQLite's 64-bit INTEGER range: {msg}")
    if isinstance(exc, sqlite3.ProgrammingError | sqlite3.InterfaceError):
        return QueryError(STORE, f"bad statement or parameter: {msg}")
    if _is_corrupt(exc):
        return StoreUnavailable(
            STORE, f"database file is corrupt ({msg}): restore it from a backup or remove it"
        )
    if isinstance(exc, sqlite3.OperationalError) and (
        "unable to open" in msg or "readonly" in msg or "disk I/O" in msg
    ):
        return StoreUnavailable(STORE, f"cannot use the database file: {msg}")
    if getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY:
        # Another connection (usually another process) held the lock past busy_timeout: the
        # statement is fine, the store is not available to it; retrying later can succeed.
        return StoreUnavailable(
            STORE,
            f"{msg}: another process holds the database's write lock for longer than "
            "sqlite.busy_timeout_ms; stop it, or raise the timeout",
        )
    if isinstance(exc, sqlite3.Error):
        return QueryError(STORE, msg)
    return exc if isinstance(exc, Exception) else QueryError(STORE, msg)


# sqlite3 raises a bare OverflowError for an int outside SQLite's 64-bit INTEGER.
DRIVER_ERRORS = (sqlite3.Error, OverflowError)
SQLITE_INTEGER = range(-(2**63), 2**63)


def _is_corrupt(exc: BaseException) -> bool:
    msg = str(exc)
    return isinstance(exc, sqlite3.DatabaseError) and (
        "not a database" in msg or "malformed" in msg or "corrupt" in msg
    )


def check_params(params: Params | None, limit: int) -> None:
    """Refuse, before the round trip, what SQLite cannot store: too large, or too wide an int."""
    check_values(STORE, params, limit)
    if not params:
        return
    for value in params.values() if isinstance(params, dict) else params:
        if isinstance(value, int) and value not in SQLITE_INTEGER:
            raise QueryError(
                STORE, f"integer parameter {value} is outside SQLite's 64-bit INTEGER range"
            )


class _SQLiteConnector:
    store = STORE

    def __init__(self, settings: Settings, *, readonly: bool) -> None:
        self.settings = settings
        self.readonly = readonly

    async def connect(self) -> SQLiteConnection:
        wants_inline = not self.readonly and self.settings.sqlite.inline_writes
        try:
            # isolation_level=None: tristore issues BEGIN IMMEDIATE itself, sqlite3 must not BEGIN.
            # check_same_thread=False (inline writer only): see the module docstring for why the
            # loop thread and aiosqlite's thread never use it at once.
            aio = await aiosqlite.connect(
                self.settings.sqlite_path, isolation_level=None, check_same_thread=not wants_inline
            )
        except DRIVER_ERRORS as exc:
            raise translate(exc) from exc
        try:
            inline = await aio._execute(self._setup, aio._conn, wants_inline)
        except BaseException as exc:
            await aio.close()
            if isinstance(exc, sqlite3.Error):
                raise translate(exc) from exc
            raise
        return SQLiteConnection(aio, readonly=self.readonly, inline=inline)

    def _setup(self, conn: sqlite3.Connection, wants_inline: bool) -> bool:
        _apply_pragmas(conn, self.settings, readonly=self.readonly)
        register_functions(conn)
        inline = wants_inline and inline_eligible(conn)
        if inline:
            _enter_inline_mode(conn, self.settings)
        return inline

    async def close(self, conn: SQLiteConnection) -> None:
        await conn.aio.close()

    async def check(self, conn: SQLiteConnection) -> None:
        await conn.run(lambda c: c.execute("SELECT 1").fetchone())

    async def reset(self, conn: SQLiteConnection) -> bool:
        # An open transaction on return means the caller's state is unknown: discard.
        return not conn.in_transaction


# VM steps between two calls of the budget's progress handler: rare enough to cost nothing on a
# single-row write (~50 steps), often enough that the budget is overshot by at most this much.
STEP_INTERVAL = 1000
_DONE, _BUSY, _BUDGET = "done", "busy", "budget"
INLINE_SLICE_S = 0.0002  # longest run of back-to-back inline writes before yielding to the loop
WRITE_COUNTERS = ("writes_inline", "writes_thread", "fallbacks_busy", "fallbacks_budget")


class _Budget:
    """The progress handler: interrupts once ``max_steps`` VM steps have run.

    Once tripped it keeps interrupting, so a statement that ``fn`` runs after catching the
    interruption fails too (if it has at least STEP_INTERVAL steps; see :meth:`SQLiteStore.write`).
    """

    __slots__ = ("left", "tripped")

    def __init__(self, max_steps: int) -> None:
        self.left = max_steps
        self.tripped = False

    def __call__(self) -> int:
        self.left -= STEP_INTERVAL
        if self.left < 0:
            self.tripped = True
        return self.tripped


def _run_inline(
    conn: sqlite3.Connection,
    fn: Callable[[sqlite3.Connection], T],
    max_steps: int,
    *,
    begin: bool,
    commit: bool,
) -> tuple[str, T | None]:
    """Run ``fn`` (after BEGIN, before COMMIT if asked) on this thread under a step budget.

    Returns (_DONE, result), or (_BUSY | _BUDGET, None) after rolling the whole transaction
    back: the caller reruns it on the writer thread. Any other error propagates with the
    transaction left as SQLite left it (the caller decides whether to roll back).
    """
    budget = _Budget(max_steps)
    conn.set_progress_handler(budget, STEP_INTERVAL)
    try:
        if begin:
            conn.execute("BEGIN IMMEDIATE")
        result = fn(conn)
    except BaseException as exc:
        conn.set_progress_handler(None, 0)
        if budget.tripped or is_busy(exc):
            _rollback(conn)
            return (_BUDGET if budget.tripped else _BUSY), None
        raise
    # Cleared before COMMIT: an interrupted COMMIT would leave the transaction open.
    conn.set_progress_handler(None, 0)
    if budget.tripped:  # fn caught the interruption and went on: its work is not all there
        _rollback(conn)
        return _BUDGET, None
    if commit:
        try:
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
            _rollback(conn)
            return _BUSY, None
    return _DONE, result


class _Checkpointer:
    """PASSIVE WAL checkpoints on a thread and a connection of their own, off the commit path.

    The writer has ``wal_autocheckpoint = 0`` (inline mode), so without this the WAL would grow
    without bound. Every CHECK_EVERY commits the WAL file's size is read (a stat, ~1 us); past
    ``sqlite.checkpoint_wal_bytes`` one checkpoint starts unless one is running. PASSIVE never
    waits for a lock and is bounded by the frames it copies. Errors are logged and counted in
    :meth:`SQLiteStore.stats`.

    A copy is not a restart: the WAL starts again from its beginning (and ``journal_size_limit``
    truncates it) only when a write begins while every frame is already copied, which a stream
    of writes never allows, since the writer adds frames while the copy runs. Left at that, the
    file stayed over the limit and a PASSIVE checkpoint, with its fsync of the database, started
    every CHECK_EVERY commits (88 in 5,000 single-row writes, each write 2x raw sqlite3's). So a
    PASSIVE that copied every frame it found asks for a restart (``want_restart``): the next
    write first runs RESTART on the writer thread, which copies only the frames written since
    and waits for no reader (busy timeout 0; a reader in the way defers it to the next check).
    """

    CHECK_EVERY = 32
    # Past this many times the limit the background checkpoint is not keeping up (writes outrun
    # it, or a reader pins the WAL): the next write on the lane runs a RESTART checkpoint on the
    # writer thread first, with the real busy timeout. Writers wait for it; the loop does not.
    HARD_FACTOR = 16

    def __init__(self, path: Path, limit_bytes: int) -> None:
        self.path = path
        self.wal = Path(f"{path}-wal")
        self.limit = limit_bytes
        self.commits = 0
        self.runs = 0
        self.failures = 0
        self.last_result: tuple[int, int, int] | None = None
        self.last_error: str | None = None
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._future: asyncio.Future[tuple[int, int, int]] | None = None
        self.must_restart = False  # the WAL is far past the limit: restart, waiting for readers
        self.want_restart = False  # a PASSIVE copied every frame: restart if no reader waits
        self.restarts = 0  # RESTART checkpoints that copied every frame
        self.last_restart: tuple[int, int, int] | None = None

    def note_commit(self, *, heavy: bool = False) -> None:
        self.commits += 1
        if heavy or self.commits % self.CHECK_EVERY == 0:
            self.maybe_start()

    def maybe_start(self) -> None:
        if self._future is not None and not self._future.done():
            return
        try:
            size = self.wal.stat().st_size
        except OSError:
            return  # no WAL file yet
        if size > self.limit * self.HARD_FACTOR:
            self.must_restart = True
        if size > self.limit:
            self.start()

    def start(self) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="tristore-checkpoint")
        loop = asyncio.get_running_loop()
        self._future = loop.run_in_executor(self._executor, self._checkpoint)
        self._future.add_done_callback(self._finished)

    def _checkpoint(self) -> tuple[int, int, int]:
        if self._conn is None:
            self._conn = sqlite3.connect(self.path, isolation_level=None)
        busy, frames, done = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(busy), int(frames), int(done)

    def _finished(self, fut: asyncio.Future[tuple[int, int, int]]) -> None:
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is None:
            self.runs += 1
            self.last_result = busy, frames, done = fut.result()
            self.want_restart = busy == 0 and frames == done and frames > 0
            return
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        log.warning("sqlite: background WAL checkpoint of %s failed: %s", self.path, exc)

    async def wait(self) -> None:
        """Until the checkpoint in flight (if any) has finished; its error is in ``stats``."""
        fut = self._future
        if fut is not None:
            await asyncio.wait([fut])

    async def close(self) -> None:
        await self.wait()
        executor, self._executor = self._executor, None
        if executor is None:
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(executor, self._close_conn)
        except sqlite3.Error as exc:
            log.warning("sqlite: closing the checkpoint connection failed: %s", exc)
        executor.shutdown(wait=False)  # idle now: its thread ends at once

    def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def stats(self) -> dict[str, Any]:
        return {
            "commits": self.commits,
            "runs": self.runs,
            "failures": self.failures,
            "restarts": self.restarts,
            "last_restart": self.last_restart,
            "running": self._future is not None and not self._future.done(),
            "last_result": self.last_result,
            "last_error": self.last_error,
        }


class SQLiteStore:
    """The relational store: ``write`` for transactions, ``fetchall``/``fetchone`` for reads."""

    def __init__(
        self,
        settings: Settings,
        *,
        reader_pool: PoolConfig | None = None,
        apply_schema: bool = True,
    ) -> None:
        self.settings = settings
        self.apply_schema = apply_schema
        self.writer: Pool[SQLiteConnection] = Pool(
            _SQLiteConnector(settings, readonly=False),
            PoolConfig(min_size=1, max_size=1, timeout=settings.sqlite.busy_timeout_ms / 1000),
            name="sqlite-writer",
        )
        self.readers: Pool[SQLiteConnection] = Pool(
            _SQLiteConnector(settings, readonly=True),
            reader_pool or PoolConfig(min_size=1, max_size=settings.sqlite.readers),
            name="sqlite-readers",
        )
        self.counters = dict.fromkeys(WRITE_COUNTERS, 0)
        self._ran_since = time.perf_counter()
        self._checkpointer = _Checkpointer(
            settings.sqlite_path, settings.sqlite.checkpoint_wal_bytes
        )

    @property
    def path(self) -> Path:
        return self.settings.sqlite_path

    async def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(STORE, f"cannot create {self.path.parent}: {exc}") from exc
        await self.writer.open()
        try:
            if self.apply_schema:
                script = sqlite_script()
                await self.write(lambda c: _executescript_in_tx(c, script))
            await self.readers.open()
        except BaseException:
            await self.writer.close()
            raise

    async def close(self) -> None:
        try:
            await self._checkpointer.close()
        finally:
            await self.readers.close()
            await self.writer.close()

    async def __aenter__(self) -> SQLiteStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- writes -----------------------------------------------------------------------------
    async def write(
        self, fn: Callable[[sqlite3.Connection], T], *, timeout: float | None = None
    ) -> T:
        """Run ``fn(conn)`` inside ``BEGIN IMMEDIATE`` .. ``COMMIT``.

        Inline on the event loop when the writer is in inline mode, else (and on SQLITE_BUSY or
        past ``sqlite.inline_max_steps``) in one hop to the writer thread. ``fn`` may therefore be
        called twice: it must have no effects outside the connection, and it must let sqlite3
        errors propagate (one caught after the budget interrupted a write statement, which rolls
        the transaction back, would let ``fn``'s next short statement autocommit).
        ``fn`` raising rolls the transaction back; sqlite3 errors become typed errors.
        """
        inline = False
        async with self.writer.acquire(timeout=timeout) as conn:
            restarted = await self.relieve_wal(conn)
            if conn.inline and not restarted:
                try:
                    outcome, result = _run_inline(
                        conn.raw,
                        fn,
                        self.settings.sqlite.inline_max_steps,
                        begin=True,
                        commit=False,
                    )
                    if outcome is _DONE:
                        result = self._commit_inline(conn.raw, result)  # type: ignore[arg-type]
                except BaseException as exc:
                    self._rollback_inline(conn)
                    if isinstance(exc, DRIVER_ERRORS):
                        raise translate(exc) from exc
                    raise
                inline = outcome is _DONE
                if not inline:
                    self._count_fallback(outcome)
            if not inline:
                try:
                    result = await conn.run(lambda c: _in_transaction(c, fn, self._wait_ms(conn)))
                except DRIVER_ERRORS as exc:
                    raise translate(exc) from exc
                self.counters["writes_thread"] += 1
                if conn.inline:
                    self._checkpointer.note_commit(heavy=True)
                return result
        # After the lane is back: a yield while holding it would keep every queued writer
        # waiting through the loop turns too.
        await self._yield_now_and_then()
        return result  # type: ignore[return-value]

    async def relieve_wal(self, conn: SQLiteConnection) -> bool:
        """Restart the WAL with a RESTART checkpoint on the writer thread, when it is due.

        Called with the writer lane held, before a write. Due after a background PASSIVE that
        copied every frame (``want_restart``: no wait for readers), or once the WAL is far past
        the limit (``must_restart``: a long reader, or writes outrunning the copies; this one
        waits up to the busy timeout). See :class:`_Checkpointer`.

        True when the WAL was restarted: the caller's write must then run on the writer thread,
        not inline. The first frame written into a restarted WAL writes its header and, at
        ``synchronous = NORMAL``, fsyncs it: inline, that fsync stalled the event loop for
        1-4 ms once per restart (the loop-lag benchmark's p99 and max).
        """
        checkpointer = self._checkpointer
        if not (checkpointer.must_restart or checkpointer.want_restart):
            return False
        # Past the hard limit the restart waits for readers; otherwise it is only worth taking
        # when it costs no wait (a reader in the way: the next PASSIVE asks again).
        wait = self.settings.sqlite.busy_timeout_ms if checkpointer.must_restart else 0
        checkpointer.must_restart = False  # set again by the size check while still over
        checkpointer.want_restart = False
        # A checkpoint in flight holds the checkpoint lock: RESTART would only get SQLITE_BUSY.
        await checkpointer.wait()

        def restart(c: sqlite3.Connection) -> tuple[int, int, int]:
            c.execute(f"PRAGMA busy_timeout = {int(wait)}")
            try:
                busy, frames, done = c.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            finally:
                usual = 0 if conn.inline else self.settings.sqlite.busy_timeout_ms
                c.execute(f"PRAGMA busy_timeout = {int(usual)}")
            return int(busy), int(frames), int(done)

        try:
            result = await conn.run(restart)
        except DRIVER_ERRORS as exc:
            # A restart that would have had to wait is simply not taken: the next one comes.
            log.log(
                logging.WARNING if wait else logging.DEBUG,
                "sqlite: RESTART checkpoint of %s failed: %s",
                self.path,
                exc,
            )
            return False
        checkpointer.last_restart = result
        if result[0] != 0:
            return False
        checkpointer.restarts += 1
        return True

    async def _yield_now_and_then(self) -> None:
        """Let the loop run at least every INLINE_SLICE_S of inline writes.

        An inline write never suspends, so a task writing in a loop would otherwise never let
        another task run (found by the loop-lag benchmark: its heartbeat never woke). A yield per
        write would cost a loop iteration each; one per slice bounds the lag at the slice plus
        one transaction. It yields twice: a timer that fell due during the slice fires in the next
        loop turn but wakes its task only in the turn after, so after one ``sleep(0)`` this
        task's next slice would run first. A 1 ms heartbeat under back-to-back writes, against
        one yield (three runs, 10-30 rounds each): p50 0.57-0.60 -> 0.38-0.39 ms, max 2.5-4.7
        -> 1.1-1.7 ms, per write within noise; p99 0.85-0.91 -> 0.76-0.87 ms (idle 0.17-0.19).
        A 0.1 ms slice took the p50 to 0.19-0.21 ms but the p99 only to 0.64-0.84 ms, for
        2.4-7.8% per write, so the slice stays 0.2 ms. Yielding behind the due timers instead (a
        timer due now) cost 4-13% per write and 19% in the instruction count. All in
        tools/bench/measurements/loop-lag.txt.
        """
        now = time.perf_counter()
        if now - self._ran_since >= INLINE_SLICE_S:
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            self._ran_since = time.perf_counter()

    def _rollback_inline(self, conn: SQLiteConnection) -> None:
        try:
            _rollback(conn.raw)
        except sqlite3.Error:
            self.writer.discard(conn)  # a failed ROLLBACK: its state is unknown

    def _commit_inline(self, raw: sqlite3.Connection, result: T) -> T:
        raw.execute("COMMIT")
        self.counters["writes_inline"] += 1
        self._checkpointer.note_commit()
        return result

    def _count_fallback(self, outcome: str) -> None:
        self.counters["fallbacks_busy" if outcome is _BUSY else "fallbacks_budget"] += 1

    def _wait_ms(self, conn: SQLiteConnection) -> int | None:
        """busy_timeout for a BEGIN on the writer thread (None: the connection has it already)."""
        return self.settings.sqlite.busy_timeout_ms if conn.inline else None

    async def execute(self, sql: str, params: Params = ()) -> int:
        """One parameterized write statement in its own transaction; returns the row count."""
        check_params(params, self.settings.sqlite.max_value_bytes)
        return await self.write(lambda c: c.execute(sql, params).rowcount)

    async def execute_insert(self, sql: str, params: Params = ()) -> int:
        """One INSERT in its own transaction; returns the new rowid."""
        check_params(params, self.settings.sqlite.max_value_bytes)
        return await self.write(lambda c: c.execute(sql, params).lastrowid or 0)

    async def executemany(self, sql: str, rows: Iterable[Params]) -> int:
        rows = list(rows)
        limit = self.settings.sqlite.max_value_bytes
        for row in rows:
            check_params(row, limit)
        return await self.write(lambda c: c.executemany(sql, rows).rowcount)

    @asynccontextmanager
    async def transaction(self, *, timeout: float | None = None) -> AsyncIterator[SQLiteConnection]:
        """A multi-await write transaction, for when the caller must await between statements.

        A cancelled or failed body rolls back; if the rollback cannot be confirmed the writer
        connection is discarded so its unknown state is never reused.
        """
        # Stays on the writer thread: the body gets the aiosqlite connection and may leave
        # statements queued there (a caught timeout), which an inline COMMIT would overtake.
        async with self.writer.acquire(timeout=timeout) as conn:
            await self.relieve_wal(conn)
            wait = self._wait_ms(conn)
            try:
                await conn.run(lambda c: begin_immediate(c, wait))
            except DRIVER_ERRORS as exc:
                raise translate(exc) from exc
            try:
                yield conn
            except BaseException:
                try:
                    await asyncio.shield(conn.run(_rollback))
                except BaseException:
                    self.writer.discard(conn)
                raise
            try:
                await conn.run(lambda c: c.execute("COMMIT"))
            except DRIVER_ERRORS as exc:
                await conn.run(_rollback)
                raise translate(exc) from exc
            self.counters["writes_thread"] += 1
            if conn.inline:
                self._checkpointer.note_commit(heavy=True)

    def writer_tx(self, conn: SQLiteConnection, *, inline: bool = True) -> WriterTx:
        """Step-by-step write transaction on a writer connection the caller holds.

        ``inline=False``: every step on the writer thread even in inline mode (after
        :meth:`relieve_wal` restarted the WAL).
        """
        return WriterTx(self, conn, inline=inline)

    async def wait_checkpoint(self) -> None:
        """Until the background checkpoint in flight, if any, has finished (for tests, close)."""
        await self._checkpointer.wait()

    # -- reads ------------------------------------------------------------------------------
    async def fetchall(
        self, sql: str, params: Params = (), *, timeout: float | None = None
    ) -> list[Any]:
        check_params(params, self.settings.sqlite.max_value_bytes)
        async with self.readers.acquire(timeout=timeout) as conn:
            try:
                return await conn.run(lambda c: c.execute(sql, params).fetchall())
            except DRIVER_ERRORS as exc:
                raise translate(exc, reader=True) from exc

    async def fetchone(self, sql: str, params: Params = (), *, timeout: float | None = None) -> Any:
        check_params(params, self.settings.sqlite.max_value_bytes)
        async with self.readers.acquire(timeout=timeout) as conn:
            try:
                return await conn.run(lambda c: c.execute(sql, params).fetchone())
            except DRIVER_ERRORS as exc:
                raise translate(exc, reader=True) from exc

    async def read(
        self, fn: Callable[[sqlite3.Connection], T], *, timeout: float | None = None
    ) -> T:
        """Run ``fn(conn)`` on a reader in one hop (a consistent snapshot for several queries)."""
        async with self.readers.acquire(timeout=timeout) as conn:
            try:
                return await conn.run(lambda c: _in_read_snapshot(c, fn))
            except DRIVER_ERRORS as exc:
                raise translate(exc, reader=True) from exc

    async def checkpoint(self, mode: str = "PASSIVE") -> tuple[int, int, int]:
        if mode not in {"PASSIVE", "FULL", "RESTART", "TRUNCATE"}:
            raise QueryError(STORE, f"unknown checkpoint mode {mode!r}")
        async with self.writer.acquire() as conn:
            return await conn.run(lambda c: c.execute(f"PRAGMA wal_checkpoint({mode})").fetchone())

    async def integrity(self, *, full: bool = False) -> list[str]:
        """SQLite's page check: ``[]`` when healthy, else its findings, one per line.

        ``quick_check`` reads every page (a corrupt page is found even if no query touches it);
        ``full`` runs ``integrity_check``, which also compares every index with its table.
        """
        pragma = "integrity_check" if full else "quick_check"
        async with self.readers.acquire() as conn:
            try:
                rows = await conn.run(lambda c: c.execute(f"PRAGMA {pragma}").fetchall())
            except DRIVER_ERRORS as exc:
                if _is_corrupt(exc):  # the check itself stopped on a bad page: that is its finding
                    return [str(exc)]
                raise translate(exc, reader=True) from exc
        lines = [line for (text,) in rows for line in str(text).splitlines()]
        # "*** in database main ***" heads the findings of each attached database.
        findings = [line for line in lines if not line.startswith("*** in database")]
        return [] if findings == ["ok"] else findings

    async def version(self) -> str:
        return sqlite3.sqlite_version

    async def effective_settings(self) -> dict[str, Any]:
        """The writer's pragmas as SQLite reports them, and how writes run.

        In inline mode the writer's own busy_timeout is 0 (an SQLITE_BUSY goes to the writer
        thread, which waits ``sqlite.busy_timeout_ms``): ``busy_timeout_ms`` reports that wait,
        ``writer_busy_timeout_ms`` what the connection holds, ``write_path`` the mode.
        The writer has its own cache size: ``cache_size`` is a reader's, ``writer_cache_size``
        the writer's.
        """
        async with self.writer.acquire() as conn:
            pragmas = await conn.run(read_pragmas)
            autocheckpoint = await conn.run(
                lambda c: c.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
            )
        async with self.readers.acquire() as reader:
            reader_cache = await reader.run(lambda c: c.execute("PRAGMA cache_size").fetchone()[0])
        pragmas["writer_cache_size"] = pragmas["cache_size"]
        pragmas["cache_size"] = reader_cache
        pragmas["writer_busy_timeout_ms"] = pragmas["busy_timeout_ms"]
        pragmas["wal_autocheckpoint"] = autocheckpoint
        if conn.inline:
            pragmas["busy_timeout_ms"] = self.settings.sqlite.busy_timeout_ms
            pragmas["write_path"] = "inline"
            pragmas["inline_max_steps"] = self.settings.sqlite.inline_max_steps
            pragmas["checkpoint"] = (
                f"background PASSIVE past {self.settings.sqlite.checkpoint_wal_bytes} WAL bytes"
            )
        else:
            pragmas["write_path"] = "thread"
            pragmas["checkpoint"] = "sqlite autocheckpoint"
        return pragmas

    async def check(self) -> dict[str, Any]:
        return {"writer": await self.writer.check(), "readers": await self.readers.check()}

    def stats(self) -> dict[str, dict[str, Any]]:
        return {
            "writer": self.writer.stats(),
            "readers": self.readers.stats(),
            "writes": dict(self.counters),
            "checkpoints": self._checkpointer.stats(),
        }


class ReplayDiverged(sqlite3.OperationalError):
    """A replayed step of a :class:`WriterTx` returned something else than the first time."""


class WriterTx:
    """A write transaction run step by step, with awaits between the steps (the coordinator's).

    Each step runs inline when the connection allows it. A step that meets SQLITE_BUSY or the
    budget has lost the whole transaction (an interrupted write statement makes SQLite roll it
    all back; otherwise it is rolled back here so that the thread can redo it), and the steps of
    a transaction that already returned cannot be undone for the caller: so the earlier steps are
    replayed on the writer thread, in order, each checked against the result it gave the first
    time, then the step runs there. A replayed step that gives another result (another process
    wrote in between, or the step is not deterministic) fails the transaction, because the caller
    has already acted on the first one. Each step's ``fn`` may thus be called more than once and
    must have no effect outside the connection. After a cancelled hop (its work may still be
    running on the thread) every later step, and the rollback, go to the thread, in order.
    """

    __slots__ = ("_begun", "_inline", "_steps", "_threaded", "conn", "store")

    def __init__(self, store: SQLiteStore, conn: SQLiteConnection, *, inline: bool = True) -> None:
        self.store = store
        self.conn = conn
        self._inline = conn.inline and inline
        self._steps: list[tuple[Callable[[sqlite3.Connection], Any], Any]] = []
        self._begun = False
        self._threaded = False  # some step of this transaction ran on the thread

    async def step(self, fn: Callable[[sqlite3.Connection], T], *, commit: bool = False) -> T:
        """Run ``fn(conn)`` in the transaction (BEGIN IMMEDIATE first if needed, COMMIT after)."""
        store = self.store
        if self._inline:
            max_steps = store.settings.sqlite.inline_max_steps
            outcome, result = _run_inline(
                self.conn.raw, fn, max_steps, begin=not self._begun, commit=commit
            )
            if outcome is _DONE:
                return self._done(fn, result, commit)  # type: ignore[arg-type]
            store._count_fallback(outcome)
            # The fallback left no transaction open: redo it all on the thread.
            replay, begin = list(self._steps), True
        else:
            replay, begin = [], not self._begun
        wait = store._wait_ms(self.conn)
        self._threaded = True
        try:
            result = await self.conn.run(lambda c: _replay(c, replay, fn, wait, begin, commit))
        except asyncio.CancelledError:
            self._inline = False
            raise
        except BaseException:
            self._steps.clear()
            self._begun = False
            raise
        return self._done(fn, result, commit)

    def _done(self, fn: Callable[[sqlite3.Connection], T], result: T, commit: bool) -> T:
        if not commit:
            self._steps.append((fn, result))
            self._begun = True
            return result
        self.store.counters["writes_thread" if self._threaded else "writes_inline"] += 1
        if self.conn.inline:
            self.store._checkpointer.note_commit(heavy=self._threaded)
        self._steps.clear()
        self._begun = self._threaded = False
        return result

    async def rollback(self) -> None:
        self._steps.clear()
        self._begun = False
        if self._inline:
            _rollback(self.conn.raw)
        else:
            await self.conn.run(_rollback)


def _replay(
    conn: sqlite3.Connection,
    steps: list[tuple[Callable[[sqlite3.Connection], Any], Any]],
    fn: Callable[[sqlite3.Connection], T],
    wait_ms: int | None,
    begin: bool,
    commit: bool,
) -> T:
    """On the writer thread: (BEGIN,) the earlier steps checked, ``fn``, (COMMIT)."""
    if begin:
        _rollback(conn)
        begin_immediate(conn, wait_ms)
    try:
        for i, (step, expected) in enumerate(steps):
            if step(conn) != expected:
                raise ReplayDiverged(
                    f"the transaction was redone on the writer thread (a statement met "
                    f"SQLITE_BUSY or exceeded sqlite.inline_max_steps) and its step {i + 1} "
                    "returned another result the second time (another process wrote in "
                    "between, or the step is not deterministic); rolled back"
                )
        result = fn(conn)
        if commit:
            conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise
    return result


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def _in_transaction(
    conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T], wait_ms: int | None = None
) -> T:
    begin_immediate(conn, wait_ms)
    try:
        result = fn(conn)
    except BaseException:
        _rollback(conn)
        raise
    conn.execute("COMMIT")
    return result


def _in_read_snapshot(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    conn.execute("BEGIN")
    try:
        return fn(conn)
    finally:
        _rollback(conn)


def _executescript_in_tx(conn: sqlite3.Connection, script: str) -> None:
    # executescript() would COMMIT first; run the statements one by one inside our transaction.
    for statement in _split_sql(script):
        conn.execute(statement)


def _split_sql(script: str) -> list[str]:
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements
