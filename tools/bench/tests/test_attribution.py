"""Python-level attribution: bytecodes per operation by module:qualname, base vs head.

The hook is tested in this process on toy functions; then, natively (no valgrind), a real count
workload on two libraries: a snapshot of HEAD's src and a copy whose ``Pool.acquire`` runs a
20-iteration loop more, which the attribution must name first, with repeats that agree exactly.
"""

from __future__ import annotations

import math
import shutil
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tristore_bench import attribution
from tristore_bench.gate import instructions as gi
from tristore_bench.gate.report import GateSummary, gate_markdown
from tristore_bench.gate.run import checkout_src
from tristore_bench.gate.stats import Policy
from tristore_bench.workloads import (
    CALLGRIND_START_INSTRUMENTATION,
    CALLGRIND_STOP_INSTRUMENTATION,
    CALLGRIND_TOGGLE_COLLECT,
)

ROOT = Path(__file__).resolve().parents[3]


def leaf(n: int) -> int:
    total = 0
    for i in range(n):
        total += i
    return total


def caller(n: int) -> int:
    return leaf(n) + leaf(n)


def recursive(n: int) -> int:
    return 0 if n == 0 else 1 + recursive(n - 1)


def _traced(fn: Any, *args: Any) -> dict[str, dict[str, int]]:
    tracer = attribution.Tracer()
    old = sys.gettrace()
    sys.settrace(tracer.global_trace)
    try:
        tracer.toggle(CALLGRIND_START_INSTRUMENTATION)
        fn(*args)
        tracer.toggle(CALLGRIND_STOP_INSTRUMENTATION)
    finally:
        sys.settrace(old)
    return tracer.table()


def _name(fn: Any) -> str:
    return f"{__name__}:{fn.__qualname__}"


def test_self_and_inclusive_bytecodes_per_function() -> None:
    table = _traced(caller, 10)
    leaf_self = table["self"][_name(leaf)]
    assert table["inclusive"][_name(leaf)] == leaf_self  # no callees
    assert table["inclusive"][_name(caller)] == table["self"][_name(caller)] + leaf_self
    # One more iteration per call costs the loop body's bytecodes, twice (two calls).
    more = _traced(caller, 11)
    per_iteration = (more["self"][_name(leaf)] - leaf_self) / 2
    assert per_iteration > 0 and per_iteration == int(per_iteration)
    assert _traced(caller, 10) == table  # exactly the same every time


def test_recursion_is_charged_once_and_counting_needs_the_toggle() -> None:
    table = _traced(recursive, 5)
    assert table["inclusive"][_name(recursive)] == table["self"][_name(recursive)]
    tracer = attribution.Tracer()
    old = sys.gettrace()
    sys.settrace(tracer.global_trace)
    try:
        caller(10)  # never switched on: nothing counted
    finally:
        sys.settrace(old)
    assert tracer.table() == {"self": {}, "inclusive": {}}


def test_threads_started_under_the_hook_are_counted() -> None:
    tracer = attribution.Tracer()
    old = sys.gettrace()
    threading.settrace(tracer.global_trace)
    try:
        tracer.toggle(CALLGRIND_START_INSTRUMENTATION)
        worker = threading.Thread(target=leaf, args=(10,))
        worker.start()
        worker.join()
        tracer.toggle(CALLGRIND_STOP_INSTRUMENTATION)
    finally:
        threading.settrace(old)  # type: ignore[arg-type]
    assert tracer.table()["self"][_name(leaf)] > 0


def test_the_collection_toggle_pauses_only_the_calling_thread() -> None:
    # The settled loop waits with collection off; a worker thread's work meanwhile still counts.
    def waiting_with_collection_off() -> None:
        tracer.toggle(CALLGRIND_TOGGLE_COLLECT)
        worker = threading.Thread(target=leaf, args=(10,))
        worker.start()
        worker.join()
        caller(10)  # this thread's own work while off: not counted
        tracer.toggle(CALLGRIND_TOGGLE_COLLECT)
        leaf(3)  # on again

    tracer = attribution.Tracer()
    old = sys.gettrace()
    sys.settrace(tracer.global_trace)
    threading.settrace(tracer.global_trace)
    try:
        tracer.toggle(CALLGRIND_START_INSTRUMENTATION)
        waiting_with_collection_off()
        tracer.toggle(CALLGRIND_STOP_INSTRUMENTATION)
    finally:
        sys.settrace(old)
        threading.settrace(old)  # type: ignore[arg-type]
    table = tracer.table()
    assert _name(caller) not in table["self"]
    assert (
        table["self"][_name(leaf)]
        == _traced(leaf, 10)["self"][_name(leaf)] + _traced(leaf, 3)["self"][_name(leaf)]
    )


def _profile(**columns: dict[str, float]) -> attribution.Profile:
    return attribution.Profile("w", 10, columns["self_ops"], columns["inclusive"])


def test_moved_ranks_the_changed_function_above_its_callers() -> None:
    base = _profile(
        self_ops={"m:f": 10.0, "m:loop": 5.0, "m:g": 3.0},
        inclusive={"m:f": 10.0, "m:loop": 40.0, "m:g": 3.0},
    )
    head = _profile(
        self_ops={"m:f": 76.0, "m:loop": 5.0, "m:g": 3.0, "m:new": 1.0},
        inclusive={"m:f": 76.0, "m:loop": 106.0, "m:g": 3.0, "m:new": 1.0},
    )
    rows = attribution.moved(base, head)
    assert [r.function for r in rows] == ["m:f", "m:new", "m:loop"]  # g did not move
    assert (rows[0].inclusive, rows[0].self_ops) == (66.0, 66.0)
    assert (rows[2].inclusive, rows[2].self_ops) == (66.0, 0.0)
    table = attribution.markdown_table(rows)
    assert table[2] == "| `m:f` | +66.0 | +66.0 |"


