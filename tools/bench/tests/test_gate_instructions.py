"""The gate's instruction section: verdicts, function deltas and the report on recorded counts,
then end to end with real callgrind counts (deterministic: nothing here reads a clock).

The real part counts pool_checkout (the cheapest workload) at a small n: one base count shared
by the tests, an A/A head, the injected loop's calibration and two injected heads; seven counts
of about 2.5 s each on an idle machine. It is skipped when valgrind is not installed.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tristore_bench import instructions
from tristore_bench.gate import instructions as gi
from tristore_bench.gate.cli import EXIT_ERROR, EXIT_OK, EXIT_REGRESSION, _exit_code
from tristore_bench.gate.report import GateSummary, fmt_count, gate_markdown
from tristore_bench.gate.stats import Policy, json_safe
from tristore_bench.instructions import Count, Run
from tristore_bench.workloads import INJECT_ENV, inject_iterations

ROOT = Path(__file__).resolve().parents[3]
SRC = ROOT / "src"

# Per-function self instructions of two batches (n=100 and n=200) for each side, trimmed from a
# real pool_checkout count and then edited: head spends 300 more per op in the eval loop, 40
# more in malloc, 20 fewer in gen_dealloc, and calls one new function.
BASE_SMALL = {
    "_PyEval_EvalFrameDefault": 700_000,
    "_PyObject_Malloc": 30_000,
    "gen_dealloc": 25_000,
}
BASE_LARGE = {
    "_PyEval_EvalFrameDefault": 1_340_000,
    "_PyObject_Malloc": 54_000,
    "gen_dealloc": 48_000,
}
HEAD_SMALL = {
    "_PyEval_EvalFrameDefault": 730_000,
    "_PyObject_Malloc": 34_000,
    "gen_dealloc": 23_000,
}
HEAD_LARGE = {
    "_PyEval_EvalFrameDefault": 1_400_000,
    "_PyObject_Malloc": 62_000,
    "gen_dealloc": 44_000,
    "vgetargskeywords": 500,
}


def recorded(small: Mapping[str, int], large: Mapping[str, int], n: int = 100) -> Count:
    """A Count as measure() returns it, from per-function tables (totals are their sums)."""
    s, lg = sum(small.values()), sum(large.values())
    return Count(
        "pool_checkout",
        n,
        (lg - s) / n,
        Run(n, s, dict(small), 2.0),
        Run(2 * n, lg, dict(large), 2.0),
        "3.19.0",
    )


BASE = recorded(BASE_SMALL, BASE_LARGE)  # 6 870 per op
HEAD = recorded(HEAD_SMALL, HEAD_LARGE)  # 7 195 per op: +4.7%


# -- verdicts and deltas on recorded counts -------------------------------------------------------


def test_verdict_is_the_ratio_against_the_threshold() -> None:
    assert gi.DEFAULT_THRESHOLD == 0.01  # from the calibration: see the module docstring
    assert gi.verdict(100_000, 101_001) == "regression"
    assert gi.verdict(100_000, 101_000) == "unchanged"  # the line itself is not beyond it
    assert gi.verdict(100_000, 99_000) == "unchanged"
    assert gi.verdict(100_000, 98_999) == "improvement"
    assert gi.verdict(100_000, 100_710) == "unchanged"  # the largest A/A spread measured
    assert gi.verdict(100_000, 104_000, threshold=0.05) == "unchanged"
    assert gi.verdict(100_000, 105_100, threshold=0.05) == "regression"
    with pytest.raises(ValueError, match="positive"):
        gi.verdict(0.0, 1.0)


def test_per_op_functions_are_the_difference_of_the_two_batches() -> None:
    assert gi.per_op_functions(BASE) == {
        "_PyEval_EvalFrameDefault": 6400.0,
        "_PyObject_Malloc": 240.0,
        "gen_dealloc": 230.0,
    }
    assert math.isclose(sum(gi.per_op_functions(HEAD).values()), HEAD.per_op)


def test_function_changes_rank_by_size_either_way_and_drop_unchanged() -> None:
    changes = gi.function_changes(gi.per_op_functions(BASE), gi.per_op_functions(HEAD))
    assert changes == [
        ("_PyEval_EvalFrameDefault", 300.0),
        ("_PyObject_Malloc", 40.0),
        ("gen_dealloc", -20.0),
        ("vgetargskeywords", 5.0),  # only in head
    ]
    assert gi.function_changes({"b": 1.0, "a": 1.0}, {"b": 3.0, "a": 3.0, "c": 1.0}, k=2) == [
        ("a", 2.0),  # a tie goes by name: the same order every run
        ("b", 2.0),
    ]
    assert gi.function_changes({"a": 5.0}, {"a": 5.0}) == []


def fake_measure(
    counts: Mapping[tuple[Path | None, bool], Count | Exception],
) -> tuple[Callable[..., Count], list[dict[str, Any]]]:
    """measure() stand-in: the recorded Count for (library, injected?), and the calls made."""
    calls: list[dict[str, Any]] = []

    def measure(
        name: str, n: int | None = None, *, library: Path | None = None, env: Any = None
    ) -> Count:
        calls.append({"name": name, "n": n, "library": library, "env": env})
        result = counts[(library, bool(env))]
        if isinstance(result, Exception):
            raise result
        return result

    return measure, calls


def test_compare_one_judges_and_names_the_functions() -> None:
    measure, calls = fake_measure({(Path("b"), False): BASE, (Path("h"), False): HEAD})
    result = gi.compare_one("pool_checkout", Path("b"), Path("h"), n=100, measure=measure)
    assert [c["library"] for c in calls] == [Path("b"), Path("h")]  # base first
    assert result.verdict == "regression"
    assert math.isclose(result.ratio, HEAD.per_op / BASE.per_op)
    assert result.top[0] == ("_PyEval_EvalFrameDefault", 300.0)
    same = gi.compare_one(
        "pool_checkout",
        Path("b"),
        Path("b"),
        n=100,
        measure=fake_measure({(Path("b"), False): BASE})[0],
    )
    assert same.verdict == "unchanged" and same.ratio == 1.0 and same.top == ()


def test_a_base_without_the_api_is_new_and_other_failures_are_errors() -> None:
    missing = RuntimeError(
        "instruction count of order_flow (n=20) failed (exit 1):\nTraceback ...\n"
        "ModuleNotFoundError: No module named 'tristore.flows'\n"
    )
    measure, _ = fake_measure({(Path("b"), False): missing, (Path("h"), False): HEAD})
    new = gi.compare_one("order_flow", Path("b"), Path("h"), n=100, measure=measure)
    assert new.verdict == "new" and math.isnan(new.base) and "tristore.flows" in new.note
    keyword = RuntimeError(
        "TypeError: Coordinator.__init__() got an unexpected keyword argument 'flush_delay'"
    )
    assert gi.lacks_api(keyword)
    crashed = RuntimeError("instruction count failed (exit -11):\nvalgrind: segmentation fault")
    measure, _ = fake_measure({(Path("b"), False): crashed, (Path("h"), False): HEAD})
    assert gi.compare_one("order_flow", Path("b"), Path("h"), measure=measure).verdict == "error"
    measure, _ = fake_measure({(Path("b"), False): BASE, (Path("h"), False): crashed})
    broken = gi.compare_one("pool_checkout", Path("b"), Path("h"), measure=measure)
    assert broken.verdict == "error" and broken.note.startswith("head failed")


def test_injection_goes_to_head_only_and_is_sized_from_the_base_count() -> None:
    loop = gi.LoopCost(per_iteration=76.0)
    measure, calls = fake_measure({(Path("b"), True): BASE, (Path("h"), True): HEAD})
    result = gi.compare_one(
        "pool_checkout",
        Path("b"),
        Path("h"),
        n=100,
        inject_percent=5,
        loop=lambda: loop,
        measure=measure,
    )
    # 5% of 6870 = 343.5 = 4.52 x 76: five iterations (the fewest that add at least 5%).
    assert calls[0]["env"] == {INJECT_ENV: "pool_checkout:0"}  # the loop's empty shell
    assert calls[1]["env"] == {INJECT_ENV: "pool_checkout:5"}
    assert (result.injected_iterations, result.injected_per_op) == (5, 380.0)
    assert loop.iterations_for(2, 3800) == 1  # exactly 2%: no step more
    assert loop.iterations_for(0.01, 100_000) == 1  # never an injection of nothing


def test_both_sides_of_each_workload_are_counted_at_once_with_the_same_verdicts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 29 item 5: base and head counts overlap; the verdicts are a serial run's.

    Each side's count waits until the other side of the same workload has started, so a
    scheduler that ran them one after the other could never finish it (the bound on the wait is
    only there to turn such a bug into a failure instead of a hang; nothing is timed).
    """
    monkeypatch.setattr(instructions, "available", lambda: None)
    monkeypatch.setattr(instructions, "valgrind_version", lambda: "3.19.0")
    names = gi.selected()
    started = {(name, side): threading.Event() for name in names for side in ("b", "h")}
    overlapped: list[str] = []
    lock = threading.Lock()
    failing = RuntimeError("ModuleNotFoundError: No module named 'tristore.flows'")
    table: dict[tuple[str, Path], Count | Exception] = {}
    for i, name in enumerate(names):
        table[(name, Path("b"))] = (
            failing if name == "order_flow" else recorded(BASE_SMALL, BASE_LARGE, 100 + i)
        )
        table[(name, Path("h"))] = recorded(
            HEAD_SMALL if i % 2 else BASE_SMALL, HEAD_LARGE if i % 2 else BASE_LARGE, 100 + i
        )

    def measure(name: str, n: int | None = None, *, library: Path, env: Any = None) -> Count:
        assert env is None
        side = library.name
        started[(name, side)].set()
        other = "h" if side == "b" else "b"
        assert started[(name, other)].wait(60), f"{name}: {side} ran alone"
        with lock:
            overlapped.append(f"{name}:{side}")
        result = table[(name, library)]
        if isinstance(result, Exception):
            raise result
        return result

    concurrent = gi.run_section(Path("b"), Path("h"), measure=measure, profile=None)
    assert sorted(overlapped) == sorted(f"{n}:{s}" for n in names for s in ("b", "h"))
    assert [c.name for c in concurrent.comparisons] == names  # reported in workload order

    def serial_measure(name: str, n: int | None = None, *, library: Path, env: Any = None) -> Count:
        result = table[(name, library)]
        if isinstance(result, Exception):
            raise result
        return result

    serial = [
        gi.compare_one(name, Path("b"), Path("h"), measure=serial_measure, n=100 + i)
        for i, name in enumerate(names)
    ]

    def verdicts(comparisons: list[gi.InstrComparison]) -> list[dict[str, Any]]:
        return [{**c.as_dict(), "seconds": None, "n": None} for c in comparisons]

    assert verdicts(concurrent.comparisons) == verdicts(serial)
    assert {c.verdict for c in concurrent.comparisons} == {"regression", "unchanged", "new"}


