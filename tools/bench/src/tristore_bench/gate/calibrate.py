"""Measured trust in the gate: A/A false verdicts, detection of an injected slowdown, noise.

``tristore-bench gate --calibrate --runs N`` runs N gates with the *same* source on both sides
(A/A). With ``--json STATE`` it saves after every run and resumes from STATE when started again
(``--runs`` counts the runs in STATE too); ``--merge FILE`` pools another machine's or session's
runs of the same design (source, policy, injection). Any verdict other than "unchanged" is
false. With ``--inject 20 --target sqlite_write`` the
head side of each gate runs with the test-only slowdown switch (tests/perf/slowdown.py) on, and the
report gives how often the gate caught it, plus the ratio it measured (the slowdown as seen by
the benchmark, which is what "20%" has to mean for the detection rate to mean anything).

Three estimates of each rate are reported:

* **direct**: verdicts of the N real gate runs, with an exact (Clopper-Pearson) 95% interval.
  Honest but expensive: each run is a full gate, so "<= 1% false" cannot be *shown* by this
  alone in an afternoon (0 false in 30 runs only bounds the rate below 12%).
* **resampled**: 2000 synthetic gates per benchmark, each drawing its rounds at random (with
  replacement) from all rounds measured on each side across the N runs, judged by the same rule
  at the Bonferroni level alpha/m (m benchmarks), the strictest level Holm applies.
  It uses the measured noise, outliers included, but loses the pairing in time that the
  interleaving provides, so it is conservative for A/A (slow drifts count as noise here).
* **permuted** (A/A only): within each run, the 2R rounds are relabelled base/head at random
  (200 times per run), the same relabelling for every benchmark of a round, as the interleaved
  design makes them exchangeable. This keeps each run's own noise, the correlation between
  benchmarks measured in the same process, and gives the gate-level rate (any benchmark
  flagged) from thousands of synthetic gates.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tristore_bench.gate.stats import Comparison, Policy, compare, cv, json_safe, judge, measure

RESAMPLES = 2000
PERMUTATIONS = 200  # per run


@dataclass
class CalibrationRun:
    index: int
    seconds: float
    comparisons: list[Comparison]
    median_cvs: dict[str, list[float]] = field(default_factory=dict)  # per side, per benchmark

    @property
    def failed(self) -> bool:
        """Would this gate have exited 1."""
        return any(c.verdict == "regression" for c in self.comparisons)


@dataclass
class Calibration:
    policy: Policy
    rounds: int
    inject: float = 0.0
    target: str = ""
    source: str = ""
    runs: list[CalibrationRun] = field(default_factory=list)
    # name -> side -> all per-round values (policy quantile), and median-based values for CV
    pooled: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    median_cvs: dict[str, list[float]] = field(default_factory=dict)  # per run and side
    resample_seed: int = 20261122
    resamples: int = RESAMPLES
    _summary: tuple[tuple[int, bool], dict[str, Any]] | None = field(default=None, repr=False)

    def add(
        self,
        run: CalibrationRun,
        rounds_median: dict[str, dict[str, list[float]]],
    ) -> None:
        if not run.median_cvs:
            run.median_cvs = {
                name: [cv(values) for values in sides.values() if len(values) > 1]
                for name, sides in rounds_median.items()
            }
        self.runs.append(run)
        for c in run.comparisons:
            pool = self.pooled.setdefault(c.name, {"base": [], "head": []})
            pool["base"] += c.base
            pool["head"] += c.head
        for name, cvs in run.median_cvs.items():
            self.median_cvs.setdefault(name, []).extend(cvs)

    # -- state: resume and merge ---------------------------------------------------------------

    @classmethod
    def load(cls, path: Path) -> Calibration:
        """A calibration written by :meth:`write`: its runs, to resume or merge."""
        doc = json.loads(path.read_text())
        s = doc["summary"]
        cal = cls(
            Policy(**s["policy"]),
            int(s["rounds_per_side"]),
            float(s["inject_percent"]),
            str(s["target"]),
            str(s["source"]),
        )
        for run in doc["runs"]:
            comps = [_comparison(c) for c in run["comparisons"]]
            cvs = {k: list(v) for k, v in run.get("median_cvs", {}).items()}
            cal.add(CalibrationRun(int(run["index"]), float(run["seconds"]), comps, cvs), {})
        return cal

    def same_design(self, other: Calibration) -> str | None:
        """Why ``other``'s runs cannot be pooled with these (None: they can)."""
        mine = (self.policy, self.rounds, self.inject, self.target, self.source)
        theirs = (other.policy, other.rounds, other.inject, other.target, other.source)
        if mine == theirs:
            return None
        return (
            f"measured {other.source}, {other.inject:g}% into {other.target or '-'}, "
            f"{other.rounds} rounds, {other.policy}; this run: {self.source}, "
            f"{self.inject:g}% into {self.target or '-'}, {self.rounds} rounds, {self.policy}"
        )

    def merge(self, other: Calibration) -> None:
        """Add ``other``'s runs (same design: see :meth:`same_design`), numbered after ours."""
        why = self.same_design(other)
        if why is not None:
            raise ValueError(f"cannot merge: {why}")
        start = len(self.runs)
        for i, run in enumerate(other.runs):
            self.add(dataclasses.replace(run, index=start + i), {})

    # -- summaries ---------------------------------------------------------------------------

    def names(self) -> list[str]:
        return sorted({c.name for r in self.runs for c in r.comparisons})

    def per_benchmark(self, name: str, *, resample: bool = True) -> dict[str, Any]:
        comps = [c for r in self.runs for c in r.comparisons if c.name == name]
        judged = [c for c in comps if c.verdict in ("regression", "improvement", "unchanged")]
        inconclusive = sum(c.verdict == "inconclusive" for c in comps)
        is_target = bool(self.inject) and name.removeprefix("test_") == self.target
        regress = sum(c.verdict == "regression" for c in judged)
        faster = sum(c.verdict == "improvement" for c in judged)
        false = faster if is_target else regress + faster
        n = len(judged)
        out: dict[str, Any] = {
            "name": name,
            "runs": n,
            "target": is_target,
            "regression_verdicts": regress,
            "improvement_verdicts": faster,
            "false_verdicts": false,
            "inconclusive": inconclusive,
            "false_rate": false / n if n else math.nan,
            "false_rate_ci95": clopper_pearson(false, n),
            "median_ratio": statistics.median([c.ratio for c in judged]) if judged else math.nan,
            "cv_round_min": _median_cv(comps, "base", "head"),
            "cv_round_median": median_or_nan(self.median_cvs.get(name, [])),
        }
        if is_target:
            # Over every verdict: an inconclusive one is not a catch, and an "unchanged" one
            # is the miss the rule must never make.
            out["verdicts"] = len(comps)
            out["detected"] = regress
            out["called_unchanged"] = sum(c.verdict == "unchanged" for c in judged)
            out["detection_rate"] = regress / len(comps) if comps else math.nan
            out["detection_rate_ci95"] = clopper_pearson(regress, len(comps))
        pool = self.pooled.get(name)
        if resample and pool and len(pool["base"]) >= 2 and len(pool["head"]) >= 2:
            # One benchmark at a time, at the Bonferroni level alpha/m: the least Holm ever
            # grants a benchmark in a gate of m (conservative for detection).
            family = max(1, len(self.names()))
            policy = dataclasses.replace(self.policy, alpha=self.policy.alpha / family)
            out["resampled"] = resampled_rates(
                pool["base"],
                pool["head"],
                self.rounds,
                policy,
                self.resample_seed,
                self.resamples,
            )
        return out

    def summary(self, *, resample: bool = True) -> dict[str, Any]:
        """Rates and noise; ``resample`` adds the (slow: ~10 s) resampled estimates."""
        key = (len(self.runs), resample)
        if self._summary is not None and self._summary[0] == key:
            return self._summary[1]
        n = len(self.runs)
        failed = sum(r.failed for r in self.runs)
        rows = [self.per_benchmark(name, resample=resample) for name in self.names()]
        out: dict[str, Any] = {
            "runs": n,
            "rounds_per_side": self.rounds,
            "inject_percent": self.inject,
            "target": self.target,
            "source": self.source,
            "policy": self.policy.__dict__,
            "seconds_per_run": statistics.median([r.seconds for r in self.runs]) if n else 0,
            "gate_failed_runs": failed,
            "gate_failed_rate": failed / n if n else math.nan,
            "gate_failed_rate_ci95": clopper_pearson(failed, n),
            "benchmarks": rows,
            "verdicts": pooled_verdicts(rows),
        }
        if resample and not self.inject and self.runs:
            out["permuted"] = permuted_rates(self.runs, self.policy, self.resample_seed)
        if self.inject:
            need = detection_target(self.inject, self.policy)
            target_rows = [r for r in rows if r["target"]]
            out["detection_target"] = need
            out["meets_targets"] = bool(target_rows) and all(
                r["detection_rate"] >= need and not r["called_unchanged"] for r in target_rows
            )
        else:
            pooled = out["verdicts"]
            out["meets_targets"] = (
                pooled["verdicts"] > 0
                and pooled["false_rate"] <= 0.01
                and pooled["false_rate_ci95"][1] <= 0.02
            )
        self._summary = (key, out)
        return out

    def as_json(self, *, resample: bool = True) -> dict[str, Any]:
        return {
            "summary": self.summary(resample=resample),
            "runs": [
                {
                    "index": r.index,
                    "seconds": r.seconds,
                    "failed": r.failed,
                    "comparisons": [c.as_dict() for c in r.comparisons],
                    "median_cvs": r.median_cvs,
                }
                for r in self.runs
            ],
        }

    def write(self, path: Path, *, resample: bool = True) -> None:
        tmp = path.with_suffix(path.suffix + ".tmp")
        doc = self.as_json(resample=resample)
        tmp.write_text(json.dumps(json_safe(doc), indent=1))
        tmp.replace(path)


