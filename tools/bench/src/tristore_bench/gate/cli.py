"""``tristore-bench gate``: a PR gate on pytest-benchmark fast checks that tells the truth.

What it does (``tristore-bench gate --base origin/main``):

1. extracts the base revision's ``src/`` (``git archive``) into a temporary directory; the head
   side is the working tree's ``src/`` (or ``--head REF``, extracted the same way);
2. runs HEAD's ``tests/perf`` (``pytest -m perf``) once per *round* per side, with
   ``PYTHONPATH`` pointing at that side's library, interleaved base/head/head/base/...; each
   round writes ``--benchmark-json`` with every raw sample;
3. reduces each round to one number per benchmark (its fastest sample per operation) and, at
   each look (8, 12, 16, 20 rounds per side by default), puts a distribution-free confidence
   interval on each benchmark's head/base ratio (Moses' interval, which goes with the
   Hodges-Lehmann estimate). **regression** when the interval lies above 1 and the estimate
   reaches sqrt(1.10); **unchanged** when the interval lies inside (1/1.10, 1.10); rounds go on
   until every verdict settles, and one still open when rounds or budget run out is
   **inconclusive**, never "unchanged". The confidence level is Bonferroni-corrected over both
   directions, every benchmark and every look, so identical code fails a gate with chance below
   ``--alpha`` (the rule and its derivation: :mod:`tristore_bench.gate.stats`);
4. with valgrind installed, after the rounds, counts the instructions of the CPU-bound hot paths
   on both sides at once (:mod:`tristore_bench.gate.instructions`, ``--instr-jobs``): a second
   table, exact where wall time is noisy; a
   count more than 1% above base (``--instr-threshold``) is a regression too;
5. writes a Markdown report (both tables, ``pytest-benchmark compare`` of the pooled samples,
   the top functions by instruction delta) and exits **1** on a regression, **3** on an
   inconclusive verdict with ``--fail-on-inconclusive`` (else 0), **2** when it cannot judge (a
   failing perf test, a bad ref, a timeout), **0** otherwise.

The wall-time rounds run the four single-store hot paths (``WALL_CHECKS``; ``--only`` picks
others); the instruction table counts every workload. A budget (default 170 s for the wall-time
rounds) stops adding rounds early, never below ``--min-rounds``, so that with the counts after
them the gate stays within five minutes on a loaded machine too. ``--calibrate``
measures the gate itself: ``--measure wall`` runs whole A/A (or injected) gates
(:mod:`tristore_bench.gate.calibrate`), ``--measure instructions`` counts the instruction
verdicts' A/A and injected detection (:mod:`tristore_bench.gate.calibrate_instructions`).
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import click

from tristore_bench import instructions as callgrind
from tristore_bench.asv import command_line
from tristore_bench.gate import calibrate_instructions as cal_instr
from tristore_bench.gate import instructions as instr
from tristore_bench.gate.calibrate import Calibration, calibration_markdown, run_calibration
from tristore_bench.gate.report import GateSummary, gate_markdown
from tristore_bench.gate.run import (
    WALL_CHECKS,
    GateError,
    Rounds,
    Side,
    checkout_src,
    describe,
    merge_json,
    pytest_benchmark_compare,
    repo_root,
    run_interleaved,
    slowdown_targets,
)
from tristore_bench.gate.stats import (
    Comparison,
    Policy,
    freeze,
    json_safe,
    judge,
    measure,
    settled,
)

# Exit codes. Inconclusive (not settled within the rounds or the budget) is reported in the
# table and exits 0 unless --fail-on-inconclusive; a regression always wins over it.
EXIT_OK, EXIT_REGRESSION, EXIT_ERROR, EXIT_INCONCLUSIVE = 0, 1, 2, 3


def comparisons(rounds: Rounds, policy: Policy, *, final: bool = True) -> list[Comparison]:
    """Every benchmark of one gate run, judged together (one family: see stats.judge)."""
    measured = [
        measure(
            name,
            rounds.per_round("base", name, policy.quantile),
            rounds.per_round("head", name, policy.quantile),
        )
        for name in rounds.names()
    ]
    return freeze(judge(measured, policy, final=final), rounds.frozen)


def settle_rule(policy: Policy) -> Callable[[Rounds], bool]:
    """For run_interleaved: at each look, stop once every benchmark's verdict is settled."""

    def done(rounds: Rounds) -> bool:
        n = min(len(rounds.rounds["base"]), len(rounds.rounds["head"]))
        return policy.is_look(n) and settled(comparisons(rounds, policy, final=False))

    # Only looks may settle a verdict: the error bound counts looks, not every pair.

    return done


