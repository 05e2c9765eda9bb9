"""The graph store: Kuzu (or its fork Ladybug), reader connections plus a single writer lane.

Facts that shape this module, measured with Kuzu 0.11.3:
- one read-write ``Database`` per path per process, so databases are shared through a refcounted
  registry keyed by engine and real path;
- the engine allows one write transaction at a time and fails a second one at once, so every
  write goes through a one-connection writer pool, where writers queue instead of failing;
- reusing a connection after a failed BEGIN segfaults, so any connection that saw an error in a
  transaction is discarded (a new Connection costs ~16 us);
- queries release the GIL, so they run in a small thread pool and never block the event loop;
- a cancelled caller cannot just walk away from its query: the thread would go on running it
  (and, before the slot accounting below, a new query would take its slot), so a cancelled call
  that has not started is withdrawn, and one that has started is interrupted and waited for
  (see :meth:`GraphStore.run`). Kuzu drops an ``interrupt()`` that arrives before execution
  begins (binding, where constant expressions are folded, cannot be interrupted), so the
  interrupt is repeated until the call returns.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import ctypes.util
import gc
import importlib
import importlib.util
import logging
import os
import re
import sys
import threading
import traceback
from collections.abc import Callable, Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any, Generic, TypeVar

from tristore.config import Settings
from tristore.errors import QueryError, StoreFull, StoreUnavailable
from tristore.pool import Pool, PoolConfig
from tristore.schema import graph_statements
from tristore.stores import graph_probe
from tristore.stores.graph_prepared import PreparedStatements
from tristore.stores.limits import check_values

T = TypeVar("T")
STORE = "graph"
log = logging.getLogger(__name__)
Statement = tuple[str, Mapping[str, Any] | None]

# How often a cancelled call's interrupt is repeated until the call returns: an interrupt is
# one atomic store in the engine, so the poll is cheap; it only bounds how long after the
# engine starts executing the query the interrupt lands.
INTERRUPT_POLL_S = 0.005


ENGINES: tuple[str, ...] = ("kuzu", "ladybug")


def load_engine(name: str) -> ModuleType:
    """Import the graph engine module ``name``, one engine per process.

    Ladybug is a fork of Kuzu and both register the same pybind11 types: importing the second
    one in a process fails ("type "Database" is already registered") and the process then
    segfaults on exit. So the second engine is refused with a typed error before it is imported.
    """
    if name not in ENGINES:
        raise StoreUnavailable(STORE, f"unknown graph engine {name!r}: use 'kuzu' or 'ladybug'")
    if not _installed(name):
        raise StoreUnavailable(STORE, f"graph engine {name!r} is not installed: pip install {name}")
    loaded = [other for other in ENGINES if other != name and sys.modules.get(other) is not None]
    if loaded:
        raise StoreUnavailable(
            STORE,
            f"graph engine {name!r} cannot be loaded: {loaded[0]!r} is already loaded in this "
            "process, and the two share native type names. Use one engine per process.",
        )
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise StoreUnavailable(
            STORE, f"graph engine {name!r} is not installed: pip install {name}"
        ) from exc


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a broken or half-imported module: not usable
        return False


def available_engines() -> list[str]:
    """The engines installed here, found without importing them (see :func:`load_engine`)."""
    return [name for name in ENGINES if _installed(name)]


class _SharedDatabase:
    __slots__ = ("db", "engine", "refs", "tainted")

    def __init__(self, db: Any, engine: ModuleType) -> None:
        self.db = db
        self.engine = engine
        self.refs = 0
        # A write transaction on this Database was rolled back and no CHECKPOINT has run since
        # (see GraphStore.contain): per Database, which every store on the path shares.
        self.tainted = False


_registry: dict[tuple[str, str], _SharedDatabase] = {}
_registry_lock = threading.Lock()


def _open_database(settings: Settings) -> tuple[tuple[str, str], _SharedDatabase]:
    g = settings.graph
    engine = load_engine(g.engine)
    path = settings.graph_path
    key = (g.engine, str(path.resolve()))
    with _registry_lock:
        shared = _registry.get(key)
        if shared is not None:
            shared.refs += 1
            return key, shared
    # Outside the lock: a probe takes a child process's start-up, and _release_database, which
    # takes the lock on the event loop's thread, must not wait for it.
    vet_graph_file(settings)
    with _registry_lock:
        shared = _registry.get(key)
        if shared is None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                db = engine.Database(
                    str(path),
                    buffer_pool_size=g.buffer_pool_bytes,
                    max_num_threads=g.max_threads,
                    compression=g.compression,
                )
            except Exception as exc:  # MemoryError (std::bad_alloc) and ValueError included
                raise StoreUnavailable(STORE, _explain_open_error(path, exc)) from exc
            # Open now: a process that dies before its clean close must leave no marker.
            graph_probe.clear_mark(Path(key[1]))
            _poisoned.discard(key[1])
            shared = _SharedDatabase(db, engine)
            _registry[key] = shared
        shared.refs += 1
        return key, shared


def vet_graph_file(settings: Settings, *, always_probe: bool = False) -> None:
    """Refuse an existing graph file that would crash the engine or open as an empty graph.

    See :mod:`tristore.stores.graph_probe`: the header and size are checked here, and the
    engine opens the file in a child process first unless a clean close left it marked, or a
    probe here found the same content good (or always, as ``tristore doctor`` asks). Raises
    :class:`StoreUnavailable` naming the file. Blocks for the probe: call it off the event loop.
    """
    g = settings.graph
    path = settings.graph_path.resolve()
    try:
        if not path.is_file():
            return  # a new database (or not a file, which the engine reports itself)
        problem = graph_probe.check_header(path, g.engine)
    except OSError as exc:
        raise StoreUnavailable(STORE, f"cannot read the graph database file {path}: {exc}") from exc
    if problem is not None:
        raise StoreUnavailable(
            STORE,
            f"the graph database file {path} {problem}; restore it from a backup, or move it "
            "away to start an empty graph",
        )
    if not always_probe and (graph_probe.is_marked_clean(path) or graph_probe.is_known_good(path)):
        return
    if str(path) in _leaked:
        # This process wrote it up to a failed write and holds its lock: a child could not
        # open it, and its state is that of a killed process's file, which the engine replays.
        return
    # Taken before the probe: the child's close may rewrite the file.
    content = graph_probe.content_key(path)
    result = graph_probe.probe(
        path, g.engine, buffer_pool_bytes=g.buffer_pool_bytes, compression=g.compression
    )
    if not result.ok:
        raise StoreUnavailable(STORE, _explain_open_error(path, _ProbeFailed(result.error)))
    graph_probe.remember_good(content)
    # The child closed the file cleanly: the next process need not probe it again.
    graph_probe.mark_clean(path)


# Databases left open because their disk had no room to close them (see _release_database).
_parked: set[tuple[str, str]] = set()


def _release_database(key: tuple[str, str]) -> None:
    with _registry_lock:
        shared = _registry.get(key)
        if shared is None:
            return
        shared.refs -= 1
        if shared.refs > 0:
            return
        path = Path(key[1])
        if key[1] in _poisoned:
            # Never closed (closing writes), never used again: a fresh open replaces it.
            del _registry[key]
            _parked.discard(key)
            _leak(shared.db)
            _leaked.add(key[1])
            return
        if _room_needed(path) is not None:
            _park(key, shared)
            return
        del _registry[key]
        _parked.discard(key)
        # Under the lock: an open of the same path must not race the engine's unlock.
        if _close_database(shared):
            graph_probe.mark_clean(path)


def _park(key: tuple[str, str], shared: _SharedDatabase) -> None:
    """Leave a Database open whose disk is full, rather than let closing it abort the process.

    Closing flushes the write-ahead log's buffer and checkpoints; on a full disk the engine
    throws from a destructor and the process aborts (``terminate called after throwing
    kuzu::common::IOException``). Left open, the file is as a killed process leaves it: every
    acknowledged write is in the log, and the next open replays it once space is back. The
    Database stays in the registry (a later open in this process takes it up again, and a later
    close with room closes it), and an extra reference keeps the interpreter's shutdown from
    destroying it; the file lock goes with the process.
    """
    if key not in _parked:
        _parked.add(key)
        _leak(shared.db)
    log.warning(
        "graph: %s left open: its disk has no room to close it (it stays locked by this process "
        "until it exits; every acknowledged write is in its log)",
        key[1],
    )


def _leak(db: Any) -> None:
    """Keep ``db`` from ever being destroyed, even at the interpreter's shutdown (its
    destructor would flush and checkpoint, which is what must not happen)."""
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(db))


# Database files whose engine instance failed to write its log (a full disk), by real path. Kuzu
# 0.11.3 leaves that instance's memory inconsistent: a later write, CHECKPOINT or close of it can
# abort the process (glibc "double free or corruption", or a throw from a destructor), even once
# space is back. So it takes no write again; the store's close leaves it open, never to be used
# (see _leak), and the next open of the path makes a fresh instance, which replays the log (every
# acknowledged write is in it, as after a killed process).
_poisoned: set[str] = set()
# Of those, the ones left open in this process (their file lock is this process's own).
_leaked: set[str] = set()


def _close_database(shared: _SharedDatabase) -> bool:
    """Close the engine's ``Database`` and release its file now; True if that went cleanly.

    Closing must not raise to the caller. Ladybug keeps its file locked against other processes
    while any object that shares its database is alive: a Connection not yet closed, or a
    prepared statement (``Database.close()`` only drops its own share). After a failed write
    such objects are often held by reference cycles only (a traceback's frames), which the
    garbage collector frees when it next runs, maybe never: so, for Ladybug, collect now, then
    close every connection the engine still knows of, then the database.
    """
    db = shared.db
    clean = True
    if shared.engine.__name__ == "ladybug":
        gc.collect()
        for conn in list(getattr(db, "_connections", ())):
            try:
                conn.close()
            except Exception:
                clean = False
    try:
        db.close()
    except Exception:
        clean = False
    return clean


class _ProbeFailed(Exception):
    """The child process that opened the file (see graph_probe.probe) failed; str: why."""


def _explain_open_error(path: Path, exc: BaseException) -> str:
    msg = " ".join(str(exc).split()) or type(exc).__name__
    lowered = msg.lower()
    if re.search(r"\block\b", lowered):  # "lock", not "block"
        return (
            f"{path} is locked by another process (Kuzu allows one read-write process per "
            f"path): stop that process or use another path ({msg})"
        )
    if "permission" in lowered or "read-only" in lowered or "read only" in lowered:
        return f"{path} is not writable: fix its permissions or use another path ({msg})"
    if isinstance(exc, RuntimeError | OSError):
        return f"cannot open the graph database at {path}: {msg}"
    # A crash, std::bad_alloc (MemoryError) or a ValueError from the engine: its file.
    if not isinstance(exc, _ProbeFailed):
        msg = f"{type(exc).__name__}: {msg}"
    return (
        f"cannot open the graph database at {path}, the file looks corrupt ({msg}): restore "
        "it from a backup, or move it away to start an empty graph"
    )


# Free space that closing a Database needs beyond its write-ahead log's size: closing checkpoints,
# which copies the log into the database file. The engine's own figure is not exposed; a few MiB
# covers the catalog, the metadata and the last part page of each column.
FULL_DISK_MARGIN_BYTES = 4 << 20

_IO_ERROR = re.compile(r"\bIO exception\b|No space left", re.I)
_IO_PATH = re.compile(r"\bpath: (\S+)")


def _free_bytes(directory: Path) -> int | None:
    try:
        st = os.statvfs(directory)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def _room_needed(path: Path) -> int | None:
    """The free bytes closing the Database on ``path`` needs on its disk, if it has fewer; None
    if it has room (or cannot be measured)."""
    free = _free_bytes(path.parent)
    if free is None:
        return None
    try:
        wal = os.stat(f"{path}.wal").st_size
    except OSError:
        wal = 0
    # A checkpoint writes the log's pages to a shadow file, then into the database file.
    needed = 2 * wal + FULL_DISK_MARGIN_BYTES
    return needed if free < needed else None


def _refuse_poisoned(path: Path) -> None:
    """Refuse a writer connection to a Database that failed to write its log (see _poisoned)."""
    needed = _room_needed(path)
    if needed is not None:
        raise StoreFull(
            STORE,
            f"the disk holding {path} has {_free_bytes(path.parent)} bytes free, less than the "
            f"{needed} that writing again needs (twice the write-ahead log's size plus "
            f"{FULL_DISK_MARGIN_BYTES >> 20} MiB): writes are refused until space is freed and "
            "the graph store is opened again; reads go on",
        )
    raise StoreUnavailable(
        STORE,
        f"a write to {path} failed for want of disk space, and the engine cannot write through "
        "the same open database again without risking the process: close the graph store "
        "and open it again (every acknowledged write is kept); reads go on",
    )


def _io_error(msg: str) -> StoreUnavailable:
    """The engine could not read or write its files: the store's condition, not the query's."""
    found = _IO_PATH.search(msg)
    directory = Path(found.group(1)).parent if found else None
    if found and "cannot write" in msg.lower():
        written = Path(found.group(1))
        database = written.with_suffix("") if written.suffix in (".wal", ".shadow") else written
        with contextlib.suppress(OSError):
            _poisoned.add(str(database.resolve()))
    free = _free_bytes(directory) if directory is not None else None
    if "no space" in msg.lower() or (free is not None and free < FULL_DISK_MARGIN_BYTES):
        return StoreFull(
            STORE,
            f"{msg}: the disk is full ({free} bytes free); nothing of this write was kept, and "
            "writes are refused until space is freed",
        )
    return StoreUnavailable(STORE, f"{msg}: the graph's files could not be used")


def translate(exc: BaseException) -> Exception:
    # The engine's error travels on as the typed error's cause, with a traceback whose finished
    # frames still hold the connection and prepared statement it failed on. A caller who keeps
    # the error would keep the engine's Database, and with Ladybug its file lock, alive after
    # every store is closed: those frames' locals go (their lines stay in the traceback).
    if exc.__traceback__ is not None:
        traceback.clear_frames(exc.__traceback__)
    msg = str(exc).strip()
    if isinstance(exc, RuntimeError) and _IO_ERROR.search(msg):
        return _io_error(msg)
    if isinstance(exc, RuntimeError | ValueError | TypeError):
        return QueryError(STORE, msg)
    return exc if isinstance(exc, Exception) else QueryError(STORE, msg)


def _preview(value: object, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def rows_as_dicts(result: Any) -> list[dict[str, Any]]:
    names = result.get_column_names()
    return [dict(zip(names, row, strict=True)) for row in result.get_all()]


class _GraphConnector:
    store = STORE

    def __init__(self, graph: GraphStore, *, writer: bool = False) -> None:
        self.graph = graph
        self.writer = writer

    async def connect(self) -> Any:
        shared = self.graph.shared
        if shared is None:
            raise StoreUnavailable(STORE, "graph store is not open")
        if self.writer and self.graph._key is not None and self.graph._key[1] in _poisoned:
            _refuse_poisoned(self.graph.path)
        conn = shared.engine.Connection(
            shared.db, num_threads=self.graph.settings.graph.max_threads
        )
        if self.writer:
            self.graph._writer_conns.add(id(conn))
        return conn

    async def close(self, conn: Any) -> None:
        # GraphStore.run returns only once its thread is done with the connection, so nothing
        # should be running here; but closing a connection (or the database) under a running
        # query segfaults, so make sure rather than trust it.
        running = self.graph._running.get(id(conn))
        cancelled = False
        if running is not None and not running.done():
            cancelled = await self.graph._stop(conn, running)
        self.graph._writer_conns.discard(id(conn))
        conn.close()
        if cancelled:
            raise asyncio.CancelledError

    async def check(self, conn: Any) -> None:
        await self.graph.run(conn, lambda c: c.execute("RETURN 1").get_all())

    # Nothing a normal exit can leave behind: failures discard the connection explicitly.
    reset_on_return = False

    async def reset(self, conn: Any) -> bool:
        return True


class GraphStore:
    """``query`` reads on a reader connection; ``write``/``execute`` go through the writer lane."""

    def __init__(
        self,
        settings: Settings,
        *,
        reader_pool: PoolConfig | None = None,
        apply_schema: bool = True,
    ) -> None:
        self.settings = settings
        self.apply_schema = apply_schema
        self.shared: _SharedDatabase | None = None
        self._key: tuple[str, str] | None = None
        readers = settings.graph.readers
        # Two executors: the writer lane has a thread of its own, so a write (the coordinator's
        # graph stage, which runs while it holds the SQLite writer lane) never queues for a
        # thread behind reads, however many reads are running or were resized in.
        self._executor: ThreadPoolExecutor | None = None
        self._writer_executor: ThreadPoolExecutor | None = None
        self._writer_conns: set[int] = set()
        # id(connection) -> its call running in a worker thread (see run and _stop)
        self._running: dict[int, concurrent.futures.Future[Any]] = {}
        self._calls = _CallCounts()
        # Kuzu leaks every statement execute(text, params) prepares: reuse prepared ones.
        self.prepared = PreparedStatements()
        self._workers = readers
        self._containments = 0
        self.writer: Pool[Any] = Pool(
            _GraphConnector(self, writer=True),
            PoolConfig(min_size=1, max_size=1),
            name="graph-writer",
        )
        self.readers: Pool[Any] = Pool(
            _GraphConnector(self),
            reader_pool or PoolConfig(min_size=1, max_size=readers),
            name="graph-readers",
        )

    @property
    def engine_name(self) -> str:
        return self.settings.graph.engine

    @property
    def path(self) -> Path:
        return self.settings.graph_path

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(self._workers, thread_name_prefix="tristore-graph")
        self._writer_executor = ThreadPoolExecutor(1, thread_name_prefix="tristore-graph-writer")
        try:
            self._key, self.shared = await loop.run_in_executor(
                self._executor, _open_database, self.settings
            )
            await self.writer.open()
            if self.apply_schema:
                await self.write([(stmt, None) for stmt in graph_statements()])
            await self.readers.open()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        await self.readers.close()
        await self.writer.close()
        # Every worker thread must be idle before the database goes: a query still running on
        # a closing database segfaults.
        if self._running:
            await asyncio.wait([_observed(f) for f in self._running.values()])
            self._running.clear()
        for executor in (self._executor, self._writer_executor):
            if executor is not None:
                executor.shutdown(wait=True)
        self._executor = self._writer_executor = None
        # Its statements belong to the connections just closed: nothing of them may outlive the
        # close (they are the engine's objects, tied to the Database).
        self.prepared = PreparedStatements()
        if self._key is not None:
            _release_database(self._key)
            self._key = None
            self.shared = None

    @property
    def needs_reopen(self) -> bool:
        """A write failed for want of disk space, and the engine's instance under this store
        takes no write again (see ``_poisoned``): writes raise ``StoreUnavailable`` until the
        store is closed and a new one is opened on the path (in this process or another) once
        space is back; the new one replays the log, which holds every acknowledged write."""
        return self._key is not None and self._key[1] in _poisoned

    async def __aenter__(self) -> GraphStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def run(self, conn: Any, fn: Callable[[Any], T]) -> T:
        """``fn(conn)`` on a worker thread; when this returns or raises, the thread is done.

        Cancelled before the thread took the call: the call is withdrawn and never starts.
        Cancelled after: the query is interrupted (again and again, see INTERRUPT_POLL_S) and
        the cancellation goes on only once the thread has returned, so the caller's pool slot,
        and with it the pool's limit, covers the whole time the engine works for it. Further
        cancellations meanwhile are absorbed: giving up early would free the slot too soon.

        The call is awaited through a plain ``wrap_future``, not ``asyncio.shield``: the shield's
        second future and extra loop turn cost ~2.5% of a point read (tools/bench/measurements/
        graph-read-path.txt). Cancelling the wrapper cancels the thread's future too, which
        withdraws a queued call and leaves a running one alone; the running one is then waited
        for through a new wrapper. ``_running`` keeps the thread's own future, whose completion
        is the truth about the thread whichever wrapper was cancelled.
        """
        return await self.start(conn, fn)

    def start(self, conn: Any, fn: Callable[[Any], T]) -> Coroutine[Any, Any, T]:
        """Hand ``fn(conn)`` to the worker thread now; the returned coroutine is :meth:`run`'s
        wait for it, which the caller must await (so that the caller can do other work on the
        loop while the thread works, without a task of its own)."""
        executor = self._writer_executor if id(conn) in self._writer_conns else self._executor
        if executor is None:
            raise StoreUnavailable(STORE, "graph store is not open")
        call = _Call(fn)
        cfuture = executor.submit(self._calls.call, call, conn)
        self._running[id(conn)] = cfuture
        return self._outcome(conn, call, cfuture)

    async def _outcome(self, conn: Any, call: _Call[T], cfuture: concurrent.futures.Future[T]) -> T:
        calls, running, key = self._calls, self._running, id(conn)
        try:
            return await asyncio.wrap_future(cfuture)
        except asyncio.CancelledError:
            if cfuture.cancel():  # still queued (or withdrawn by the wrapper): never starts
                calls.count("cancelled_unstarted")
                raise
            if not cfuture.done():
                calls.count("interrupts_requested")
                call.interrupted = True
                await self._stop(conn, cfuture)
                if cfuture.exception() is not None:
                    calls.count("interrupted")
            raise
        finally:
            if running.get(key) is cfuture:
                del running[key]

    async def _stop(self, conn: Any, cfuture: concurrent.futures.Future[Any]) -> bool:
        """Interrupt ``conn``'s call until its thread returns; True if cancelled meanwhile.

        Cancellation cannot cut this short (that would free the connection under a running
        query); the caller raises it once the thread is done.
        """
        cancelled = False
        # One wrapper for every poll: asyncio.wait never cancels what it waits for, so a
        # cancellation of this task cannot reach the thread's future through it.
        done = _observed(cfuture)
        while not cfuture.done():
            with contextlib.suppress(Exception):
                conn.interrupt()
            try:
                await asyncio.wait([done], timeout=INTERRUPT_POLL_S)
            except asyncio.CancelledError:
                cancelled = True
        return cancelled

    def calls(self) -> dict[str, int]:
        """Worker-thread calls: ``in_flight`` now, ``peak_in_flight``, and what cancellation did:
        ``cancelled_unstarted`` (withdrawn before starting), ``interrupts_requested`` (cancelled
        while running) and ``interrupted`` (of those, the ones the interrupt stopped with an
        error rather than letting them finish)."""
        return self._calls.snapshot()

    def _params(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        """Checked parameters: named (Cypher has ``$name`` only) and within the size limit."""
        if params is None:
            return {}
        if not isinstance(params, Mapping) or not all(isinstance(k, str) for k in params):
            raise QueryError(
                STORE,
                "parameters must be a mapping of $names to values, got "
                f"{type(params).__name__} {_preview(params)}",
            )
        check_values(STORE, params, self.settings.graph.max_value_bytes)
        return dict(params)

    # -- reads ------------------------------------------------------------------------------
    async def query(
        self, cypher: str, params: Mapping[str, Any] | None = None, *, timeout: float | None = None
    ) -> list[dict[str, Any]]:
        """A read query; rows as dicts keyed by column name."""
        values = self._params(params)
        return await self.read(
            lambda c: rows_as_dicts(self.prepared.execute(c, cypher, values)), timeout=timeout
        )

    async def query_rows(
        self, cypher: str, params: Mapping[str, Any] | None = None, *, timeout: float | None = None
    ) -> list[list[Any]]:
        values = self._params(params)
        return await self.read(
            lambda c: self.prepared.execute(c, cypher, values).get_all(), timeout=timeout
        )

    async def read(self, fn: Callable[[Any], T], *, timeout: float | None = None) -> T:
        async with self.readers.acquire(timeout=timeout) as conn:
            try:
                return await self.run(conn, fn)
            except Exception as exc:
                # The error may have left the connection mid-transaction: never reuse it.
                self.readers.discard(conn)
                raise translate(exc) from exc

    # -- writes -----------------------------------------------------------------------------
    async def execute(
        self, cypher: str, params: Mapping[str, Any] | None = None, *, timeout: float | None = None
    ) -> list[dict[str, Any]]:
        """One write statement, committed on its own."""
        rows = await self.write([(cypher, params)], timeout=timeout)
        return rows[-1]

    async def write(
        self, statements: Sequence[Statement], *, timeout: float | None = None
    ) -> list[list[dict[str, Any]]]:
        """Several write statements in one transaction, in one thread hop; all or nothing."""
        statements = [(cypher, self._params(params)) for cypher, params in statements]
        return await self.write_fn(
            lambda c: _run_statements(self.prepared, c, statements), timeout=timeout
        )

    async def write_fn(self, fn: Callable[[Any], T], *, timeout: float | None = None) -> T:
        """Run ``fn(conn)`` between BEGIN TRANSACTION and COMMIT on the writer lane (one hop)."""
        async with self.transaction(timeout=timeout) as tx:
            return await tx.run(fn, commit=True)

    def transaction(self, *, timeout: float | None = None) -> GraphWriteTx:
        """A Kuzu write transaction on the writer lane: ``async with graph.transaction() as tx``.

        ``await tx.run(fn)`` runs ``fn(conn)`` inside it on the writer thread (BEGIN rides on the
        first call); ``await tx.run(fn, commit=True)`` also commits, in the same hop. Leaving the
        block without a commit, or after any error, rolls back and contains the engine (see
        :meth:`contain`); the lane is held from entering the block to leaving it.
        """
        return GraphWriteTx(self, timeout)

    async def contain(self) -> None:
        """Make the engine safe to write again after a rolled-back write transaction.

        Kuzu 0.11.3 leaves a node that a rolled-back write transaction had updated failing every
        later update ("Write-write conflict of updating the same row"), or crashes on a later
        rollback, until the Database is reopened; a CHECKPOINT rebuilds the same in-memory state
        and clears it (tests/integration/test_graph_containment.py reproduces it against the raw
        engine). Ladybug does not have the defect; the CHECKPOINT is harmless there. Until it has
        succeeded, every write transaction checkpoints first.
        """
        self._set_tainted(True)
        with contextlib.suppress(Exception):
            async with self.writer.acquire() as conn:
                await self._checkpoint(conn)

    async def _checkpoint(self, conn: Any) -> None:
        try:
            await self.run(conn, _checkpoint)
        except Exception:
            self.writer.discard(conn)
            raise
        self._set_tainted(False)
        self._containments += 1

    async def version(self) -> str:
        rows = await self.query_rows("CALL db_version() RETURN *")
        return str(rows[0][0])

    async def effective_settings(self) -> dict[str, Any]:
        g = self.settings.graph
        return {
            "engine": g.engine,
            "path": str(self.path),
            "buffer_pool_bytes": g.buffer_pool_bytes,
            "max_threads": g.max_threads,
            "compression": g.compression,
        }

    async def check(self) -> dict[str, Any]:
        return {"writer": await self.writer.check(), "readers": await self.readers.check()}

    def stats(self) -> dict[str, dict[str, Any]]:
        return {"writer": self.writer.stats(), "readers": self.readers.stats()}

    def _set_tainted(self, tainted: bool) -> None:
        if self.shared is not None:
            self.shared.tainted = tainted

    @property
    def containments(self) -> int:
        """CHECKPOINTs run to contain a rolled-back write transaction (see :meth:`contain`)."""
        return self._containments


def _observed(cfuture: concurrent.futures.Future[Any]) -> asyncio.Future[Any]:
    """An asyncio future that completes with ``cfuture``, for waiting only: its outcome is
    marked retrieved (the call's owner reports it), so no "never retrieved" warning follows."""
    future = asyncio.wrap_future(cfuture)
    future.add_done_callback(lambda f: f.cancelled() or f.exception())
    return future


class _Call(Generic[T]):
    """One worker-thread call; ``interrupted`` is set by the loop when it is cancelled."""

    __slots__ = ("fn", "interrupted")

    def __init__(self, fn: Callable[[Any], T]) -> None:
        self.fn = fn
        self.interrupted = False


def _load_malloc_trim() -> Callable[[], None]:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim with
        return lambda: None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int

    def malloc_trim() -> None:
        trim(0)

    return malloc_trim


_malloc_trim = _load_malloc_trim()


class _CallCounts:
    """Counts of worker-thread calls; updated from the worker threads, hence the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(
            ("in_flight", "peak_in_flight", "cancelled_unstarted", "interrupts_requested"), 0
        )
        self._counts["interrupted"] = 0

    def call(self, call: _Call[T], conn: Any) -> T:
        with self._lock:
            counts = self._counts
            counts["in_flight"] += 1
            counts["peak_in_flight"] = max(counts["peak_in_flight"], counts["in_flight"])
        try:
            return call.fn(conn)
        finally:
            with self._lock:
                self._counts["in_flight"] -= 1
            if call.interrupted:
                # A cancelled query's memory (one `UNWIND range(1, 3000000)` binds a 1.6 GB
                # list) stays in this thread's malloc arena after it is freed: glibc returns
                # arena memory only on a trim. Cancellation is rare, so trim then.
                _malloc_trim()

    def count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


def _run_statements(
    prepared: PreparedStatements, conn: Any, statements: Sequence[Statement]
) -> list[list[dict[str, Any]]]:
    return [
        rows_as_dicts(prepared.execute(conn, cypher, dict(params or {})))
        for cypher, params in statements
    ]


def _checkpoint(conn: Any) -> None:
    conn.execute("CHECKPOINT")


def _step(conn: Any, fn: Callable[[Any], T], *, begin: bool, commit: bool) -> T:
    """BEGIN (if asked), ``fn``, COMMIT (if asked); on any error Kuzu has rolled back already,
    and the ROLLBACK here makes sure of it (the connection is discarded by the caller)."""
    if begin:
        # A failed BEGIN leaves the connection unusable (reusing it segfaults): no ROLLBACK then.
        conn.execute("BEGIN TRANSACTION")
    try:
        result = fn(conn)
        if commit:
            conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(Exception):
            conn.execute("ROLLBACK")
        raise
    return result


def _rollback(conn: Any) -> None:
    conn.execute("ROLLBACK")


class GraphWriteTx:
    """One Kuzu write transaction on the writer lane; see :meth:`GraphStore.transaction`."""

    __slots__ = ("_acquire", "_conn", "_graph", "_timeout", "begun", "done")

    def __init__(self, graph: GraphStore, timeout: float | None) -> None:
        self._graph = graph
        self._timeout = timeout
        self._acquire: Any = None
        self._conn: Any = None
        self.begun = False  # BEGIN ran: a rollback is needed unless committed
        self.done = False  # committed, or failed and rolled back

    async def __aenter__(self) -> GraphWriteTx:
        graph = self._graph
        self._acquire = graph.writer.acquire(timeout=self._timeout)
        conn = await self._acquire.__aenter__()
        if graph.shared is not None and graph.shared.tainted:
            try:
                await graph._checkpoint(conn)
            except BaseException as exc:
                await self._acquire.__aexit__(type(exc), exc, exc.__traceback__)
                raise StoreUnavailable(
                    STORE, f"the graph engine could not be made safe after a rollback: {exc}"
                ) from exc
        self._conn = conn
        return self

    async def run(self, fn: Callable[[Any], T], *, commit: bool = False) -> T:
        if self.done:
            raise QueryError(STORE, "the graph write transaction has ended")
        begin = not self.begun
        self.begun = True
        try:
            result = await self._graph.run(
                self._conn, lambda c: _step(c, fn, begin=begin, commit=commit)
            )
        except BaseException as exc:
            self.done = True
            self._failed()
            if isinstance(exc, Exception):
                raise translate(exc) from exc
            raise
        if commit:
            self.done = True
        return result

    def _failed(self) -> None:
        """The engine rolled back (or the connection's state is unknown): discard, contain."""
        graph, conn = self._graph, self._conn
        with contextlib.suppress(Exception):
            graph.writer.discard(conn)
        graph._set_tainted(True)  # checkpointed by the next write transaction, on a new connection

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        try:
            if self.begun and not self.done:
                self.done = True
                try:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(self._graph.run(self._conn, _rollback))
                finally:
                    self._failed()
        finally:
            await self._acquire.__aexit__(exc_type, exc, tb)
