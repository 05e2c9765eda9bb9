"""The workload registry: each hot path defined once, and every harness running that definition.

A harness is shown to run the registry's operation by swapping the registry's definition for a
marked one and checking that the harness then yields exactly the marked operation.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tristore_bench import compare_bench, workloads

REPO = Path(__file__).resolve().parents[3]


def test_every_counted_workload_is_a_definition_with_its_needs() -> None:
    assert set(workloads.WORKLOADS) <= set(workloads.DEFINITIONS)
    assert set(workloads.NEEDS) == set(workloads.DEFINITIONS)
    for name in workloads.DEFINITIONS:
        assert workloads.missing(name) is None, name  # this checkout's library has them all


def test_missing_names_what_a_commit_lacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(workloads.NEEDS, "noop", (("tristore.pool", "NoSuchPool"),))
    assert workloads.missing("noop") == "tristore.pool.NoSuchPool is not available at this commit"
    monkeypatch.setitem(workloads.NEEDS, "noop", (("tristore.no_such_module",),))
    assert workloads.missing("noop") == "tristore.no_such_module is not available at this commit"


def test_counting_conditions_apply_under_counting_only(tmp_path: Path) -> None:
    plain = workloads.Context(str(tmp_path)).settings()
    counted = workloads.Context(str(tmp_path), counting=True).settings()
    assert counted.graph.max_threads == 1
    assert plain.graph.max_threads == type(plain)().graph.max_threads
    assert counted.sqlite.checkpoint_wal_bytes == 2**40
    assert plain.sqlite.checkpoint_wal_bytes != 2**40
    assert workloads.Context(".", counting=True).coordinator_options() == (
        workloads.COORDINATOR_OPTIONS
    )
    assert workloads.Context(".").coordinator_options() == {"recovery_interval": None}


@pytest.mark.parametrize("name", ["pool_checkout", "sqlite_write"])
def test_a_definition_runs_natively(name: str, tmp_path: Path) -> None:
    async def run() -> int:
        done = 0
        async with workloads.open_workload(name, workloads.Context(str(tmp_path))) as op:
            for _ in range(20):
                await op()
                done += 1
        return done

    assert asyncio.run(run()) == 20


async def _marked() -> str:
    return "marked"


@pytest.fixture
def marked(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Swap a definition for one whose operation is :func:`_marked`."""

    def mark(name: str) -> None:
        @contextlib.asynccontextmanager
        async def definition(ctx: workloads.Context) -> AsyncIterator[Callable[[], Any]]:
            yield _marked

        monkeypatch.setitem(workloads.DEFINITIONS, name, definition)

    return mark


@pytest.mark.parametrize(
    ("op", "name"),
    [
        ("pool_checkout", "pool_checkout"),
        ("sqlite_write", "sqlite_write"),
        ("redis_single", "redis_single"),
        ("redis_pipeline_100", "redis_pipeline"),
        ("kuzu_read", "graph_point_read"),
    ],
)
def test_compare_and_the_ratios_run_the_registry(
    op: str,
    name: str,
    marked: Callable[[str], None],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    marked(name)
    monkeypatch.setenv(compare_bench.ENV_REDIS_URL, "redis://127.0.0.1:1")
    (case,) = [c for c in compare_bench.CASES if c.op == op and c.role == "tristore"]
    ctx = compare_bench.Context(tmp_path)
    try:
        made = ctx.loop.run_until_complete(case.make(ctx))
        assert made is _marked
    finally:
        for closer in reversed(ctx.closers):
            ctx.loop.run_until_complete(closer())
        ctx.loop.close()


def test_the_gate_runs_the_registry(marked: Callable[[str], None], tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "tests" / "perf"))
    try:
        import _perf
    finally:
        sys.path.remove(str(REPO / "tests" / "perf"))
    marked("sqlite_write")
    loop = asyncio.new_event_loop()
    try:
        opened = _perf.workload(loop, "sqlite_write", tmp_path)
        assert next(opened) is _marked
        opened.close()
    finally:
        loop.close()


def test_the_asv_history_runs_the_registry(
    marked: Callable[[str], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(REPO))
    from benchmarks import pools

    marked("pool_checkout")
    bench = pools.PoolCheckout()
    bench.setup()
    try:
        assert bench.op is _marked
        bench.time_acquire_release_x1000()  # the timed batch awaits that operation
    finally:
        bench.teardown()


def test_count_benchmarks_name_registry_workloads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO))
    from benchmarks import instructions

    named = {
        cls.workload
        for cls in vars(instructions).values()
        if isinstance(cls, type) and getattr(cls, "workload", "")
    }
    assert named and named <= set(workloads.WORKLOADS)


def test_the_asv_coordinated_writes_run_the_registrys_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(REPO))
    from benchmarks import coordinated

    seen: list[tuple[Any, int]] = []

    async def order(coord: Any, n: int) -> None:
        seen.append((coord, n))

    monkeypatch.setattr(workloads, "coordinated_order", order)
    bench = coordinated.CoordinatedWrites()
    bench.coord, bench.n = "the coordinator", 0
    asyncio.run(bench.coordinated())
    assert seen == [("the coordinator", 1)]
    # The plain twin writes the same order's rows, graph ops and cache ops.
    assert coordinated._insert_rows is workloads.insert_order_rows


def test_the_asv_flows_place_the_registrys_orders(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO))
    from benchmarks import flows, sqlite_wal

    placed: list[tuple[Any, ...]] = []

    class Pipeline:
        async def place_order(self, *args: Any) -> None:
            placed.append(args)

    bench = flows.FlowOps()
    bench.pipeline, bench.n = Pipeline(), 0
    asyncio.run(bench.order())
    asyncio.run(bench.order())
    assert placed == [workloads.order_args(1), workloads.order_args(2)]
    # The SQLite commits insert the registry's row; the pipelines are its SET commands.
    assert sqlite_wal.INSERT == workloads.INSERT_CUSTOMER
    assert list(workloads.PIPELINE) == workloads.set_commands(100)