def _inject_env(inject: float, target: str | None) -> dict[str, str]:
    if not inject:
        return {}
    if not target:
        raise click.UsageError("--inject needs --target")
    return {"TRISTORE_TEST_SLOWDOWN": f"{inject:g}", "TRISTORE_TEST_SLOWDOWN_TARGET": target}


@contextlib.contextmanager
def _source(ref: str | None, root: Path, src_dir: Path | None = None) -> Iterator[tuple[Path, str]]:
    """(src directory, description) of a ref, a directory, or the working tree."""
    if src_dir is not None:
        if not (src_dir / "tristore").is_dir():
            raise GateError(f"{src_dir} has no tristore package")
        yield src_dir.resolve(), f"directory {src_dir}"
        return
    if ref is None:
        try:
            sha = describe("HEAD", root)
        except GateError:
            sha = "no commit"
        yield root / "src", f"working tree at {sha}"
        return
    with checkout_src(ref, root) as src:
        yield src, describe(ref, root)


def _echo(message: str) -> None:
    click.echo(message, err=True)


@click.command("gate")
@click.option("--base", "base_ref", metavar="REF", help="Base revision (e.g. origin/main).")
@click.option(
    "--head", "head_ref", metavar="REF", help="Head revision (default: the working tree)."
)
@click.option(
    "--src",
    "src_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Head (and, with --calibrate, both sides): this directory's tristore package.",
)
@click.option(
    "--rounds",
    type=click.IntRange(2, 200),
    default=20,
    show_default=True,
    help="Most rounds (processes) per side; the gate stops earlier once every verdict settles.",
)
@click.option(
    "--min-rounds",
    type=click.IntRange(2, 200),
    default=8,
    show_default=True,
    help="Rounds per side before the first look.",
)
@click.option(
    "--look-every",
    type=click.IntRange(1, 200),
    default=4,
    show_default=True,
    help="Rounds per side between looks (each look costs confidence: Bonferroni).",
)
@click.option(
    "--fail-on-inconclusive",
    is_flag=True,
    help="Exit 3 when a benchmark is inconclusive (default: report it, exit 0 or 1).",
)
@click.option(
    "--budget",
    default=170.0,
    show_default=True,
    help="Seconds for all rounds of one gate; stops early (never below --min-rounds) to keep it.",
)
@click.option(
    "--threshold", default=1.10, show_default=True, help="The head/base ratio that must be seen."
)
@click.option(
    "--alpha", default=0.01, show_default=True, help="Chance of any false regression per gate."
)
@click.option("--quantile", default=0.0, show_default=True, help="Per-round statistic (0: min).")
@click.option(
    "--only",
    multiple=True,
    metavar="NAME",
    help="Only benchmarks matching (-k); by default the wall-time rounds run "
    f"{', '.join(WALL_CHECKS)} and the instruction table every workload.",
)
@click.option("--scale", default=1.0, show_default=True, help="Samples per benchmark, scaled.")
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the Markdown report (PR comment) here too.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the per-benchmark results (or the calibration) as JSON.",
)
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the per-round --benchmark-json files here.",
)
@click.option("--calibrate", is_flag=True, help="Measure the gate: A/A runs (plus --inject).")
@click.option(
    "--measure",
    "measure_kind",
    type=click.Choice(["wall", "instructions"]),
    default="wall",
    show_default=True,
    help="--calibrate: the wall-time verdicts (gate runs) or the instruction verdicts (counts).",
)
@click.option(
    "--levels",
    default="2,5",
    show_default=True,
    help="--calibrate --measure instructions: injected percents whose detection is measured.",
)
@click.option(
    "--merge",
    "merge_paths",
    multiple=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="--calibrate: pool this state file's runs or counts into --json's (repeatable).",
)
@click.option("--runs", default=10, show_default=True, help="Gate runs for --calibrate.")
@click.option("--max-minutes", default=0.0, help="--calibrate: stop after this long (0: none).")
@click.option(
    "--inject",
    default=0.0,
    help="Test only: slow head's --target by this percent (TRISTORE_TEST_SLOWDOWN).",
)
@click.option("--target", help="Hot path for --inject: one of TARGETS in tests/perf/slowdown.py.")
@click.option(
    "--instructions/--no-instructions",
    "instructions",
    default=True,
    show_default=True,
    help="Also compare callgrind instruction counts (skipped, with the reason, without valgrind).",
)
@click.option(
    "--instr-threshold",
    type=click.FloatRange(0.0, 100.0, min_open=True),
    default=instr.DEFAULT_THRESHOLD * 100,
    show_default=True,
    help="Percent change in instructions per operation that is a regression (or improvement).",
)
@click.option(
    "--instr-jobs",
    type=click.IntRange(1, 8),
    default=instr.DEFAULT_JOBS,
    show_default=True,
    help="Instruction counts run at once (2: base and head of a workload side by side).",
)
@click.option(
    "--inject-instructions",
    "inject_instructions",
    type=click.FloatRange(0.0, 1000.0),
    default=0.0,
    metavar="PCT",
    help="Test only: add PCT% of each base count to head, as a loop (TRISTORE_BENCH_INJECT).",
)
def command(
    base_ref: str | None,
    head_ref: str | None,
    src_dir: Path | None,
    rounds: int,
    min_rounds: int,
    look_every: int,
    fail_on_inconclusive: bool,
    budget: float,
    threshold: float,
    alpha: float,
    quantile: float,
    only: Sequence[str],
    scale: float,
    report_path: Path | None,
    json_path: Path | None,
    keep: Path | None,
    calibrate: bool,
    measure_kind: str,
    levels: str,
    merge_paths: Sequence[Path],
    runs: int,
    max_minutes: float,
    inject: float,
    target: str | None,
    instructions: bool,
    instr_threshold: float,
    instr_jobs: int,
    inject_instructions: float,
) -> None:
    """Compare the perf suite of --base and head; exit 1 on a real regression.

    With --calibrate: run the gate on identical code RUNS times and report how often it
    judged wrongly (and, with --inject/--target, how often it caught the injected slowdown).
    """
    # SIGTERM (a CI cancel, a kill) unwinds like Ctrl-C: the round's pytest process is killed
    # and the temporary trees removed, instead of a round that runs on orphaned.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        policy = Policy(
            threshold=threshold,
            alpha=alpha,
            quantile=quantile,
            min_rounds=min_rounds,
            max_rounds=rounds,
            look_every=look_every,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    env = _inject_env(inject, target)
    opts = Options(
        base_ref, head_ref, src_dir, policy, rounds, budget, tuple(only), scale, env,
        inject, target or "", report_path, json_path, runs, max_minutes, command_line("gate"),
        fail_on_inconclusive, instructions, instr_threshold / 100, inject_instructions,
        instr_jobs,
    )  # fmt: skip
    try:
        root = repo_root()
        tests = root / "tests" / "perf"
        if not tests.is_dir():
            raise GateError(f"{tests} not found: run the gate from a tristore checkout")
        if target is not None and target not in (known := slowdown_targets(tests)):
            raise click.BadParameter(
                f"{target!r}: expected one of {', '.join(known)}", param_hint="--target"
            )
        with contextlib.ExitStack() as stack:
            workdir = keep or Path(stack.enter_context(tempfile.TemporaryDirectory()))
            workdir.mkdir(parents=True, exist_ok=True)
            if calibrate and measure_kind == "instructions":
                code = _calibrate_instructions(opts, root, _levels(levels), merge_paths)
            elif calibrate:
                code = _calibrate(opts, root, tests, workdir, merge_paths)
            elif base_ref is None:
                raise click.UsageError("--base REF is required (or --calibrate)")
            else:
                code = _gate(opts, root, tests, workdir)
    except GateError as exc:
        _echo(f"tristore-bench gate: error: {exc}")
        if report_path is not None:
            report_path.write_text(f"## tristore perf gate: ⚠️ could not judge\n\n```\n{exc}\n```\n")
        sys.exit(EXIT_ERROR)
    sys.exit(code)


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