def test_the_library_leads_by_inclusive_change_then_the_rest_by_self() -> None:
    base = _profile(
        self_ops={"asyncio.base_events:loop": 80.0, "tristore.s:Store.write": 9.0},
        inclusive={
            "asyncio.base_events:loop": 900.0,
            "tristore.s:Store.execute": 300.0,
            "tristore.s:Store.write": 200.0,
            "tristore_bench.workloads:op": 310.0,
        },
    )
    head = _profile(
        self_ops={"asyncio.base_events:loop": 163.0, "tristore.s:Store.write": 18.0},
        inclusive={
            "asyncio.base_events:loop": 1209.0,
            "tristore.s:Store.execute": 609.0,
            "tristore.s:Store.write": 215.0,
            "tristore_bench.workloads:op": 619.0,
        },
    )
    rows = attribution.moved(base, head)
    assert [r.function for r in rows] == [
        "tristore.s:Store.execute",  # where the change sits, by what it costs with its callees
        "tristore.s:Store.write",
        "asyncio.base_events:loop",  # then the rest by their own work
        "tristore_bench.workloads:op",  # the harness is not the library
    ]


def test_the_gate_report_names_python_functions_then_c_functions() -> None:
    base = _profile(self_ops={"tristore.pool:Pool.acquire": 10.0}, inclusive={})
    head = _profile(self_ops={"tristore.pool:Pool.acquire": 76.0}, inclusive={})
    calls: list[Path] = []

    def profile(name: str, n: int | None = None, *, library: Path) -> attribution.Profile:
        calls.append(library)
        return base if library == Path("b") else head

    flagged = gi.InstrComparison(
        "pool_checkout", 100, 1000.0, 1100.0, "regression", (("_PyEval_EvalFrameDefault", 90.0),)
    )
    result = gi.with_python_view(flagged, Path("b"), Path("h"), profile)
    assert calls == [Path("b"), Path("h")]
    assert result.python_top == (("tristore.pool:Pool.acquire", 0.0, 66.0),)
    assert result.as_dict()["python_functions"][0]["self_delta_per_op"] == 66.0
    section = gi.InstrSection(comparisons=[result], seconds=1.0, valgrind="3.19.0")
    md = gate_markdown(GateSummary("b", "h", (8, 8), 1.0, Policy(), [], instructions=section))
    python_at = md.index("`tristore.pool:Pool.acquire`")
    assert md.index("**Where in the Python code**") < python_at < md.index("in C (callgrind")

    def failing(name: str, n: int | None = None, *, library: Path) -> attribution.Profile:
        raise RuntimeError("attribution of pool_checkout failed\nImportError: no tristore")

    kept = gi.with_python_view(flagged, Path("b"), Path("h"), failing)
    assert kept.verdict == "regression" and kept.python_top == ()
    assert kept.python_note.startswith("no Python view") and "ImportError" in kept.python_note


# -- natively, on a real workload ----------------------------------------------------------------


@pytest.fixture(scope="module")
def libraries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """HEAD's src, and a copy whose Pool.acquire runs 20 empty loop iterations first."""
    with checkout_src("HEAD", ROOT) as base:
        head = tmp_path_factory.mktemp("head") / "src"
        shutil.copytree(base, head)
        pool = head / "tristore" / "pool.py"
        lines = pool.read_text().splitlines(keepends=True)
        start = next(i for i, line in enumerate(lines) if line.startswith("    def acquire("))
        ret = next(i for i in range(start, len(lines)) if lines[i].startswith("        return "))
        lines[ret:ret] = ["        for _ in range(20):\n", "            pass\n"]
        pool.write_text("".join(lines))
        yield base, head


def test_a_real_step_is_named_at_its_python_function(libraries: tuple[Path, Path]) -> None:
    base_src, head_src = libraries
    base = attribution.profile("pool_checkout", 200, library=base_src)
    again = attribution.profile("pool_checkout", 200, library=base_src)
    assert (again.self_ops, again.inclusive) == (base.self_ops, base.inclusive)  # exact repeat
    head = attribution.profile("pool_checkout", 200, library=head_src)
    rows = attribution.moved(base, head)
    top = rows[0]
    assert top.function == "tristore.pool:Pool.acquire"
    assert top.self_ops == top.inclusive > 40  # 20 iterations of a 3-bytecode loop, and its set-up
    assert math.isclose(
        sum(head.self_ops.values()) - sum(base.self_ops.values()), top.self_ops
    )  # nothing else moved


def test_repeat_spread_names_what_varies() -> None:
    same = _profile(self_ops={"m:f": 1.0, "asyncio.base_events:x": 5.0}, inclusive={})
    other = _profile(self_ops={"m:f": 1.0, "asyncio.base_events:x": 5.5}, inclusive={})
    assert attribution.repeat_spread([same, same]) == []
    assert attribution.repeat_spread([same, other, same]) == [("asyncio.base_events:x", 5.0, 5.5)]
