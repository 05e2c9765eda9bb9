"""Measured trust in the gate's instruction verdicts: A/A false verdicts and injected detection.

``tristore-bench gate --calibrate --measure instructions --runs R --json STATE`` counts every
instruction workload of one fixed library R times in *rounds*. Each round counts each workload
in four variants, one after another:

* ``plain``: exactly what the gate counts (no injection);
* ``zero``: the injection loop's empty shell (0 iterations), what the gate's base side runs
  when ``--inject-instructions`` is on;
* ``inject:P`` for each level P (default 2 and 5): the loop with enough iterations to add at
  least P% of the workload's first ``zero`` count, as ``--inject-instructions P`` does.

Every count is a separate pair of valgrind processes, so two counts are as independent as a
base and a head of a real gate. The verdicts are the gate's own rule
(:func:`tristore_bench.gate.instructions.verdict`, default threshold 2%):

* **A/A** (``plain`` vs ``plain``, ``zero`` vs ``zero``): every pair of counts is a verdict; any
  verdict other than "unchanged" is false. All pairs share counts, so the exact (Clopper-Pearson)
  interval is also given over the disjoint pairs (round 1 vs 2, 3 vs 4, ...), which are
  independent;
* **detection** (``inject:P`` vs ``zero``): the injected count of a round against the ``zero``
  count of the same round (independent across rounds), and, as a second figure, against the
  ``zero`` counts of every round.

The state file is rewritten after every count, so a run stopped at any point resumes where it
stopped (same ``--json``), and ``--merge`` adds the counts of other state files of the same
library and valgrind.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tristore_bench import instructions
from tristore_bench.gate.calibrate import clopper_pearson, median_or_nan
from tristore_bench.gate.instructions import (
    DEFAULT_THRESHOLD,
    LoopCost,
    Measure,
    loop_cost,
    verdict,
)
from tristore_bench.gate.stats import json_safe
from tristore_bench.workloads import INJECT_ENV, WORKLOADS

FORMAT = "tristore-bench instruction calibration 1"
DEFAULT_LEVELS = (2.0, 5.0)
# Thresholds whose verdicts are also reported: the counts do not depend on the threshold, so one
# calibration shows where A/A false verdicts start and where injected ones stop being caught.
SWEEP = (0.005, 0.0075, 0.01, 0.015, 0.02)
PLAIN, ZERO = "plain", "zero"


class CalibrationMismatch(ValueError):
    """Two state files that did not count the same library with the same valgrind."""


def inject_variant(level: float) -> str:
    return f"inject:{level:g}"


@dataclass
class InstrCalibration:
    """Counts per workload and variant, in round order; everything else is derived."""

    source: str
    valgrind: str
    threshold: float = DEFAULT_THRESHOLD
    levels: tuple[float, ...] = DEFAULT_LEVELS
    loop_per_iteration: float = math.nan
    # workload -> variant -> per-operation counts, one per round that reached it
    counts: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    # workload -> variant -> the iterations that variant injected (same for every round)
    iterations: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def variants(self) -> list[str]:
        return [PLAIN, ZERO, *(inject_variant(level) for level in self.levels)]

    def rounds_done(self, workload: str) -> int:
        """Complete rounds of a workload (every variant counted)."""
        per = self.counts.get(workload, {})
        return min((len(per.get(v, [])) for v in self.variants), default=0)

    def add(self, workload: str, variant: str, per_op: float) -> None:
        self.counts.setdefault(workload, {}).setdefault(variant, []).append(per_op)

    # -- persistence ---------------------------------------------------------------------------

    def as_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "source": self.source,
            "valgrind": self.valgrind,
            "threshold": self.threshold,
            "levels": list(self.levels),
            "loop_per_iteration": self.loop_per_iteration,
            "iterations": self.iterations,
            "seconds": self.seconds,
            "counts": self.counts,
            "summary": self.summary(),
            "threshold_sweep": [self.summary(t) for t in SWEEP if t != self.threshold],
        }

    def write(self, path: Path) -> None:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(json_safe(self.as_json()), indent=1))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> InstrCalibration:
        doc = json.loads(path.read_text())
        if doc.get("format") != FORMAT:
            raise CalibrationMismatch(f"{path}: not an instruction calibration ({FORMAT!r})")
        return cls(
            source=doc["source"],
            valgrind=doc["valgrind"],
            threshold=float(doc["threshold"]),
            levels=tuple(float(x) for x in doc["levels"]),
            loop_per_iteration=float(doc["loop_per_iteration"] or math.nan),
            counts={
                w: {v: [float(x) for x in c] for v, c in vs.items()}
                for w, vs in doc["counts"].items()
            },
            iterations={w: dict(vs) for w, vs in doc.get("iterations", {}).items()},
            seconds=float(doc.get("seconds", 0.0)),
        )

    def merge(self, other: InstrCalibration) -> None:
        """Add ``other``'s counts (later rounds): same library, valgrind and levels.

        The threshold is not part of the identity: counts do not depend on it, verdicts do.
        """
        mine = (self.source, self.valgrind, self.levels)
        theirs = (other.source, other.valgrind, other.levels)
        if mine != theirs:
            raise CalibrationMismatch(f"cannot merge {theirs} into {mine}")
        for workload, variants in other.counts.items():
            for variant, values in variants.items():
                self.counts.setdefault(workload, {}).setdefault(variant, []).extend(values)
        for workload, its in other.iterations.items():
            known = self.iterations.setdefault(workload, {})
            for variant, n in its.items():
                if known.setdefault(variant, n) != n:
                    raise CalibrationMismatch(
                        f"{workload} {variant}: {n} injected iterations there, "
                        f"{known[variant]} here"
                    )
        self.seconds += other.seconds

    # -- verdicts --------------------------------------------------------------------------------

    def summary(self, threshold: float | None = None) -> dict[str, Any]:
        """Verdicts at ``threshold`` (default: the calibration's own)."""
        threshold = self.threshold if threshold is None else threshold
        rows = [self.workload_summary(w, threshold) for w in sorted(self.counts)]
        aa_all = sum(r["aa_pairs"] for r in rows)
        aa_false = sum(r["aa_false"] for r in rows)
        aa_disjoint = sum(r["aa_disjoint_pairs"] for r in rows)
        aa_disjoint_false = sum(r["aa_disjoint_false"] for r in rows)
        out: dict[str, Any] = {
            "threshold": threshold,
            "aa_verdicts": aa_all,
            "aa_false": aa_false,
            "aa_false_ci95": clopper_pearson(aa_false, aa_all),
            "aa_disjoint_verdicts": aa_disjoint,
            "aa_disjoint_false": aa_disjoint_false,
            "aa_disjoint_false_ci95": clopper_pearson(aa_disjoint_false, aa_disjoint),
            "detection": {},
            "workloads": rows,
        }
        for level in self.levels:
            key = inject_variant(level)
            same = [r["detection"][key] for r in rows if key in r["detection"]]
            caught = sum(d["same_round_caught"] for d in same)
            n = sum(d["same_round"] for d in same)
            caught_all = sum(d["all_pairs_caught"] for d in same)
            n_all = sum(d["all_pairs"] for d in same)
            out["detection"][key] = {
                "same_round": n,
                "same_round_caught": caught,
                "same_round_rate_ci95": clopper_pearson(caught, n),
                "all_pairs": n_all,
                "all_pairs_caught": caught_all,
            }
        return out

    def workload_summary(self, workload: str, threshold: float | None = None) -> dict[str, Any]:
        per = self.counts.get(workload, {})
        threshold = self.threshold if threshold is None else threshold
        aa_pairs = aa_false = disjoint = disjoint_false = 0
        spreads: dict[str, float] = {}
        for variant in (PLAIN, ZERO):
            values = per.get(variant, [])
            if values:
                spreads[variant] = (max(values) - min(values)) / min(values)
            for a, b in itertools.combinations(values, 2):
                aa_pairs += 1
                aa_false += verdict(a, b, threshold) != "unchanged"
            for a, b in zip(values[0::2], values[1::2], strict=False):
                disjoint += 1
                disjoint_false += verdict(a, b, threshold) != "unchanged"
        zeros = per.get(ZERO, [])
        detection: dict[str, Any] = {}
        for level in self.levels:
            key = inject_variant(level)
            injected = per.get(key, [])
            if not injected or not zeros:
                continue
            same = list(zip(zeros, injected, strict=False))
            ratios = [head / base for base, head in same]
            detection[key] = {
                "iterations": self.iterations.get(workload, {}).get(key, 0),
                "same_round": len(same),
                "same_round_caught": sum(verdict(b, h, threshold) == "regression" for b, h in same),
                "all_pairs": len(zeros) * len(injected),
                "all_pairs_caught": sum(
                    verdict(b, h, threshold) == "regression" for b in zeros for h in injected
                ),
                "ratio_min": min(ratios),
                "ratio_median": median_or_nan(ratios),
            }
        return {
            "workload": workload,
            "rounds": self.rounds_done(workload),
            "per_op_median": median_or_nan(per.get(PLAIN, []) or zeros),
            "spread": spreads,
            "aa_pairs": aa_pairs,
            "aa_false": aa_false,
            "aa_disjoint_pairs": disjoint,
            "aa_disjoint_false": disjoint_false,
            "detection": detection,
        }


def _variant_env(cal: InstrCalibration, workload: str, variant: str) -> dict[str, str] | None:
    if variant == PLAIN:
        return None
    if variant == ZERO:
        return {INJECT_ENV: f"{workload}:0"}
    return {INJECT_ENV: f"{workload}:{cal.iterations[workload][variant]}"}


def run(
    cal: InstrCalibration,
    rounds: int,
    library: Path,
    *,
    workloads: Iterable[str],
    state: Path | None = None,
    measure: Measure = instructions.measure,
    progress: Callable[[str], None] = lambda _m: None,
    deadline: float = math.inf,
) -> InstrCalibration:
    """Count until every workload has ``rounds`` complete rounds (resuming a partial one)."""
    names = list(workloads)
    measure = retrying(measure, progress)
    if math.isnan(cal.loop_per_iteration):
        cal.loop_per_iteration = loop_cost(measure).per_iteration
        progress(f"one injected loop iteration = {cal.loop_per_iteration:g} instructions")
    for round_index in range(rounds):
        for workload in names:
            for variant in cal.variants:
                if len(cal.counts.get(workload, {}).get(variant, [])) > round_index:
                    continue  # counted before the resume
                if time.monotonic() > deadline:
                    progress("time limit reached")
                    return cal
                its = cal.iterations.setdefault(workload, {})
                if variant.startswith("inject:") and variant not in its:
                    # The gate's rule (LoopCost.iterations_for), on this workload's first count.
                    base = cal.counts[workload][ZERO][0]
                    level = float(variant.split(":", 1)[1])
                    its[variant] = LoopCost(cal.loop_per_iteration).iterations_for(level, base)
                started = time.perf_counter()
                counted = measure(
                    workload, WORKLOADS[workload].default_n, library=library,
                    env=_variant_env(cal, workload, variant),
                )  # fmt: skip
                cal.seconds += time.perf_counter() - started
                cal.add(workload, variant, counted.per_op)
                progress(
                    f"round {round_index + 1}/{rounds} {workload} {variant}: "
                    f"{counted.per_op:.1f} per op ({time.perf_counter() - started:.0f} s)"
                )
                if state is not None:
                    cal.write(state)
    return cal


ATTEMPTS = 3
RETRY_WAIT_S = 5.0


def retrying(measure: Measure, progress: Callable[[str], None]) -> Measure:
    """``measure``, counted again when a run fails (a store timing out under valgrind on a
    loaded machine), up to :data:`ATTEMPTS` times. A failed run has no count: never a verdict."""
    from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_fixed

    def counted(workload: str, n: int | None = None, **options: Any) -> Any:
        for attempt in Retrying(
            stop=stop_after_attempt(ATTEMPTS),
            wait=wait_fixed(RETRY_WAIT_S),
            retry=retry_if_exception_type(RuntimeError),
            before_sleep=lambda state: progress(
                f"{workload}: count failed ({_last_line(state.outcome)}), counting again"
            ),
            reraise=True,
        ):
            with attempt:
                return measure(workload, n, **options)
        raise AssertionError("unreachable")  # pragma: no cover

    return counted


def _last_line(outcome: Any) -> str:
    lines = str(outcome.exception() if outcome is not None else "").splitlines() or [""]
    return lines[-1][:200]


def markdown(cal: InstrCalibration, command: str) -> str:
    s = cal.summary()
    pct = lambda x: "-" if x is None or math.isnan(x) else f"{100 * x:.2f}%"  # noqa: E731
    ci = lambda c: f"[{pct(c[0])}, {pct(c[1])}]"  # noqa: E731
    lines = [
        "## Instruction verdicts: calibration",
        "",
        f"`{command}`",
        "",
        f"Library: {cal.source}; valgrind {cal.valgrind}; threshold {100 * cal.threshold:g}%; "
        f"one injected loop iteration = {cal.loop_per_iteration:.1f} instructions; "
        f"{cal.seconds / 60:.0f} min of counting.",
        "",
        f"**A/A**: {s['aa_false']} false verdicts in {s['aa_verdicts']} (all pairs, 95% CI "
        f"{ci(s['aa_false_ci95'])}); {s['aa_disjoint_false']} in {s['aa_disjoint_verdicts']} "
        f"independent (disjoint) pairs, 95% CI {ci(s['aa_disjoint_false_ci95'])}.",
        "",
    ]
    for key, d in s["detection"].items():
        lines.append(
            f"**{key}%**: caught {d['same_round_caught']} of {d['same_round']} same-round pairs "
            f"(95% CI {ci(d['same_round_rate_ci95'])}), {d['all_pairs_caught']} of "
            f"{d['all_pairs']} over all pairs."
        )
    lines += ["", "Threshold sweep (the same counts, judged at each threshold):", ""]
    lines += [
        "| threshold | A/A false / verdicts |"
        + "".join(f" {inject_variant(x)}% caught (same round) |" for x in cal.levels),
        "|---|---|" + "---|" * len(cal.levels),
    ]
    for t in sorted({*SWEEP, cal.threshold}):
        sw = cal.summary(t)
        cells = [f"{100 * t:g}%", f"{sw['aa_false']} / {sw['aa_verdicts']}"]
        for level in cal.levels:
            d = sw["detection"].get(inject_variant(level))
            cells.append(f"{d['same_round_caught']} / {d['same_round']}" if d else "-")
        lines.append("| " + " | ".join(cells) + " |")
    header = "| workload | rounds | per op | spread plain / zero | A/A false / pairs |"
    header += "".join(f" {inject_variant(x)} caught (min ratio) |" for x in cal.levels)
    lines += ["", header, "|" + "---|" * (5 + len(cal.levels))]
    for r in s["workloads"]:
        spread = " / ".join(pct(r["spread"].get(v, math.nan)) for v in (PLAIN, ZERO))
        cells = [
            r["workload"], str(r["rounds"]), f"{r['per_op_median']:.0f}", spread,
            f"{r['aa_false']} / {r['aa_pairs']}",
        ]  # fmt: skip
        for level in cal.levels:
            d = r["detection"].get(inject_variant(level))
            cells.append(
                f"{d['same_round_caught']}/{d['same_round']} ({d['ratio_min']:.4f})" if d else "-"
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