@dataclass(frozen=True)
class Options:
    base_ref: str | None
    head_ref: str | None
    src_dir: Path | None
    policy: Policy
    rounds: int
    budget: float
    only: tuple[str, ...]
    scale: float
    env: dict[str, str]
    inject: float
    target: str
    report_path: Path | None
    json_path: Path | None
    runs: int
    max_minutes: float
    argv: str
    fail_on_inconclusive: bool = False
    instructions: bool = True
    instr_threshold: float = instr.DEFAULT_THRESHOLD
    inject_instructions: float = 0.0  # percent of each base count, head only (test only)
    instr_jobs: int = instr.DEFAULT_JOBS

    @property
    def wall_only(self) -> tuple[str, ...]:
        """The perf checks of the wall-time rounds: --only's, or WALL_CHECKS (with the
        injection's target, which a calibration must run)."""
        if self.only:
            return self.only
        return tuple(dict.fromkeys([*WALL_CHECKS, *filter(None, [self.target])]))


def _gate(opts: Options, root: Path, tests: Path, workdir: Path) -> int:
    policy, inject, target = opts.policy, opts.inject, opts.target
    report_path, json_path = opts.report_path, opts.json_path
    start = time.perf_counter()
    with (
        _source(opts.base_ref, root) as (base_src, base_desc),
        _source(opts.head_ref, root, opts.src_dir) as (head_src, head_desc),
    ):
        base = Side("base", base_src, base_desc)
        head = Side("head", head_src, head_desc, opts.env)
        _echo(f"gate: base {base_desc} vs head {head_desc}, {opts.rounds} rounds per side")
        measured = run_interleaved(
            base, head, rounds=opts.rounds, tests=tests, root=root, workdir=workdir,
            budget_s=opts.budget, min_rounds=policy.min_rounds, only=opts.wall_only,
            scale=opts.scale, progress=_echo, settled=settle_rule(policy),
        )  # fmt: skip
        # After the wall-time rounds, never beside them: valgrind would take the cores they time.
        # Base and head counts run side by side (a count does not depend on the load).
        section: instr.InstrSection | None = None
        if opts.instructions:
            section = instr.run_section(
                base_src, head_src, only=opts.only, threshold=opts.instr_threshold,
                inject_percent=opts.inject_instructions, jobs=opts.instr_jobs, progress=_echo,
            )  # fmt: skip
    comps = comparisons(measured, policy)
    base_json = merge_json(measured.rounds["base"], workdir / "base.json")
    head_json = merge_json(measured.rounds["head"], workdir / "head.json")
    notes = [measured.stopped_early] if measured.stopped_early else []
    if measured.settled_after:
        notes.append(f"every verdict settled after {measured.settled_after} rounds per side")
    skipped = {**_skips(measured, "base"), **_skips(measured, "head")}
    notes += [f"skipped: {where}: {why}" for where, why in sorted(skipped.items())]
    failed_on_base = sorted({t for r in measured.rounds["base"] for t in r.failed})
    notes += [f"failed on base (left out there): {test}" for test in failed_on_base]
    summary = GateSummary(
        base=base_desc,
        head=head_desc,
        rounds=(len(measured.rounds["base"]), len(measured.rounds["head"])),
        seconds=time.perf_counter() - start,
        policy=policy,
        comparisons=comps,
        compare_text=pytest_benchmark_compare(base_json, head_json),
        notes=notes,
        injected=f"{inject:g}% on {target}" if inject else "",
        instructions=section,
    )
    markdown = gate_markdown(summary)
    if report_path is not None:
        report_path.write_text(markdown)
    click.echo(markdown)
    if json_path is not None:
        json_path.write_text(
            json.dumps(
                json_safe(
                    {
                        "base": base_desc,
                        "head": head_desc,
                        "seconds": summary.seconds,
                        "policy": policy.__dict__,
                        "exit_code": _exit_code(summary, opts),
                        "benchmarks": [c.as_dict() for c in comps],
                        "instructions": section.as_list() if section else [],
                    }
                ),
                indent=1,
            )
        )
    return _exit_code(summary, opts)


