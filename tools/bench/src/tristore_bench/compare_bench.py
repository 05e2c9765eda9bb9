"""pyperf worker for ``tristore-bench compare``: tristore's hot paths next to the raw drivers.

Run by ``tristore-bench compare`` as ``python -m tristore_bench.compare_bench --data-dir DIR ...``;
pyperf then re-runs this module in worker processes, one benchmark per worker. Workers do not
inherit the environment: ``tristore-bench compare`` passes ``--inherit-environ`` for
``TRISTORE_REDIS_URL`` (the server every Redis case talks to) and ``PATH``.

Every case is timed the same way: one event loop per worker process, made on first use, and
``loops`` operations awaited one after another inside one ``run_until_complete`` with the clock
read around the loop (``asyncio.run`` per operation would cost ~140 us and swamp a 2 us pool
checkout). Set-up (opening stores, connecting) happens before the first timed call.

The tristore side of every pair is the workload of :mod:`tristore_bench.workloads` (the one
definition the counts, the gate and the asv history run too); the references here do the same
operation with the raw drivers. The pairs, and what makes each fair:

* ``pool_checkout``: tristore's ``Pool`` of ``POOL_SIZE`` connections that cost nothing, vs a
  bare ``asyncio.Queue`` of as many objects (get, then put back): the least an async pool can do.
* ``sqlite_write``: one single-row INSERT transaction of a customer, into files with the same
  schema (tristore's, applied by a ``SQLiteStore`` before the references connect), WAL +
  synchronous=NORMAL everywhere: tristore ``SQLiteStore.execute`` vs aiosqlite ``execute`` +
  ``commit`` (its documented way) vs raw ``sqlite3`` (BEGIN IMMEDIATE / INSERT / COMMIT,
  synchronous, on the calling thread: the ceiling, not an async peer).
* ``redis_single`` (one SET) and ``redis_pipeline_100`` (100 SETs, no MULTI): tristore
  ``CacheStore`` vs ``redis.asyncio.Redis`` with the same redis-py, the same hiredis parser, the
  same server, the same keys and values.
* ``kuzu_read``: a parameterized point lookup on the same seeded graph: tristore
  ``GraphStore.query_rows`` vs a raw kuzu ``Connection`` called the same async way
  (``run_in_executor`` on a thread pool of the same size). tristore reuses prepared statements
  (``execute(text, params)`` re-prepares and, in Kuzu 0.11.3, leaks each one), so the raw side
  that carries the target does the same (``prepare()`` once, deprecated but public); the plain
  ``execute(text, params)`` is reported too, and the prepared call made synchronously on the
  loop's thread (what an application that blocks its loop would see).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sqlite3
import sys
import tempfile
import warnings
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import Any, cast

from tristore_bench import workloads

ENV_REDIS_URL = "TRISTORE_REDIS_URL"
INSERT = workloads.INSERT_CUSTOMER
POINT_LOOKUP = workloads.POINT_LOOKUP
LOOKUP_PARAMS = workloads.LOOKUP_PARAMS
PIPELINE = workloads.PIPELINE

Op = Callable[[], Awaitable[Any]]


@dataclass(frozen=True)
class Case:
    """One pyperf benchmark: ``op`` (``pool_checkout``) done by ``impl``."""

    op: str
    impl: str
    # "tristore" | "reference" (async peer) | "reference-sync" (blocking ceiling)
    # | "reference-unprepared" (kuzu's plain execute(text, params))
    role: str
    make: Callable[[Context], Awaitable[Op | Callable[[], Any]]]
    sync: bool = False  # the op is a plain call, not a coroutine

    @property
    def name(self) -> str:
        return f"{self.op}[{self.impl}]"


class Context:
    """Per worker process: the loop, scratch directory, and what must be closed at exit."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.loop = asyncio.new_event_loop()
        self.scratch = Path(tempfile.mkdtemp(prefix="tristore-compare-", dir=data_dir))
        self.closers: list[Callable[[], Awaitable[Any]]] = []

    @property
    def redis_url(self) -> str:
        url = os.environ.get(ENV_REDIS_URL, "")
        if not url:
            raise RuntimeError(f"{ENV_REDIS_URL} is not set (run through `tristore-bench compare`)")
        return url

    @property
    def graph_path(self) -> Path:
        return self.data_dir / "seeded" / "graph.kuzu"

    def settings(self, *, redis: bool = False) -> Any:
        from tristore.testing.setup import store_settings

        return store_settings(self.scratch, self.redis_url if redis else "")

    async def workload(self, name: str, data_dir: Path | None = None) -> Any:
        """Open tristore's side: the registry's workload ``name``, closed with the context."""
        where = data_dir or self.scratch / name
        where.mkdir(parents=True, exist_ok=True)
        ctx = workloads.Context(
            str(where), redis_url=self.redis_url if name.startswith("redis") else ""
        )
        opened = workloads.open_workload(name, ctx)
        op = await opened.__aenter__()
        self.closers.append(lambda: opened.__aexit__(None, None, None))
        return op


