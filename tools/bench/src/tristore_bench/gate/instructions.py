"""The gate's instruction section: callgrind counts of the CPU-bound hot paths, base vs head.

Each workload of :mod:`tristore_bench.workloads` is counted with
:func:`tristore_bench.instructions.measure` once on the base library and once on the head
library. The two sides of a workload run at the same time (``jobs``, default 2 counts, i.e. four
valgrind processes), after the wall-time rounds and never beside them: a count does not depend on
the load, so this changes no verdict, only how long the section takes.

A count repeats to within 0.39% (max - min over 3 runs of each workload,
``tools/bench/measurements/instructions-stability.txt``; the gate's own A/A runs are in
``gate-instructions-calibration`` there), so no significance test is needed: the verdict is the
head/base ratio against a fixed threshold, default 1%. The threshold comes from the gate's own
calibration (``tools/bench/measurements/gate-instructions-calibration``: 8 rounds of every
workload on one library): no A/A false verdict in 336 at 0.75% and above (9 at 0.5%, where the
largest A/A spread, 0.71%, crosses it), while a 2% injection was caught 48 of 48 times at 1.5%
and below but only 21 of 48 at 2% (counts scatter either side of the line). 1% keeps both
margins:

* **regression**: ratio > 1 + threshold; **improvement**: ratio < 1 - threshold;
* **unchanged** otherwise;
* **new**: the base cannot run the workload because it lacks the API (an import or attribute
  error, a keyword it does not take); **error**: any other failure;
* the whole section is **skipped**, with the reason, when valgrind is not installed (Debian
  package ``valgrind``): never failed, never faked.

For a regression or improvement the report lists where the instructions went: the functions
(callgrind's self cost, C level: the interpreter, SQLite, Kuzu, ...) whose per-operation count
moved most, each side's per-operation table being ``(I_2n(f) - I_n(f)) / n``.

``--inject-instructions PCT`` (test only) proves the section sees what it should: after the base
count it computes how many iterations of a fixed pure-Python loop after each operation
(``TRISTORE_BENCH_INJECT``, see :func:`tristore_bench.workloads.inject_iterations`) add at least
PCT% of the base per-operation count, from a calibration of one iteration's cost (two counts of
the floor workload), and runs head with them. The base side runs the same loop with 0
iterations, so the loop's fixed cost (its iterator) is on both sides and head minus base is the
iterations alone.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tristore_bench import attribution, instructions
from tristore_bench.gate.stats import Verdict, threshold_verdict
from tristore_bench.workloads import INJECT_ENV, WORKLOADS

DEFAULT_THRESHOLD = 0.01
TOP_K = 5
# The calibration of one injected loop iteration: the floor workload with K and 2K iterations
# per operation (K x ~76 instructions dwarfs any residue of the count; 2 s per count).
CALIBRATION_WORKLOAD = "noop"
CALIBRATION_ITERATIONS = 1000
CALIBRATION_N = 200
# Failure messages of a base that predates a workload's API: the workload is "new" there.
_MISSING_API = re.compile(
    r"\b(ModuleNotFoundError|ImportError|AttributeError)\b"
    r"|TypeError: .*(unexpected keyword argument|positional argument|required)"
)

Measure = Callable[..., instructions.Count]


@dataclass(frozen=True)
class InstrComparison:
    """One workload's base and head count per operation, and the verdict."""

    name: str
    n: int
    base: float  # instructions per operation (nan: not measured)
    head: float
    verdict: Verdict
    # (function, head minus base self instructions per operation), largest change first.
    top: tuple[tuple[str, float], ...] = ()
    note: str = ""
    seconds: float = 0.0
    injected_iterations: int = 0
    injected_per_op: float = 0.0  # what those iterations add, from the loop's calibration
    # (module:qualname, Δ inclusive, Δ self) bytecodes per op, head minus base: the Python view.
    python_top: tuple[tuple[str, float, float], ...] = ()
    python_note: str = ""  # why there is no Python view, when a flagged step has none

    @property
    def ratio(self) -> float:
        if math.isnan(self.base) or math.isnan(self.head) or self.base <= 0:
            return math.nan
        return self.head / self.base

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "n": self.n,
            "base_per_op": self.base,
            "head_per_op": self.head,
            "ratio": self.ratio,
            "verdict": self.verdict,
            "top_functions": [{"function": f, "delta_per_op": d} for f, d in self.top],
            "python_functions": [
                {"function": f, "inclusive_delta_per_op": i, "self_delta_per_op": s}
                for f, i, s in self.python_top
            ],
            "python_note": self.python_note,
            "note": self.note,
            "seconds": self.seconds,
            "injected_iterations": self.injected_iterations,
            "injected_per_op": self.injected_per_op,
        }