def _exit_code(summary: GateSummary, opts: Options) -> int:
    if summary.regressions or summary.instr_regressions:
        return EXIT_REGRESSION
    if summary.instructions is not None and summary.instructions.errors:
        return EXIT_ERROR  # a workload head cannot run (or base, other than a missing API)
    if opts.fail_on_inconclusive and summary.inconclusive:
        return EXIT_INCONCLUSIVE
    return EXIT_OK


def _levels(text: str) -> tuple[float, ...]:
    try:
        levels = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise click.BadParameter(
            f"{text!r}: expected percents like 2,5", param_hint="--levels"
        ) from exc
    if not levels or not all(0 < x <= 1000 for x in levels):
        raise click.BadParameter(f"{text!r}: each level in (0, 1000]", param_hint="--levels")
    return levels


def _calibrate_instructions(
    opts: Options, root: Path, levels: tuple[float, ...], merge_paths: Sequence[Path]
) -> int:
    """Instruction verdicts of one library, resumable through ``--json`` (the state file)."""
    reason = callgrind.available()
    if reason is not None:
        raise GateError(f"instruction calibration needs valgrind: {reason}")
    deadline = time.monotonic() + opts.max_minutes * 60 if opts.max_minutes else math.inf
    state = opts.json_path
    with _source(opts.head_ref, root, opts.src_dir) as (src, desc):
        fresh = cal_instr.InstrCalibration(
            source=desc, valgrind=callgrind.valgrind_version() or "valgrind (unknown)",
            threshold=opts.instr_threshold, levels=levels,
        )  # fmt: skip
        try:
            cal = cal_instr.InstrCalibration.load(state) if state and state.exists() else fresh
            cal.threshold = fresh.threshold  # verdicts at this run's --instr-threshold
            for path in merge_paths:
                cal.merge(cal_instr.InstrCalibration.load(path))
            if (cal.source, cal.valgrind, cal.levels) != (
                fresh.source,
                fresh.valgrind,
                fresh.levels,
            ):
                raise cal_instr.CalibrationMismatch(
                    f"{state} counted {cal.source} ({cal.valgrind}); this run counts {desc}"
                )
        except (cal_instr.CalibrationMismatch, KeyError, ValueError) as exc:
            raise GateError(f"calibration state: {exc}") from exc
        _echo(f"calibrate instructions: {desc}, {opts.runs} rounds, levels {levels}")
        cal_instr.run(
            cal, opts.runs, src, workloads=instr.selected(opts.only), state=state,
            progress=_echo, deadline=deadline,
        )  # fmt: skip
    markdown = cal_instr.markdown(cal, opts.argv)
    if opts.report_path is not None:
        opts.report_path.write_text(markdown)
    if state is not None:
        cal.write(state)
    click.echo(markdown)
    summary = cal.summary()
    caught_all = all(
        d["same_round_caught"] == d["same_round"] for d in summary["detection"].values()
    )
    return EXIT_OK if summary["aa_false"] == 0 and caught_all else EXIT_REGRESSION