# -- pool ---------------------------------------------------------------------------------------


async def tristore_pool(ctx: Context) -> Op:
    return cast(Op, await ctx.workload("pool_checkout"))


async def queue_pool(ctx: Context) -> Op:
    queue: asyncio.Queue[object] = asyncio.Queue()
    for _ in range(workloads.POOL_SIZE):
        queue.put_nowait(object())

    async def op() -> None:
        conn = await queue.get()
        try:
            pass
        finally:
            queue.put_nowait(conn)

    return op


# -- SQLite -------------------------------------------------------------------------------------


async def tristore_sqlite(ctx: Context) -> Op:
    return cast(Op, await ctx.workload("sqlite_write"))


async def _schema_file(ctx: Context, name: str) -> Path:
    """A SQLite file with tristore's schema, for a reference driver to write into."""
    from tristore.stores import SQLiteStore

    where = ctx.scratch / name
    where.mkdir(parents=True, exist_ok=True)
    settings = workloads.Context(str(where)).settings()
    store = SQLiteStore(settings)
    await store.open()
    await store.close()
    return Path(settings.sqlite_path)


def _emails() -> Iterator[tuple[str]]:
    # As the tristore side binds them: fixed width, unique (the column is UNIQUE).
    return ((f"b{n:08d}@bench.example",) for n in itertools.count())


def _pragmas(conn: sqlite3.Connection) -> None:
    # The settings tristore applies (config defaults), so only the access path differs.
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA cache_size = 10000")


async def aiosqlite_write(ctx: Context) -> Op:
    import aiosqlite

    db = await aiosqlite.connect(await _schema_file(ctx, "aiosqlite"))
    ctx.closers.append(db.close)
    for pragma in ("journal_mode = WAL", "synchronous = NORMAL", "busy_timeout = 30000"):
        await db.execute(f"PRAGMA {pragma}")
    await db.commit()
    emails = _emails()

    async def op() -> None:
        await db.execute(INSERT, next(emails))
        await db.commit()

    return op


async def sqlite3_write(ctx: Context) -> Callable[[], None]:
    conn = sqlite3.connect(await _schema_file(ctx, "raw"), isolation_level=None)
    _pragmas(conn)
    emails = _emails()

    async def close() -> None:
        conn.close()

    ctx.closers.append(close)

    def op() -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(INSERT, next(emails))
        conn.execute("COMMIT")

    return op


# -- Redis --------------------------------------------------------------------------------------


async def raw_redis(ctx: Context) -> Any:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(ctx.redis_url)
    await client.ping()
    ctx.closers.append(client.aclose)
    return client


async def tristore_redis_single(ctx: Context) -> Op:
    return cast(Op, await ctx.workload("redis_single"))


async def raw_redis_single(ctx: Context) -> Op:
    client = await raw_redis(ctx)
    return lambda: client.set(workloads.REDIS_KEY, workloads.REDIS_VALUE)


async def tristore_redis_pipeline(ctx: Context) -> Op:
    return cast(Op, await ctx.workload("redis_pipeline"))


async def raw_redis_pipeline(ctx: Context) -> Op:
    client = await raw_redis(ctx)

    async def op() -> list[Any]:
        pipe = client.pipeline(transaction=False)
        for command in PIPELINE:
            pipe.execute_command(*command)
        return list(await pipe.execute())

    return op


# -- Kuzu ---------------------------------------------------------------------------------------


def _graph_settings(ctx: Context) -> Any:
    from tristore.testing.setup import store_settings

    return store_settings(ctx.data_dir / "seeded")


async def tristore_kuzu(ctx: Context) -> Op:
    return cast(Op, await ctx.workload("graph_point_read", ctx.data_dir / "seeded"))


def _raw_kuzu(ctx: Context) -> Any:
    import kuzu

    g = _graph_settings(ctx).graph  # the same buffer pool and thread settings as tristore's
    db = kuzu.Database(
        str(ctx.graph_path),
        buffer_pool_size=g.buffer_pool_bytes,
        max_num_threads=g.max_threads,
        compression=g.compression,
    )
    conn = kuzu.Connection(db, num_threads=g.max_threads)

    async def close() -> None:
        conn.close()
        db.close()

    ctx.closers.append(close)
    return conn, g


