"""The hot-path workloads, each defined once, and the child that counts their instructions.

**The registry.** :func:`open_workload` opens a workload by name in a :class:`Context` and yields
its operation, an awaitable of no arguments: :data:`DEFINITIONS` (pool checkout, SQLite write,
Redis single and pipeline, Kuzu point read, coordinated transaction, order flow). Every harness
runs these same operations: the instruction counts (here, under callgrind), the PR gate's
pytest-benchmark checks (``tests/perf``), ``tristore-bench compare`` and the in-process ratios
(:mod:`tristore_bench.compare_bench`) and the asv history (``benchmarks/``). What a harness adds
is its own: batch sizes, warm-up, timers. ``Context.counting`` selects the fixed conditions a
count needs (one Kuzu thread, no background checkpoint, the coordinator's marks flushed on the
next loop turn); the operation is the same. :data:`WORKLOADS` lists the counted ones.

Run in the measured child as ``python -m tristore_bench.workloads NAME N`` (under callgrind, with
``--instr-atstart=no``). Each workload opens what it needs and warms up with instrumentation
*off*, then switches callgrind's instrumentation on, runs exactly ``N`` operations in one
``run_until_complete``, and switches it off before tearing down. So interpreter start-up, imports,
opening stores, starting redis-server (a separate, uncounted process), warm-up and teardown are
never counted: their cost varies with timing (polling a server until it answers, a thread that
starts late) and would otherwise leak into the difference of the two batch sizes.

``python -m tristore_bench.workloads prepare NAME DIR`` builds a workload's fixture (a seeded
SQLite file and graph) natively, before any valgrind process: seeding under valgrind would take
minutes and cannot be counted anyway.

The toggles are valgrind client requests. Python cannot issue them (they are a magic instruction
sequence that the valgrind headers inline into C code), so :func:`_client_request` writes that
sequence into one executable page and calls it through ctypes. Outside valgrind the sequence is a
no-op that returns 0, so the workloads also run natively (``RUNNING_ON_VALGRIND`` is 0 there).

Imports of tristore happen inside the workloads: this module must import with the standard
library alone (the parent only needs :data:`WORKLOADS`). The library under measurement may be an
old commit's: a workload's :data:`NEEDS` name the API it uses, and :func:`missing` says what a
commit lacks, so each harness can skip it there.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import fcntl
import importlib
import mmap
import os
import platform
import random
import selectors
import shutil
import sys
import tempfile
import termios
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# -- valgrind client requests (x86-64) ----------------------------------------------------------

# valgrind.h's __SPECIAL_INSTRUCTION_PREAMBLE for amd64 (four rotations of rdi that add up to 128
# bits, a no-op on a real CPU) followed by `xchg rbx, rbx`, which valgrind reads as "client
# request: rax points at the arguments, the result goes to rdx". Wrapped as a C function
# `uint64 request(uint64 *args)`: rdi = args, the default result (0) in rdx, returned in rax.
_AMD64_REQUEST = bytes.fromhex(
    "4889f8"  # mov rax, rdi
    "31d2"  # xor edx, edx
    "48c1c703"  # rol rdi, 3
    "48c1c70d"  # rol rdi, 13
    "48c1c73d"  # rol rdi, 61
    "48c1c733"  # rol rdi, 51
    "4887db"  # xchg rbx, rbx
    "4889d0"  # mov rax, rdx
    "c3"  # ret
)
RUNNING_ON_VALGRIND = 0x1001
# callgrind.h: VG_USERREQ_TOOL_BASE('C', 'T') + 2, + 4 and + 5.
_CALLGRIND_BASE = (ord("C") << 24) | (ord("T") << 16)
CALLGRIND_TOGGLE_COLLECT = _CALLGRIND_BASE + 2  # the calling thread's collection only
CALLGRIND_START_INSTRUMENTATION = _CALLGRIND_BASE + 4
CALLGRIND_STOP_INSTRUMENTATION = _CALLGRIND_BASE + 5

_request_fn: Callable[[int], int] | None = None
_request_page: mmap.mmap | None = None  # kept alive: the function lives in it


def _client_request(code: int) -> int:
    """Issue valgrind client request ``code`` (no arguments); 0 when not under valgrind."""
    global _request_fn, _request_page
    if _request_fn is None:
        if platform.machine() not in ("x86_64", "AMD64"):
            raise RuntimeError("valgrind client requests are implemented for x86-64 only")
        page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        page.write(_AMD64_REQUEST)
        address = ctypes.addressof(ctypes.c_char.from_buffer(page))
        function = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p)(address)
        args = (ctypes.c_uint64 * 6)()  # request code + 5 arguments, as valgrind.h lays them out

        def request(req: int) -> int:
            args[0] = req
            return int(function(ctypes.addressof(args)))

        _request_page, _request_fn = page, request
    return _request_fn(code)


def running_on_valgrind() -> bool:
    return _client_request(RUNNING_ON_VALGRIND) != 0


# -- workloads ------------------------------------------------------------------------------------

Op = Callable[[], Awaitable[Any]]


@dataclass(frozen=True)
class Workload:
    name: str
    doc: str
    default_n: int  # operations in the smaller batch of a count (the larger is twice that)
    warmup: int  # operations run before the counted region, the same in both batches
    fixture: bool = False  # needs `prepare` (a seeded data set) before the valgrind runs
    redis: bool = False


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload(
            "pool_checkout",
            "tristore.pool checkout + return, connections that cost nothing",
            2000,
            200,
        ),
        Workload("sqlite_write", "SQLiteStore.execute: one single-row INSERT transaction", 200, 30),
        Workload(
            "coordinated_tx",
            "one Coordinator transaction: 2 rows, 2 graph ops, 2 cache ops",
            30,
            5,
            redis=True,
        ),
        Workload(
            "redis_pipeline", "CacheStore.pipeline of 100 SETs (client side)", 30, 5, redis=True
        ),
        Workload(
            "graph_point_read",
            "GraphStore.query_rows: a parameterised point lookup (Kuzu)",
            200,
            20,
            fixture=True,
        ),
        Workload(
            "order_flow",
            "OrderPipeline.place_order on the seeded small data set",
            20,
            5,
            fixture=True,
            redis=True,
        ),
        Workload("noop", "an empty coroutine: the floor, for tests", 2000, 100),
    )
}

GRAPH_WORKLOADS = frozenset({"coordinated_tx", "graph_point_read", "order_flow"})
# Kuzu reserves 8 TiB of address space per Database by default; valgrind cannot map that
# ("Mmap for size 8796093022208 failed"). tristore's graph settings do not expose max_db_size
# yet, so the workloads bound it here (2 GiB is far above the data sets used).
KUZU_MAX_DB_SIZE = 1 << 31
INSERT_CUSTOMER = (
    "INSERT INTO customers (email, name, country, tier, created_at)"
    " VALUES (?, 'Bench', 'GB', 'standard', '2026-11-22 00:00:00')"
)
ORDER_AT = "2026-11-22 12:00:00"  # a fixed SQLite clock: the same strings in every run
POOL_SIZE = 10  # pool_checkout: min and max size of the pool (and of a queue it is compared to)
REDIS_KEY, REDIS_VALUE = "bench:single", "x" * 32  # redis_single: one SET


def set_commands(size: int) -> list[tuple[str, str, str]]:
    """``size`` SET commands of 32-byte values: a pipeline of them is redis_pipeline's op."""
    return [("SET", f"bench:{i:03d}", "x" * 32) for i in range(size)]