@dataclass
class InstrSection:
    """The instruction part of one gate run (``skipped`` holds the reason when it did not run)."""

    threshold: float = DEFAULT_THRESHOLD
    comparisons: list[InstrComparison] = field(default_factory=list)
    skipped: str = ""
    seconds: float = 0.0
    injected: str = ""  # the test-only injection, described for the report
    valgrind: str | None = None

    @property
    def regressions(self) -> list[InstrComparison]:
        return [c for c in self.comparisons if c.verdict == "regression"]

    @property
    def errors(self) -> list[InstrComparison]:
        return [c for c in self.comparisons if c.verdict == "error"]

    def as_list(self) -> list[dict[str, Any]]:
        if self.skipped:
            return [{"verdict": "skipped", "reason": self.skipped}]
        return [c.as_dict() for c in self.comparisons]


def verdict(base: float, head: float, threshold: float = DEFAULT_THRESHOLD) -> Verdict:
    """regression / improvement / unchanged from two per-operation counts (no test: see above)."""
    return threshold_verdict(base, head, threshold)


def per_op_functions(count: instructions.Count) -> dict[str, float]:
    """Every function's self instructions per operation, ``(large - small) / n``."""
    small, large = count.small.functions, count.large.functions
    return dict(instructions.function_deltas(small, large, count.n, len({*small, *large})))


def function_changes(
    base: Mapping[str, float], head: Mapping[str, float], k: int = TOP_K
) -> list[tuple[str, float]]:
    """The ``k`` functions whose per-operation count changed most, head minus base.

    Ranked by size in either direction (a regression can move work from one function to
    another; both halves explain it), ties by name so the order is reproducible.
    """
    deltas = {name: head.get(name, 0.0) - base.get(name, 0.0) for name in {*base, *head}}
    ranked = sorted(deltas.items(), key=lambda item: (-abs(item[1]), item[0]))
    return [(name, delta) for name, delta in ranked[:k] if delta != 0]


def selected(only: Sequence[str] = ()) -> list[str]:
    """The gate's instruction workloads, those matching ``--only`` (substrings) when given.

    ``--only`` values are pytest ``-k`` expressions for the wall-time side; here each word of
    them other than and/or/not selects the workloads whose name contains it.
    """
    names = [name for name in WORKLOADS if name != CALIBRATION_WORKLOAD]
    words = [w for value in only for w in re.split(r"[\s()]+", value) if w]
    words = [w for w in words if w not in ("and", "or", "not")]
    if not words:
        return names
    return [name for name in names if any(w in name for w in words)]


def lacks_api(error: BaseException) -> bool:
    """Whether a failed count reads as "this library does not have that API yet"."""
    return _MISSING_API.search(str(error)) is not None


@dataclass(frozen=True)
class LoopCost:
    """What the injected loop adds per operation: ``iterations x per_iteration``.

    Its fixed part (creating the loop's iterator, ~300 instructions) is not in it: with an
    injection the base side runs the loop with 0 iterations, so that part is on both sides.
    """

    per_iteration: float

    def iterations_for(self, percent: float, base_per_op: float) -> int:
        """The fewest iterations per operation that add at least ``percent``% of ``base_per_op``.

        One iteration is ~0.6% of pool_checkout (the cheapest workload), so the report gives
        what was actually added (:meth:`adds`), not the percentage asked for.
        """
        return max(1, math.ceil(base_per_op * percent / 100 / self.per_iteration - 1e-9))

    def adds(self, iterations: int) -> float:
        return iterations * self.per_iteration