def _skips(measured: Rounds, side: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for r in measured.rounds[side]:
        out.update({f"{side} {where}": why for where, why in r.skipped.items()})
    return out


def _calibrate(
    opts: Options, root: Path, tests: Path, workdir: Path, merge_paths: Sequence[Path]
) -> int:
    """Wall-time verdicts of A/A (or injected) gates, resumable through ``--json``."""
    policy, rounds = opts.policy, opts.rounds
    deadline = time.monotonic() + opts.max_minutes * 60 if opts.max_minutes else math.inf
    state = opts.json_path
    with _source(opts.head_ref, root, opts.src_dir) as (src, desc):
        cal = Calibration(policy, rounds, opts.inject, opts.target, desc)
        try:
            if state is not None and state.exists():
                saved = Calibration.load(state)
                # A state that holds --runs already is only reported again (nothing is measured,
                # so this source need not be the one measured); otherwise runs are added to it.
                complete = len(saved.runs) >= opts.runs and not merge_paths
                if not complete and (why := cal.same_design(saved)) is not None:
                    raise ValueError(f"{state} does not match this run: {why}")
                cal = saved
            for path in merge_paths:
                cal.merge(Calibration.load(path))
        except (KeyError, TypeError, ValueError) as exc:
            raise GateError(f"calibration state: {exc}") from exc
        if cal.runs:
            _echo(f"calibrate: resuming at {len(cal.runs)} of {opts.runs} runs")
        base = Side("base", src, desc)
        head = Side("head", src, desc, opts.env)

        def one_run(i: int) -> tuple[float, list[Comparison], dict[str, dict[str, list[float]]]]:
            run_dir = workdir / f"run-{i:03d}"
            run_dir.mkdir(parents=True, exist_ok=True)
            measured = run_interleaved(
                base, head, rounds=rounds, tests=tests, root=root, workdir=run_dir,
                budget_s=opts.budget, min_rounds=policy.min_rounds, only=opts.wall_only,
                scale=opts.scale, settled=settle_rule(policy),
            )  # fmt: skip
            medians = {
                name: {s: measured.per_round(s, name, 0.5) for s in ("base", "head")}
                for name in measured.names()
            }
            return measured.seconds, comparisons(measured, policy), medians

        run_calibration(
            cal, opts.runs, one_run, json_path=opts.json_path, progress=_echo, deadline=deadline
        )
    markdown = calibration_markdown(cal, opts.argv)
    if opts.report_path is not None:
        opts.report_path.write_text(markdown)
    if opts.json_path is not None:
        cal.write(opts.json_path)
    click.echo(markdown)
    return EXIT_OK if cal.summary()["meets_targets"] else EXIT_REGRESSION