PIPELINE = tuple(set_commands(100))  # redis_pipeline
POINT_LOOKUP = "MATCH (c:Customer) WHERE c.id = $id RETURN c.name"  # graph_point_read
LOOKUP_PARAMS: dict[str, Any] = {"id": 42}


def order_args(n: int) -> tuple[int, int, int]:
    """order_flow's ``n``-th order: (customer, product, quantity) of the seeded small data set."""
    return 1 + n % 200, 1 + (n * 7) % 100, 1 + n % 3


# The coordinator's own timers under a count, set so none depends on the clock: no
# periodic recovery sweep (every 5 s of wall time), and applied-marks flushed on the next loop
# iteration (1 us, the smallest it accepts, always past after a settled poll) instead of after
# 50 ms: with the 50 ms timer, how many marks one flush wrote (and
# whether the next commit carried them instead) depended on how fast valgrind ran.
COORDINATOR_OPTIONS: dict[str, Any] = {"recovery_interval": None, "flush_delay": 1e-6}


def _bound_kuzu() -> None:
    """Make every ``kuzu.Database`` opened in this process valgrind-sized and single-threaded."""
    import kuzu

    original = kuzu.Database
    if getattr(original, "_tristore_bench_bounded", False):
        return

    class Database(original):  # type: ignore[misc, valid-type]
        _tristore_bench_bounded = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("max_db_size", KUZU_MAX_DB_SIZE)
            # One worker thread: Kuzu's scheduling across threads is what could vary a count.
            kwargs["max_num_threads"] = 1
            super().__init__(*args, **kwargs)

    kuzu.Database = Database  # type: ignore[misc]