def test_an_injected_head_waits_for_its_base(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(instructions, "available", lambda: None)
    monkeypatch.setattr(instructions, "valgrind_version", lambda: "3.19.0")
    measure, calls = fake_measure({(Path("b"), True): BASE, (Path("h"), True): HEAD})
    monkeypatch.setattr(gi, "loop_cost", lambda _measure: gi.LoopCost(per_iteration=76.0))
    section = gi.run_section(
        Path("b"), Path("h"), only=["pool_checkout"], inject_percent=5, measure=measure,
        profile=None,
    )  # fmt: skip
    assert [c["library"] for c in calls] == [Path("b"), Path("h")]
    assert section.comparisons[0].injected_iterations == 5


def test_inject_variable_parsing() -> None:
    assert inject_iterations("pool_checkout", None) is None
    assert inject_iterations("pool_checkout", "sqlite_write:5, pool_checkout:12") == 12
    assert inject_iterations("pool_checkout", "pool_checkout:0") == 0  # the empty loop
    assert inject_iterations("noop", "pool_checkout:12") is None
    with pytest.raises(ValueError, match="WORKLOAD:ITERATIONS"):
        inject_iterations("noop", "noop:x")


def test_only_selects_workloads_by_the_words_of_its_expressions() -> None:
    everything = gi.selected()
    assert "noop" not in everything and "pool_checkout" in everything
    assert gi.selected(["pool_checkout"]) == ["pool_checkout"]
    assert gi.selected(["sqlite or redis"]) == ["sqlite_write", "redis_pipeline"]
    assert gi.selected(["test_kuzu_read"]) == []


def test_without_valgrind_the_section_is_skipped_with_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(instructions.shutil, "which", lambda tool: None)

    def never(*args: Any, **kwargs: Any) -> Count:
        raise AssertionError("nothing may be measured without valgrind")

    section = gi.run_section(Path("b"), Path("h"), measure=never)
    assert "apt-get install valgrind" in section.skipped
    assert section.as_list() == [{"verdict": "skipped", "reason": section.skipped}]
    md = gate_markdown(summary(section))
    assert "### Instructions (callgrind, deterministic)" in md
    assert "⏭ skipped: valgrind is not installed" in md
    assert "✅ no regression" in md.splitlines()[1]


# -- report and exit code ----------------------------------------------------------------------


def summary(section: gi.InstrSection | None) -> GateSummary:
    return GateSummary("main (abc)", "wt", (8, 8), 200.0, Policy(), [], instructions=section)


def recorded_section() -> gi.InstrSection:
    measure, _ = fake_measure({(Path("b"), False): BASE, (Path("h"), False): HEAD})
    bad = gi.compare_one("pool_checkout", Path("b"), Path("h"), n=100, measure=measure)
    measure, _ = fake_measure({(Path("b"), False): BASE})
    same = gi.compare_one("sqlite_write", Path("b"), Path("b"), n=100, measure=measure)
    new = gi.InstrComparison("order_flow", 20, math.nan, 5e6, "new", note="base lacks the API: x")
    return gi.InstrSection(comparisons=[bad, same, new], seconds=61.0, valgrind="3.19.0")


def test_report_has_the_instruction_table_and_where_the_instructions_went() -> None:
    md = gate_markdown(summary(recorded_section()))
    lines = md.splitlines()
    assert "1 regression" in lines[1] and "`pool_checkout` x1.047 instructions" in lines[1]
    assert "| workload | n | base | head | ratio | verdict |" in md
    assert "| `pool_checkout` | 100 | 6.87k | 7.195k | 1.0473 | ❌ regression |" in md
    assert "| `sqlite_write` | 100 | 6.87k | 6.87k | 1.0000 | ✅ unchanged |" in md
    assert "| `order_flow` | 20 | - | 5M | - | 🆕 new (base lacks the API: x) |" in md
    assert "head/base > 1.01" in md and "< 0.99" in md
    details = md[md.index("<details><summary>Where the instructions went") :]
    assert "**`pool_checkout`**" in details and "**`sqlite_write`**" not in details
    assert "| `_PyEval_EvalFrameDefault` | +300 |" in details
    assert "| `gen_dealloc` | -20 |" in details
    assert "### Instructions" not in gate_markdown(summary(None))  # --no-instructions


def test_regressions_of_either_table_exit_1_and_json_carries_the_section() -> None:
    opts: Any = SimpleNamespace(fail_on_inconclusive=False)
    section = recorded_section()
    assert _exit_code(summary(section), opts) == EXIT_REGRESSION
    unchanged = gi.InstrSection(comparisons=section.comparisons[1:])
    assert _exit_code(summary(unchanged), opts) == EXIT_OK
    broken = gi.InstrComparison("redis_pipeline", 30, 1.0, math.nan, "error", note="head failed")
    assert _exit_code(summary(gi.InstrSection(comparisons=[broken])), opts) == EXIT_ERROR
    rows = json.loads(json.dumps(json_safe(section.as_list())))
    assert rows[0]["verdict"] == "regression" and rows[0]["top_functions"][0] == {
        "function": "_PyEval_EvalFrameDefault",
        "delta_per_op": 300.0,
    }
    assert rows[2]["base_per_op"] is None  # NaN is not JSON


def test_fmt_count() -> None:
    assert fmt_count(13289.6) == "13.29k"
    assert fmt_count(206828.0) == "206.8k"
    assert fmt_count(5_123_456.0) == "5.123M"
    assert fmt_count(412.25) == "412.2"
    assert fmt_count(math.nan) == "-"


# -- end to end with real counts ----------------------------------------------------------------

needs_valgrind = pytest.mark.skipif(
    instructions.available() is not None, reason=str(instructions.available())
)
N = 200  # operations in the smaller batch: ~2.5 s per valgrind process


@pytest.fixture(scope="module")
def base_count() -> Count:
    return instructions.measure("pool_checkout", N, library=SRC)


@pytest.fixture(scope="module")
def loop_cost() -> gi.LoopCost:
    return gi.loop_cost()


def with_base(base: Count) -> Callable[..., Count]:
    """The real measure, except that the first plain base-side call returns the shared count."""
    served: list[bool] = []

    def measure(name: str, n: int | None = None, **kwargs: Any) -> Count:
        if not served and name == base.workload and n == base.n and not kwargs.get("env"):
            served.append(True)
            return base
        return instructions.measure(name, n, **kwargs)

    return measure


@needs_valgrind
def test_identical_code_is_unchanged_within_half_a_percent(base_count: Count) -> None:
    result = gi.compare_one("pool_checkout", SRC, SRC, n=N, measure=with_base(base_count))
    assert result.verdict == "unchanged"
    assert abs(result.ratio - 1) < 0.005, result


@needs_valgrind
def test_the_injected_loop_costs_what_its_calibration_says(loop_cost: gi.LoopCost) -> None:
    # A whole number: the counts of two batch sizes differ by exactly n x the loop's cost.
    assert loop_cost.per_iteration > 0
    assert loop_cost.per_iteration == pytest.approx(round(loop_cost.per_iteration), abs=1e-6)


@pytest.fixture(scope="module")
def hooked_base() -> Count:
    """The base side of an injection: the loop's empty shell (0 iterations)."""
    return instructions.measure(
        "pool_checkout", N, library=SRC, env={INJECT_ENV: "pool_checkout:0"}
    )


@needs_valgrind
@pytest.mark.parametrize("percent", [5.0, 2.0])
def test_an_injected_cost_is_caught(
    percent: float, hooked_base: Count, loop_cost: gi.LoopCost
) -> None:
    def measure(name: str, n: int | None = None, **kwargs: Any) -> Count:
        if kwargs.get("env") == {INJECT_ENV: "pool_checkout:0"}:
            return hooked_base  # shared by both percentages: the same count either way
        return instructions.measure(name, n, **kwargs)

    result = gi.compare_one(
        "pool_checkout", SRC, SRC, n=N, inject_percent=percent, loop=lambda: loop_cost,
        measure=measure,
    )  # fmt: skip
    added = result.injected_per_op / result.base
    # The fewest whole iterations that add the percentage: one more than needed adds ~0.6%.
    assert percent / 100 <= added < percent / 100 + loop_cost.per_iteration / result.base
    assert result.verdict == "regression", result
    # The count sees what was added, to a count's spread (0.5% of base; measured: exact).
    assert abs((result.head - result.base) - result.injected_per_op) < 0.005 * result.base
    assert result.top and result.top[0][1] > 0