def _prepare_lookup(conn: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the public prepare() is deprecated
        stmt = conn.prepare(POINT_LOOKUP)
    if not stmt.is_success():
        raise RuntimeError(f"kuzu could not prepare {POINT_LOOKUP!r}: {stmt.get_error_message()}")
    return stmt


def _kuzu_executor(ctx: Context, *, prepared: bool) -> Op:
    conn, g = _raw_kuzu(ctx)
    executor = ThreadPoolExecutor(g.readers + 1)  # the size of tristore's graph executor

    async def shutdown() -> None:
        executor.shutdown(wait=True)

    ctx.closers.append(shutdown)
    loop = asyncio.get_running_loop()
    query = _prepare_lookup(conn) if prepared else POINT_LOOKUP

    def call() -> list[Any]:
        return conn.execute(query, dict(LOOKUP_PARAMS)).get_all()

    return lambda: loop.run_in_executor(executor, call)


async def kuzu_executor(ctx: Context) -> Op:
    return _kuzu_executor(ctx, prepared=True)


async def kuzu_executor_unprepared(ctx: Context) -> Op:
    return _kuzu_executor(ctx, prepared=False)


async def kuzu_sync(ctx: Context) -> Callable[[], list[Any]]:
    conn, _ = _raw_kuzu(ctx)
    stmt = _prepare_lookup(conn)
    return lambda: conn.execute(stmt, dict(LOOKUP_PARAMS)).get_all()


# Ordered so that each tristore case runs right before its references: pyperf runs all the
# processes of one benchmark, then the next, so neighbours see the most similar machine state.
CASES: tuple[Case, ...] = (
    Case("pool_checkout", "tristore", "tristore", tristore_pool),
    Case("pool_checkout", "asyncio.Queue", "reference", queue_pool),
    Case("sqlite_write", "tristore", "tristore", tristore_sqlite),
    Case("sqlite_write", "aiosqlite", "reference", aiosqlite_write),
    Case("sqlite_write", "sqlite3", "reference-sync", sqlite3_write, sync=True),
    Case("redis_single", "tristore", "tristore", tristore_redis_single),
    Case("redis_single", "redis.asyncio", "reference", raw_redis_single),
    Case("redis_pipeline_100", "tristore", "tristore", tristore_redis_pipeline),
    Case("redis_pipeline_100", "redis.asyncio", "reference", raw_redis_pipeline),
    Case("kuzu_read", "tristore", "tristore", tristore_kuzu),
    Case("kuzu_read", "kuzu executor", "reference", kuzu_executor),
    Case("kuzu_read", "kuzu unprepared", "reference-unprepared", kuzu_executor_unprepared),
    Case("kuzu_read", "kuzu sync", "reference-sync", kuzu_sync, sync=True),
)

_state: dict[str, tuple[Context, Any]] = {}


def _prepared(case: Case, data_dir: Path) -> tuple[Context, Any]:
    if case.name not in _state:
        ctx = Context(data_dir)
        op = ctx.loop.run_until_complete(case.make(ctx))
        _state[case.name] = (ctx, op)
    return _state[case.name]


def time_case(loops: int, case: Case, data_dir: Path) -> float:
    """Seconds for ``loops`` operations: pyperf's time function, and the asv ratios' timer."""
    ctx, op = _prepared(case, data_dir)
    if case.sync:
        start = perf_counter()
        for _ in range(loops):
            op()
        return perf_counter() - start

    async def timed() -> float:
        start = perf_counter()
        for _ in range(loops):
            await op()
        return perf_counter() - start

    return ctx.loop.run_until_complete(timed())


def close_all() -> None:
    """Close every case's stores and loop (made on first use by :func:`time_case`)."""
    for ctx, _ in _state.values():
        for closer in reversed(ctx.closers):
            try:
                ctx.loop.run_until_complete(closer())
            except Exception as exc:  # closing must not turn a measured run into a failure
                print(f"compare_bench: error while closing: {exc!r}", file=sys.stderr)
        ctx.loop.close()
    _state.clear()


def _forward(cmd: list[str], args: Any) -> None:
    """pyperf hook: pass our own options on to the worker processes."""
    cmd.extend(["--data-dir", args.data_dir])
    for name in args.only or ():
        cmd.extend(["--only", name])
    if args.reverse:
        cmd.append("--reverse")


def main() -> None:
    # Here, not at module level: benchmarks/ratios.py reuses the cases in asv envs without pyperf.
    import pyperf

    runner = pyperf.Runner(
        program_args=("-m", "tristore_bench.compare_bench"), add_cmdline_args=_forward
    )
    runner.argparser.add_argument("--data-dir", required=True, help="Seeded data directory.")
    runner.argparser.add_argument(
        "--only", action="append", help="Only operations with this name (repeatable)."
    )
    runner.argparser.add_argument(
        "--reverse", action="store_true", help="Run the cases in reverse order (a pass of ABBA)."
    )
    args = runner.parse_args()
    data_dir = Path(args.data_dir)
    from redis.utils import HIREDIS_AVAILABLE

    # Both Redis sides parse with hiredis when it is installed: recorded, not assumed.
    runner.metadata["redis_hiredis"] = str(HIREDIS_AVAILABLE)
    try:
        for case in reversed(CASES) if args.reverse else CASES:
            if args.only and case.op not in args.only:
                continue
            runner.bench_time_func(
                case.name,
                time_case,
                case,
                data_dir,
                metadata={"tristore_op": case.op, "tristore_impl": case.impl},
            )
    finally:
        close_all()


if __name__ == "__main__":
    main()