@dataclass
class Context:
    """Where a workload opens its stores, and under which conditions.

    ``data_dir``: the stores' files (a seeded data set for :data:`WORKLOADS` entries with
    ``fixture``, see :func:`prepare`); ``redis_url``: the server of a Redis workload;
    ``counting``: the fixed conditions of an instruction count.
    """

    data_dir: str
    redis_url: str = ""
    counting: bool = False

    def settings(self, **sections: Any) -> Any:
        """Settings rooted in ``data_dir``; under ``counting``, with the count's conditions."""
        from tristore.config import Settings

        if not self.counting:
            base = Settings(data_dir=self.data_dir)
            return base.replace(**sections) if sections else base
        sections.setdefault("graph", {})
        sections["graph"] = {"max_threads": 1, **sections["graph"]}
        fields = {f.name for f in dataclasses.fields(Settings().sqlite)}
        if "checkpoint_wal_bytes" in fields:
            # The background WAL checkpoint runs on its own thread whenever the WAL passes the
            # limit: how many frames it finds depends on thread timing, so in the counted region
            # it made a write's count vary by >1%. It is not on the commit path; keep it out of
            # the count.
            sections["sqlite"] = {"checkpoint_wal_bytes": 2**40, **sections.get("sqlite", {})}
        return Settings(data_dir=self.data_dir).replace(**sections)

    def coordinator_options(self) -> dict[str, Any]:
        """No periodic recovery sweep; under ``counting``, marks flushed on the next loop turn."""
        return dict(COORDINATOR_OPTIONS) if self.counting else {"recovery_interval": None}


# -- the coordinated order: one unit of work, coordinated here and written plainly beside it by
# benchmarks/coordinated.py (the price of the guarantees is the difference) --------------------

PRODUCTS = 5  # products seeded for the orders (seed_products)
NEW_ORDER_ROWS = (
    "INSERT INTO customers (email, name, country) VALUES (?, ?, 'GB') RETURNING id",
    "INSERT INTO orders (customer_id, product_id, price, quantity) VALUES (?, ?, 9.5, 2)"
    " RETURNING id",
)
CUSTOMER_NODE = "CREATE (:Customer {id: $id, name: $name, tier: 'standard'})"
PURCHASE_EDGE = (
    "MATCH (c:Customer {id: $cid}), (p:Product {id: $pid})"
    " CREATE (c)-[:PURCHASED {order_id: $oid, quantity: 2}]->(p)"
)