def _comparison(d: dict[str, Any]) -> Comparison:
    """A :class:`Comparison` back from :meth:`Comparison.as_dict` (NaN written as null)."""

    def num(key: str) -> float:
        value = d.get(key)
        return math.nan if value is None else float(value)

    return Comparison(
        name=d["name"],
        base=[float(x) for x in d["base_rounds_s"]],
        head=[float(x) for x in d["head_rounds_s"]],
        ratio=num("ratio"),
        low=num("ratio_low"),
        high=num("ratio_high"),
        p_slower=num("p_slower"),
        p_faster=num("p_faster"),
        verdict=d["verdict"],
        note=d.get("note", ""),
        p_slower_adj=num("p_slower_holm"),
        p_faster_adj=num("p_faster_holm"),
    )


def pooled_verdicts(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Every non-target benchmark's verdicts together: the false rate per measure type.

    The rate is over all verdicts, inconclusive ones included (the gate gave them, and none of
    them is false), and again over the judged ones only, the stricter reading.
    """
    others = [r for r in rows if not r["target"]]
    judged = sum(r["runs"] for r in others)
    inconclusive = sum(r["inconclusive"] for r in others)
    false = sum(r["false_verdicts"] for r in others)
    total = judged + inconclusive
    return {
        "verdicts": total,
        "judged": judged,
        "inconclusive": inconclusive,
        "false": false,
        "false_rate": false / total if total else math.nan,
        "false_rate_ci95": clopper_pearson(false, total),
        "false_rate_judged": false / judged if judged else math.nan,
        "false_rate_judged_ci95": clopper_pearson(false, judged),
    }


def detection_target(inject: float, policy: Policy) -> float:
    """The catch rate an injected slowdown must reach: 95% from twice the line, else 80%.

    A slowdown at the line itself (10% against ``threshold`` 1.10) sits where the rule's
    estimate needs half of it, so the noise decides more often; the rest must be inconclusive.
    """
    return 0.95 if 1 + inject / 100 >= 1 + 2 * (policy.threshold - 1) - 1e-9 else 0.80


def clopper_pearson(k: int, n: int) -> list[float]:
    """Exact (Clopper-Pearson) 95% interval for k successes out of n."""
    from scipy import stats

    if n == 0:
        return [math.nan, math.nan]
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return [float(ci.low), float(ci.high)]


def _median_cv(comps: Sequence[Comparison], *sides: str) -> float:
    values = [cv(getattr(c, side)) for c in comps for side in sides if len(getattr(c, side)) > 1]
    return statistics.median(values) if values else math.nan


def median_or_nan(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def resampled_rates(
    base_pool: Sequence[float],
    head_pool: Sequence[float],
    rounds: int,
    policy: Policy,
    seed: int,
    resamples: int = RESAMPLES,
) -> dict[str, float]:
    """Verdict rates of synthetic gates drawn from the measured rounds.

    ``aa``: both sides drawn from the base pool (false verdicts); ``ab``: base from base, head
    from head (with an injection: detection; without: another A/A estimate); ``shift20``: both
    from the base pool, head times exactly 1.20 (the power against a 20% slowdown as the
    benchmark sees it, at the measured noise); ``shift10``: the same at exactly 1.10, where a
    verdict of "unchanged" is a miss that the sequential rule must never give.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    base = np.asarray(base_pool, dtype=float)
    head = np.asarray(head_pool, dtype=float)

    def rate(a: Any, b: Any) -> tuple[float, float, float]:
        regress = faster = unchanged = 0
        for _ in range(resamples):
            x = rng.choice(a, rounds).tolist()
            y = rng.choice(b, rounds).tolist()
            verdict = compare("x", x, y, policy).verdict
            regress += verdict == "regression"
            faster += verdict == "improvement"
            unchanged += verdict == "unchanged"
        return regress / resamples, faster / resamples, unchanged / resamples

    aa_reg, aa_fast, _ = rate(base, base)
    ab_reg, ab_fast, _ = rate(base, head)
    shift_reg, _, _ = rate(base, base * 1.2)
    shift10_reg, _, shift10_unchanged = rate(base, base * 1.1)
    return {
        "resamples": resamples,
        "aa_regression": aa_reg,
        "aa_improvement": aa_fast,
        "ab_regression": ab_reg,
        "ab_improvement": ab_fast,
        "shift20_regression": shift_reg,
        "shift10_regression": shift10_reg,
        "shift10_unchanged": shift10_unchanged,
    }


def permuted_rates(
    runs: Sequence[CalibrationRun], policy: Policy, seed: int, permutations: int = PERMUTATIONS
) -> dict[str, Any]:
    """A/A verdict rates from random base/head relabellings of each run's own rounds."""
    import numpy as np

    rng = np.random.default_rng(seed)
    per_bench: dict[str, list[int]] = {}  # name -> [regressions, improvements, trials]
    gates = failed = 0
    for run in runs:
        comps = [c for c in run.comparisons if c.base and c.head]
        sizes = {(len(c.base), len(c.head)) for c in comps}
        if len(sizes) != 1:  # rounds not aligned across benchmarks: cannot relabel together
            continue
        n_base, n_head = sizes.pop()
        pooled = {c.name: np.asarray(c.base + c.head, dtype=float) for c in comps}
        for _ in range(permutations):
            order = rng.permutation(n_base + n_head)
            base_idx, head_idx = order[:n_base], order[n_base:]
            any_regression = False
            gate = judge(
                [
                    measure(name, values[base_idx].tolist(), values[head_idx].tolist())
                    for name, values in pooled.items()
                ],
                policy,
            )
            for c in gate:
                counts = per_bench.setdefault(c.name, [0, 0, 0])
                counts[0] += c.verdict == "regression"
                counts[1] += c.verdict == "improvement"
                counts[2] += 1
                any_regression |= c.verdict == "regression"
            gates += 1
            failed += any_regression
    return {
        "permutations_per_run": permutations,
        "gates": gates,
        "gate_failed": failed,
        "gate_failed_rate": failed / gates if gates else math.nan,
        "benchmarks": {
            name: {"regression": r / n, "improvement": i / n, "trials": n}
            for name, (r, i, n) in per_bench.items()
        },
    }


# -- report -----------------------------------------------------------------------------------


def _pct(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x * 100:.1f}%"


def _ci_text(ci: Sequence[float]) -> str:
    return "-" if math.isnan(ci[0]) else f"[{ci[0] * 100:.1f}, {ci[1] * 100:.1f}]%"


def _permuted(summary: dict[str, Any], name: str) -> str:
    bench = summary.get("permuted", {}).get("benchmarks", {}).get(name)
    return _pct(bench["regression"] + bench["improvement"]) if bench else "-"


def calibration_markdown(cal: Calibration, command: str) -> str:
    s = cal.summary()
    n = s["runs"]
    inject = bool(cal.inject)
    mode = f"{cal.inject:g}% slowdown injected into `{cal.target}` (head side)" if inject else "A/A"
    lines = [
        f"## tristore-bench gate calibration: {mode}",
        "",
        f"`{command}`",
        "",
        f"{n} gate runs x {cal.rounds} rounds per side · source: {cal.source} · median "
        f"{s['seconds_per_run']:.0f} s per run · policy: ratio ≥ {cal.policy.threshold:g} and "
        f"p < {cal.policy.alpha:g}, per-round "
        f"{'min' if cal.policy.quantile == 0 else f'p{cal.policy.quantile * 100:g}'}",
        "",
    ]
    failed = s["gate_failed_runs"]
    pooled = s["verdicts"]
    if inject:
        lines.append(
            f"Gate exit 1 in **{failed}/{n}** runs ({_pct(s['gate_failed_rate'])}, "
            f"95% CI {_ci_text(s['gate_failed_rate_ci95'])})."
        )
        for row in (r for r in s["benchmarks"] if r["target"]):
            lines.append(
                f"`{row['name'].removeprefix('test_')}`, over all {row['verdicts']} verdicts: "
                f"**caught {row['detected']}** ({_pct(row['detection_rate'])}, 95% CI "
                f"{_ci_text(row['detection_rate_ci95'])}; target ≥ "
                f"{_pct(s['detection_target'])}), inconclusive {row['inconclusive']}, "
                f"called unchanged {row['called_unchanged']} (must be 0)."
            )
    else:
        lines.append(
            f"False gate failures (exit 1 on identical code): **{failed}/{n}** "
            f"({_pct(s['gate_failed_rate'])}, 95% CI {_ci_text(s['gate_failed_rate_ci95'])})."
        )
        lines.append(
            f"All wall-time verdicts on identical code: **{pooled['false']} false in "
            f"{pooled['verdicts']}** ({_pct(pooled['false_rate'])}, 95% CI "
            f"{_ci_text(pooled['false_rate_ci95'])}; target ≤ 1.0%, upper bound ≤ 2.0%); "
            f"{pooled['inconclusive']} of them inconclusive, so {pooled['false']} false in "
            f"{pooled['judged']} judged ({_ci_text(pooled['false_rate_judged_ci95'])})."
        )
        perm = s.get("permuted")
        if perm and perm["gates"]:
            lines.append(
                f"Within-run permutations: **{perm['gate_failed']}/{perm['gates']}** synthetic "
                f"A/A gates failed ({_pct(perm['gate_failed_rate'])})."
            )
    lines += [
        "",
        "| benchmark | false verdicts | 95% CI | detected | 95% CI | median ratio | "
        "CV/round (min) | CV/round (median) | resampled: A/A false | resampled: detected | "
        "resampled: x1.20 caught | resampled: x1.10 caught | resampled: x1.10 called unchanged | "
        "permuted: A/A false |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in s["benchmarks"]:
        res = row.get("resampled", {})
        aa_false = (res.get("aa_regression", math.nan) or 0) + (res.get("aa_improvement", 0) or 0)
        detected = f"{row['detected']}/{row['verdicts']}" if row["target"] else "-"
        det_ci = _ci_text(row["detection_rate_ci95"]) if row["target"] else "-"
        res_det = _pct(res.get("ab_regression", math.nan)) if row["target"] and res else "-"
        lines.append(
            f"| `{row['name'].removeprefix('test_')}` | {row['false_verdicts']}/{row['runs']} | "
            f"{_ci_text(row['false_rate_ci95'])} | {detected} | {det_ci} | "
            f"{row['median_ratio']:.3f} | {_pct(row['cv_round_min'])} | "
            f"{_pct(row['cv_round_median'])} | {_pct(aa_false) if res else '-'} | {res_det} | "
            f"{_pct(res['shift20_regression']) if res else '-'} | "
            f"{_pct(res.get('shift10_regression', math.nan)) if res else '-'} | "
            f"{_pct(res.get('shift10_unchanged', math.nan)) if res else '-'} | "
            f"{_permuted(s, row['name'])} |"
        )
    lines += [
        "",
        "*false verdicts*: runs where the benchmark was called a regression or an improvement "
        "although the code on both sides is the same (for the injected target only "
        "'improvement' is false), out of the judged ones. *detected*: regression verdicts for "
        "the injected target out of all its verdicts, inconclusive ones included. "
        "*median ratio*: head/base as measured, i.e. the slowdown the "
        "benchmark really saw. *CV/round*: round-to-round coefficient of variation within one "
        "side of one run, of the per-round minimum (what the gate uses) and of the per-round "
        "median (for comparison). *resampled*: 2000 synthetic gates drawn from all measured "
        "rounds (see tristore_bench/gate/calibrate.py); *x1.20 caught*: the same with head "
        "drawn from the base rounds times exactly 1.20 (*x1.10*: 1.10, where 'unchanged' is a "
        "miss the rule must not make). *permuted*: random base/head "
        "relabellings of each A/A run's own rounds.",
        "",
    ]
    return "\n".join(lines)


def run_calibration(
    cal: Calibration,
    runs: int,
    one_run: Callable[[int], tuple[float, list[Comparison], dict[str, dict[str, list[float]]]]],
    *,
    json_path: Path | None = None,
    progress: Callable[[str], None] = lambda _m: None,
    deadline: float = math.inf,
) -> Calibration:
    """Run gates through ``one_run(i)`` until ``cal`` holds ``runs``; save after each run.

    A calibration loaded from its state file resumes where it stopped.
    """
    for i in range(len(cal.runs), runs):
        if time.monotonic() > deadline:
            progress(f"time limit reached at {i} runs")
            break
        seconds, comparisons, medians = one_run(i)
        cal.add(CalibrationRun(i, seconds, comparisons), medians)
        flagged = [
            f"{c.name.removeprefix('test_')}:{c.verdict}"
            for c in comparisons
            if c.verdict not in ("unchanged",)
        ]
        progress(f"run {i + 1}/{runs}: {seconds:.0f} s, {', '.join(flagged) or 'all unchanged'}")
        if json_path is not None:
            cal.write(json_path, resample=False)  # progress; the final write resamples
    return cal