def loop_cost(measure: Measure = instructions.measure) -> LoopCost:
    """The injected loop's cost per iteration, from two counts of the floor workload.

    With K and 2K iterations per operation: the workload and the loop's fixed part cancel in
    the difference, so ``(c(2K) - c(K)) / K`` is one iteration, exact to the count.
    """
    k = CALIBRATION_ITERATIONS
    once, twice = (
        measure(
            CALIBRATION_WORKLOAD, CALIBRATION_N, env={INJECT_ENV: f"{CALIBRATION_WORKLOAD}:{i}"}
        )
        for i in (k, 2 * k)
    )
    per_iteration = (twice.per_op - once.per_op) / k
    if not per_iteration > 0:
        raise RuntimeError(f"the injected loop did not add instructions ({per_iteration})")
    return LoopCost(per_iteration)


@dataclass(frozen=True)
class SideCount:
    """One side's count of one workload, or why it failed, and how long it took."""

    count: instructions.Count | None
    error: RuntimeError | None
    seconds: float


def count_side(
    name: str,
    src: Path,
    n: int,
    env: Mapping[str, str] | None,
    measure: Measure = instructions.measure,
) -> SideCount:
    """One side's count; a failed count is kept as its error (the verdict reads it)."""
    started = time.perf_counter()
    try:
        count = measure(name, n, library=src, env=env)
    except RuntimeError as exc:
        return SideCount(None, exc, time.perf_counter() - started)
    return SideCount(count, None, time.perf_counter() - started)


def judge_sides(
    name: str,
    n: int,
    base: SideCount,
    head: SideCount,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    all_top: bool = False,
    iterations: int = 0,
    added: float = 0.0,
    seconds: float = 0.0,
) -> InstrComparison:
    """The verdict on two sides' counts (the same whichever order, or overlap, they ran in)."""
    nan = math.nan
    if head.count is None:
        return InstrComparison(
            name, n, base.count.per_op if base.count else nan, nan, "error",
            note=f"head failed: {_last_line(head.error or RuntimeError())}", seconds=seconds,
        )  # fmt: skip
    if base.count is None:
        error = base.error or RuntimeError()
        missing = lacks_api(error)
        return InstrComparison(
            name, n, nan, head.count.per_op, "new" if missing else "error",
            note=("base lacks the API: " if missing else "base failed: ") + _last_line(error),
            seconds=seconds,
        )  # fmt: skip
    judged = verdict(base.count.per_op, head.count.per_op, threshold)
    top: list[tuple[str, float]] = []
    if judged != "unchanged" or all_top:
        top = function_changes(per_op_functions(base.count), per_op_functions(head.count))
    return InstrComparison(
        name, n, base.count.per_op, head.count.per_op, judged, tuple(top),
        seconds=seconds, injected_iterations=iterations, injected_per_op=added,
    )  # fmt: skip


def compare_one(
    name: str,
    base_src: Path,
    head_src: Path,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    n: int | None = None,
    inject_percent: float = 0.0,
    loop: Callable[[], LoopCost] | None = None,
    measure: Measure = instructions.measure,
    all_top: bool = False,
) -> InstrComparison:
    """Count ``name`` on both sides, base first, one after the other, and judge it.

    With an injection the head's loop is sized from the base count, so head must wait for it;
    :func:`run_section` runs the two sides of an uninjected comparison at once instead.
    """
    started = time.perf_counter()
    n = n or WORKLOADS[name].default_n
    # With an injection the base runs the loop's empty shell (0 iterations): see LoopCost.
    base_env = {INJECT_ENV: f"{name}:0"} if inject_percent else None
    base = count_side(name, base_src, n, base_env, measure)
    env: dict[str, str] = {}
    iterations, added = 0, 0.0
    if inject_percent and base.count is not None:
        if loop is None:
            raise ValueError("inject_percent needs the loop's cost")
        cost = loop()
        iterations = cost.iterations_for(inject_percent, base.count.per_op)
        added = cost.adds(iterations)
        env[INJECT_ENV] = f"{name}:{iterations}"
    head = count_side(name, head_src, n, env or None, measure)
    return judge_sides(
        name, n, base, head, threshold=threshold, all_top=all_top, iterations=iterations,
        added=added, seconds=time.perf_counter() - started,
    )  # fmt: skip


#: Counts (each two valgrind processes) run at once: base and head of one workload together.
#: A count does not depend on the load (instructions-stability: a busy core moved none by more
#: than its repeat spread), so this only fills the cores the smaller batch leaves idle.
DEFAULT_JOBS = 2