async def seed_products(sqlite: Any, graph: Any) -> None:
    """The PRODUCTS products the orders buy, in SQLite and in the graph."""
    await sqlite.executemany(
        "INSERT INTO products (id, sku, name, category, price, stock)"
        " VALUES (?, ?, 'p', 'bench', 9.5, 100)",
        [(pid, f"B-{pid}") for pid in range(1, PRODUCTS + 1)],
    )
    await graph.write(
        [
            ("CREATE (:Product {id: $id, name: 'p', category: 'bench', price: 9.5})", {"id": p})
            for p in range(1, PRODUCTS + 1)
        ]
    )


def insert_order_rows(conn: Any, n: int) -> tuple[int, int]:
    """Order ``n``'s rows on a SQLite connection: a new customer and its order; their ids."""
    cid = conn.execute(NEW_ORDER_ROWS[0], (f"b{n:08d}@bench.example", f"c{n:08d}")).fetchone()[0]
    oid = conn.execute(NEW_ORDER_ROWS[1], (cid, 1 + n % PRODUCTS)).fetchone()[0]
    return cid, oid


def order_graph_ops(n: int, cid: int, oid: int) -> list[tuple[str, dict[str, Any]]]:
    """Order ``n``'s graph ops: the customer's node and a PURCHASED edge."""
    return [
        (CUSTOMER_NODE, {"id": cid, "name": f"c{n:08d}"}),
        (PURCHASE_EDGE, {"cid": cid, "pid": 1 + n % PRODUCTS, "oid": oid}),
    ]


def order_cache_ops(cid: int, oid: int) -> list[tuple[Any, ...]]:
    """An order's cache ops: its hash and the order counter."""
    return [
        ("HSET", f"order:{oid:08d}", "customer", cid, "total", "19.0"),
        ("INCRBY", "stats:orders", 1),
    ]


async def coordinated_order(coord: Any, n: int) -> None:
    """Order ``n`` as one coordinated transaction: 2 rows, 2 graph ops, 2 cache ops."""
    async with coord.transaction() as tx:
        cid, oid = await tx.sql_fn(lambda c: insert_order_rows(c, n))
        for cypher, params in order_graph_ops(n, cid, oid):
            tx.graph(cypher, params)
        for command in order_cache_ops(cid, oid):
            tx.cache(*command)


@contextlib.asynccontextmanager
async def _noop(ctx: Context) -> AsyncIterator[Op]:
    async def op() -> None:
        return None

    yield op


@contextlib.asynccontextmanager
async def _pool_checkout(ctx: Context) -> AsyncIterator[Op]:
    from tristore.pool import Pool, PoolConfig
    from tristore.testing.floor import NullConnector

    pool: Any = Pool(NullConnector("bench"), PoolConfig(min_size=POOL_SIZE, max_size=POOL_SIZE))
    await pool.open()

    async def op() -> None:
        async with pool.acquire():
            pass

    try:
        yield op
    finally:
        await pool.close()


@contextlib.asynccontextmanager
async def _sqlite_write(ctx: Context) -> AsyncIterator[Op]:
    from tristore.stores import SQLiteStore

    store: Any = SQLiteStore(ctx.settings())
    await store.open()
    seq = iter(range(10**8))

    async def op() -> None:
        # Fixed-width emails (the column is UNIQUE): every operation binds a string of one length.
        await store.execute(INSERT_CUSTOMER, (f"b{next(seq):08d}@bench.example",))

    try:
        yield op
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def _coordinated_tx(ctx: Context) -> AsyncIterator[Op]:
    from tristore.coordinator import Coordinator
    from tristore.stores import CacheStore, GraphStore, SQLiteStore

    settings = ctx.settings(redis={"url": ctx.redis_url, "pool_min": 1})
    sqlite: Any = SQLiteStore(settings)
    graph: Any = GraphStore(settings)
    cache: Any = CacheStore(settings)
    async with contextlib.AsyncExitStack() as stack:
        for store in (sqlite, graph, cache):
            await store.open()
            stack.push_async_callback(store.close)
        await cache.execute("FLUSHDB")
        await seed_products(sqlite, graph)
        coord: Any = Coordinator(sqlite, graph, cache, **ctx.coordinator_options())
        await coord.open()
        stack.push_async_callback(coord.close)
        counter = iter(range(1, 10**8))

        async def op() -> None:
            await coordinated_order(coord, next(counter))

        yield op


@contextlib.asynccontextmanager
async def _redis_pipeline(ctx: Context) -> AsyncIterator[Op]:
    from tristore.stores import CacheStore

    cache: Any = CacheStore(ctx.settings(redis={"url": ctx.redis_url, "pool_min": 1}))
    await cache.open()
    commands = list(PIPELINE)

    async def op() -> None:
        await cache.pipeline(commands)

    try:
        yield op
    finally:
        await cache.close()


@contextlib.asynccontextmanager
async def _redis_single(ctx: Context) -> AsyncIterator[Op]:
    from tristore.stores import CacheStore

    cache: Any = CacheStore(ctx.settings(redis={"url": ctx.redis_url, "pool_min": 1}))
    await cache.open()

    def op() -> Awaitable[Any]:
        return cache.set(REDIS_KEY, REDIS_VALUE)

    try:
        yield op
    finally:
        await cache.close()


@contextlib.asynccontextmanager
async def _graph_point_read(ctx: Context) -> AsyncIterator[Op]:
    from tristore.stores import GraphStore

    graph: Any = GraphStore(ctx.settings(), apply_schema=False)
    await graph.open()
    cypher = POINT_LOOKUP
    params = dict(LOOKUP_PARAMS)

    async def op() -> None:
        await graph.query_rows(cypher, params)

    try:
        yield op
    finally:
        await graph.close()


@contextlib.asynccontextmanager
async def _order_flow(ctx: Context) -> AsyncIterator[Op]:
    # What tristore.flows.open_env assembles, minus its timers: the manager's health and
    # rebalance loops (every 5 s and 30 s of wall time, so a varying number of them would fall
    # into a counted region that valgrind stretches to tens of seconds).
    from tristore.coordinator import Coordinator
    from tristore.flows import OrderPipeline
    from tristore.manager import PoolManager

    settings = ctx.settings(redis={"url": ctx.redis_url})
    manager: Any = PoolManager(settings)
    await manager.open(monitor=False)
    try:
        coordinator: Any = Coordinator.for_stores(manager, **ctx.coordinator_options())
        await coordinator.open()
        try:
            await manager.cache.execute("FLUSHDB")
            pipeline = OrderPipeline(manager, coordinator)
            counter = iter(range(1, 10**8))

            async def op() -> None:
                # As benchmarks/flows.py's FlowOps.order, with a fixed clock.
                await pipeline.place_order(*order_args(next(counter)), at=ORDER_AT)

            yield op
        finally:
            await coordinator.close()
    finally:
        await manager.close()


#: name -> the workload: opened in a Context, it yields its operation. The one definition of each.
DEFINITIONS: dict[str, Callable[[Context], contextlib.AbstractAsyncContextManager[Op]]] = {
    "noop": _noop,
    "pool_checkout": _pool_checkout,
    "sqlite_write": _sqlite_write,
    "coordinated_tx": _coordinated_tx,
    "redis_single": _redis_single,
    "redis_pipeline": _redis_pipeline,
    "graph_point_read": _graph_point_read,
    "order_flow": _order_flow,
}