def run_section(
    base_src: Path,
    head_src: Path,
    *,
    only: Sequence[str] = (),
    threshold: float = DEFAULT_THRESHOLD,
    inject_percent: float = 0.0,
    n: int | None = None,
    all_top: bool = False,
    jobs: int = DEFAULT_JOBS,
    progress: Callable[[str], None] = lambda message: None,
    measure: Measure = instructions.measure,
    profile: Profiler | None = attribution.profile,
) -> InstrSection:
    """Every selected workload, base vs head.

    Without an injection the counts run ``jobs`` at a time, in the order base, head of each
    workload, so the two sides of one workload run side by side; each verdict is
    :func:`judge_sides` on the same two counts as a serial run would take. With an injection
    each head waits for its base (:func:`compare_one`), one workload after another.
    """
    started = time.perf_counter()
    section = InstrSection(threshold=threshold)
    reason = instructions.available()
    if reason is not None:
        section.skipped = reason
        return section
    section.valgrind = instructions.valgrind_version()
    cost: list[LoopCost] = []

    def loop() -> LoopCost:
        # Measured once per gate, and only when an injection needs it.
        if not cost:
            cost.append(loop_cost(measure))
            progress(f"instructions: one injected loop iteration = {cost[0].per_iteration:g}")
        return cost[0]

    def report(result: InstrComparison) -> None:
        if profile is not None and result.verdict in ("regression", "improvement"):
            result = with_python_view(result, base_src, head_src, profile)
        ratio = "-" if math.isnan(result.ratio) else f"{result.ratio:.4f}"
        progress(
            f"instructions: {result.name}: base {result.base:.0f} head {result.head:.0f} per op, "
            f"ratio {ratio}, {result.verdict} ({result.seconds:.0f} s)"
        )
        section.comparisons.append(result)

    names = selected(only)
    if inject_percent:
        section.injected = (
            f"at least {inject_percent:g}% of each base count into head (a loop after each "
            "operation; the base runs it with 0 iterations)"
        )
        for name in names:
            result = compare_one(
                name, base_src, head_src, threshold=threshold, n=n,
                inject_percent=inject_percent, loop=loop, measure=measure, all_top=all_top,
            )  # fmt: skip
            report(result)
    else:
        for result in _concurrent(names, base_src, head_src, n, jobs, measure, threshold, all_top):
            report(result)
    section.seconds = time.perf_counter() - started
    return section


def _concurrent(
    names: Sequence[str],
    base_src: Path,
    head_src: Path,
    n: int | None,
    jobs: int,
    measure: Measure,
    threshold: float,
    all_top: bool,
) -> Iterator[InstrComparison]:
    """Both sides of every workload through one pool of ``jobs``; verdicts in workload order."""
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        pending = []
        for name in names:
            size = n or WORKLOADS[name].default_n
            sides = tuple(
                pool.submit(count_side, name, src, size, None, measure)
                for src in (base_src, head_src)
            )
            pending.append((name, size, sides))
        for name, size, (base_f, head_f) in pending:
            base, head = base_f.result(), head_f.result()
            yield judge_sides(
                name, size, base, head, threshold=threshold, all_top=all_top,
                seconds=max(base.seconds, head.seconds),
            )  # fmt: skip


Profiler = Callable[..., attribution.Profile]


def with_python_view(
    result: InstrComparison, base_src: Path, head_src: Path, profile: Profiler
) -> InstrComparison:
    """``result`` with the Python functions whose bytecodes per operation moved most.

    Natively (no valgrind), both sides one after the other; an attribution that fails leaves
    the verdict as it is and says why.
    """
    try:
        base = profile(result.name, result.n, library=base_src)
        head = profile(result.name, result.n, library=head_src)
    except RuntimeError as exc:
        return dataclasses.replace(result, python_note=f"no Python view: {_last_line(exc)}")
    rows = attribution.moved(base, head)
    return dataclasses.replace(
        result, python_top=tuple((r.function, r.inclusive, r.self_ops) for r in rows)
    )


def _last_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    found = [line for line in lines if _MISSING_API.search(line)]
    return (found or lines or ["(no message)"])[-1][:300]