#: name -> (module, *names) of tristore that the workload uses: a commit without them skips it.
NEEDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "noop": (),
    "pool_checkout": (
        ("tristore.pool", "Pool", "PoolConfig"),
        ("tristore.testing.floor", "NullConnector"),
    ),
    "sqlite_write": (("tristore.stores", "SQLiteStore"),),
    "coordinated_tx": (
        ("tristore.stores", "SQLiteStore", "GraphStore", "CacheStore"),
        ("tristore.coordinator", "Coordinator"),
        ("tristore.services", "RedisServer"),
    ),
    "redis_single": (("tristore.stores", "CacheStore"), ("tristore.services", "RedisServer")),
    "redis_pipeline": (("tristore.stores", "CacheStore"), ("tristore.services", "RedisServer")),
    "graph_point_read": (
        ("tristore.stores", "GraphStore"),
        ("tristore.testing.setup", "seed_files"),
    ),
    "order_flow": (
        ("tristore.flows", "open_env"),
        ("tristore.testing.setup", "seed_files"),
        ("tristore.services", "RedisServer"),
    ),
}


def missing(name: str) -> str | None:
    """What the library under measurement lacks for workload ``name``; None if nothing."""
    for module, *names in NEEDS[name]:
        try:
            found = importlib.import_module(module)
        except ImportError:
            return f"{module} is not available at this commit"
        for attr in names:
            if not hasattr(found, attr):
                return f"{module}.{attr} is not available at this commit"
    return None


def open_workload(name: str, ctx: Context) -> contextlib.AbstractAsyncContextManager[Op]:
    """Open workload ``name`` in ``ctx``: ``async with open_workload(...) as op: await op()``."""
    return DEFINITIONS[name](ctx)


# Test only (the gate's --inject-instructions): "WORKLOAD:ITERATIONS[,WORKLOAD:ITERATIONS]" runs
# a pure-Python loop of ITERATIONS after each operation of WORKLOAD, inside the counted region, so
# the gate's instruction verdicts can be shown to catch a known extra cost. ITERATIONS may be 0:
# the loop's fixed cost without its iterations (what the gate's base side runs).
INJECT_ENV = "TRISTORE_BENCH_INJECT"


def inject_iterations(name: str, value: str | None) -> int | None:
    """Injected loop iterations per operation of ``name`` (None: not injected at all)."""
    for entry in (value or "").split(","):
        workload, sep, iterations = entry.strip().partition(":")
        if sep and workload == name:
            if not iterations.isdigit():
                raise ValueError(f"{INJECT_ENV}: {entry!r} is not WORKLOAD:ITERATIONS")
            return int(iterations)
    return None


SETTLE_S = 0.005  # one wait of the settled loop: real time for other processes and threads
SETTLE_STEPS = 50  # at most this many waits while something still changes
_BUSY_STATES = frozenset(b"RD")  # /proc states of a thread that is running or about to


class _SettledLoop(asyncio.SelectorEventLoop):
    """An event loop whose iterations do not depend on how fast the other side answered.

    The count of client-side work depends on *when* I/O becomes ready: a Redis reply that
    arrives one loop iteration later splits the work differently. With a pipeline of 100 the
    timer heap of asyncio then either rebuilds once or pops its ~100 cancelled read timeouts one
    by one (each a Python ``TimerHandle.__lt__``): natively the two modes alternate from one
    pipeline to the next, and under valgrind the runs differed by 1-2%. So before every poll
    this loop waits until the server, Kuzu's and SQLite's worker threads have answered, then
    takes everything that is ready at once. What is counted is then the regime "every reply is
    ready when the client looks", the same in every run.

    **Waiting until nothing moves** (:func:`_settle`). One fixed wait is not enough on a busy
    machine: the server (another process) or a worker thread is not always scheduled within
    it, and its reply then lands one poll later, or half of it does. So the loop waits
    :data:`SETTLE_S` at a time for as long as the last wait changed something: what is ready
    (the ready file descriptors and the bytes waiting on them, ``FIONREAD``; a worker thread's
    result arrives as a byte on the loop's self-pipe), or what the other side is doing (a
    thread of this process or of a child process such as redis-server that ran during the
    wait, or is waiting for a CPU). Then, if nothing is ready and the loop may block, it blocks
    in the real select as asyncio would, and settles again. At most :data:`SETTLE_STEPS` waits
    each time, so that a peer that never stops cannot hang a count.

    **The waiting is not counted.** How many waits it takes depends on the machine's load, and
    each is Python code: counted, it would bring back the very dependence it removes. So
    callgrind's collection is switched off for this thread around it
    (``CALLGRIND_TOGGLE_COLLECT``; other threads keep counting), and what each poll counts is
    one ``select(0)`` that takes what is ready, as asyncio's own poll would.
    """

    def __init__(self) -> None:
        # The loop's own default, made here so that its select can be wrapped through public API.
        selector = selectors.DefaultSelector()
        super().__init__(selector)
        real_select = selector.select

        def settled(timeout: float | None = None) -> Any:
            _client_request(CALLGRIND_TOGGLE_COLLECT)  # off
            try:
                _settle(real_select, timeout)
            finally:
                _client_request(CALLGRIND_TOGGLE_COLLECT)  # on again
            return real_select(0)

        selector.select = settled


Readiness = frozenset[tuple[int, int, int]]  # (fd, events mask, bytes readable)
Activity = frozenset[tuple[str, int, bytes]]  # (/proc task, state, its context switches)
Select = Callable[[float | None], list[Any]]


def _settle(
    select: Select,
    timeout: float | None,
    sleep: Callable[[float], None] = time.sleep,
    activity: Callable[[], Activity] | None = None,
) -> Readiness:
    """Wait until what ``select`` reports ready and the other side have stopped moving.

    Returns what is ready then. When nothing is and ``timeout`` is not 0, blocks in
    ``select(timeout)`` and, if something became ready (not a timer), settles again.
    ``activity``: what the other side is doing (default: :func:`_peers`, read from /proc).
    """
    look = activity or _peers(_peer_tasks())
    ready = _still(select, sleep, look, frozenset())
    if ready or timeout == 0:
        return ready
    events = select(timeout)
    return _still(select, sleep, look, _readiness(events)) if events else frozenset()


def _still(
    select: Select, sleep: Callable[[float], None], look: Callable[[], Activity], ready: Readiness
) -> Readiness:
    last = (ready, look())
    for _ in range(SETTLE_STEPS):
        sleep(SETTLE_S)
        now = (_readiness(select(0)), look())
        if now == last and not any(state in _BUSY_STATES for _task, state, _n in now[1]):
            break
        last = now
    return last[0]


def _readiness(events: list[Any]) -> Readiness:
    return frozenset(
        (key.fd, mask, _readable_bytes(key.fd) if mask & selectors.EVENT_READ else 0)
        for key, mask in events
    )


def _readable_bytes(fd: int) -> int:
    try:
        found = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
    except OSError:  # not a socket, pipe or tty (a listening socket): readiness alone
        return 0
    return int.from_bytes(found, sys.byteorder, signed=True)


def _peer_tasks() -> list[str]:
    """/proc directories of the other threads of this process and of its children's threads."""
    mine = [f"/proc/self/task/{tid}" for tid in _listdir("/proc/self/task")]
    children = [pid.decode() for task in mine for pid in _read(f"{task}/children").split()]
    own = f"/proc/self/task/{threading.get_native_id()}"
    return [task for task in mine if task != own] + [
        f"/proc/{pid}/task/{tid}" for pid in children for tid in _listdir(f"/proc/{pid}/task")
    ]


def _peers(tasks: list[str]) -> Callable[[], Activity]:
    """Each task's state and how often it has been switched in and out so far.

    A thread that waits for the GIL, or for valgrind's lock, sleeps while this thread holds it:
    only its context switches, which go on while this thread waits, show that it has work left.
    """

    def look() -> Activity:
        found = set()
        for task in tasks:
            status = _read(f"{task}/status")
            if not status:
                continue  # it has exited
            state = status[status.index(b"\nState:\t") + 8]
            switches = status[status.index(b"\nvoluntary_ctxt_switches:") :]
            found.add((task, state, switches))
        return frozenset(found)

    return look


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _read(path: str) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return b""
    try:
        return os.read(fd, 4096)
    except OSError:
        return b""
    finally:
        os.close(fd)


def prepare(name: str, directory: str | Path) -> None:
    """Build ``name``'s fixture in ``directory`` (natively, before the counted runs)."""
    if not WORKLOADS[name].fixture:
        return
    from tristore.testing.setup import seed_files

    seed_files(directory, "small", seed=7)


def _copy_fixture(fixture: str, data_dir: str) -> None:
    for entry in sorted(Path(fixture).iterdir()):
        target = Path(data_dir) / entry.name
        if entry.is_dir():
            shutil.copytree(entry, target)
        else:
            shutil.copy2(entry, target)


async def _run(name: str, n: int, data_dir: str) -> None:
    workload = WORKLOADS[name]
    ctx = Context(data_dir, counting=True)
    async with contextlib.AsyncExitStack() as stack:
        if workload.redis:
            from tristore.services import RedisServer

            server = RedisServer()
            await asyncio.to_thread(server.start)
            stack.callback(server.stop)
            ctx.redis_url = str(server.url)
        op = await stack.enter_async_context(open_workload(name, ctx))
        for _ in range(workload.warmup):
            await op()

        # Test only (None: no injection): a prebuilt tuple, so each iteration costs the same
        # (~76 instructions) and allocates nothing whatever the workload does around it. Its
        # iterator costs ~300 instructions per operation to create, as much as a 2% injection
        # into pool_checkout: the gate runs the base with 0 iterations, so that part cancels.
        injected = inject_iterations(name, os.environ.get(INJECT_ENV))
        extra = (None,) * (injected or 0)

        async def batch() -> None:
            for _ in range(n):
                await op()

        async def injected_batch() -> None:
            for _ in range(n):
                await op()
                for _ in extra:
                    pass

        # The counted region: one task running n operations. Creating it and waiting for it
        # costs the same in both batch sizes, so it cancels in the difference.
        _client_request(CALLGRIND_START_INSTRUMENTATION)
        # Without an injection the counted code is exactly batch(): counts are not shifted
        # by a hook that does nothing.
        await (batch() if injected is None else injected_batch())
        _client_request(CALLGRIND_STOP_INSTRUMENTATION)
    print(f"tristore-bench workload {name} ran {n} operations", flush=True)


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "prepare":
        prepare(argv[1], argv[2])
        return 0
    if len(argv) != 2 or argv[0] not in WORKLOADS:
        print(
            "usage: python -m tristore_bench.workloads NAME N | prepare NAME DIR\n"
            f"workloads: {', '.join(WORKLOADS)}",
            file=sys.stderr,
        )
        return 2
    name, n = argv[0], int(argv[1])
    # Deterministic choices inside tristore (pool lifetime jitter) and fixed-width data.
    random.seed(0)
    if name in GRAPH_WORKLOADS:
        _bound_kuzu()
    data_dir = tempfile.mkdtemp(prefix="data-", dir=os.getcwd())
    fixture = os.environ.get("TRISTORE_BENCH_FIXTURE")
    if WORKLOADS[name].fixture:
        if not fixture:
            print(f"workload {name} needs TRISTORE_BENCH_FIXTURE (see prepare)", file=sys.stderr)
            return 2
        _copy_fixture(fixture, data_dir)
    # TRISTORE_BENCH_LOOP=plain: asyncio's own loop, to show what the settled loop removes.
    loop: asyncio.AbstractEventLoop = (
        asyncio.new_event_loop()
        if os.environ.get("TRISTORE_BENCH_LOOP") == "plain"
        else _SettledLoop()
    )
    try:
        loop.run_until_complete(_run(name, n, data_dir))
    finally:
        loop.close()
        shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
