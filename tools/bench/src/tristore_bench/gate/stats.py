"""The PR gate's statistics: from per-round timings of base and head to a verdict.

Design (measured and argued in the module docstring of :mod:`tristore_bench.gate`):

* The unit of evidence is a **round**: one pytest process of one side. Samples *within* a process
  share its memory layout, its warm caches and whatever else the machine was doing during those
  few seconds, so they are not independent; a test on pooled raw samples (thousands of them)
  finds "significant" differences between two runs of the same commit all the time. Each round
  is summarised by one number per benchmark, and only rounds are compared.
* The per-round number is a **low quantile**, by default the minimum, of that round's
  per-operation sample times. On two shared cores other processes preempt ours at random; a
  preempted sample is slow for reasons unrelated to the code. The minimum is the cost of the
  operation when it ran undisturbed, which is what code changes move. Measured on this machine
  while other test suites ran (12+12 rounds of one commit), the round-to-round coefficient of
  variation was, for min / p10 / median / mean: SQLite write 5.6 / 12.3 / 15.9 / 14.3%, Kuzu
  read 2.6 / 2.6 / 5.0 / 7.2%, Redis pipeline 1.9 / 1.8 / 2.4 / 6.9%, pool checkout
  0.9 / 0.9 / 0.8 / 2.9%. The SQLite write hands off between two threads, so a busy machine
  shifts its whole distribution, p10 included, for seconds at a time; only the floor stays put.
  A slowdown in the code moves the floor one-for-one (an injected busy-wait is in every
  sample). What the floor cannot see is a rare slow operation (1 in 1000): a cost of choosing it.
* **Effect**: the Hodges-Lehmann estimate of the head/base ratio, i.e. the median of all
  pairwise ratios head_j / base_i (computed on logs). It is the estimator that goes with the
  Mann-Whitney test, and one disturbed round moves it by at most one pair's worth.
* **Significance**: one-sided Mann-Whitney U (exact when there are no ties), head > base for a
  regression. Rank-based: no normality assumption, and a single wild round cannot dominate.
* **Verdict**: ``regression`` only when ratio >= ``threshold`` (default 1.10) **and** the
  p-value, Holm-adjusted over the benchmarks of the gate, is < ``alpha`` (default 0.01).
  Significance alone would flag tiny real-but-irrelevant shifts (code layout, a 2% change);
  the ratio alone would flag noise. The threshold sits halfway (in log terms) between "no
  change" and the 20% slowdown the gate must catch, which balances the two error rates. The
  Holm adjustment makes alpha the chance of *any* false verdict in a gate of six benchmarks
  (a first calibration without it: 0.7% of permuted A/A gates failed, mostly on the two noisy
  cross-store benchmarks); with 10 rounds per side the exact test's smallest p-value is 5e-6,
  far below alpha/6.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

# numpy and scipy are imported inside the functions that use them: this module is imported by
# the ``tristore`` CLI at start-up, and scipy.stats alone takes ~0.5 s to import.

Verdict = Literal["regression", "improvement", "unchanged", "new", "removed", "skipped", "error"]


@dataclass(frozen=True)
class Policy:
    """The knobs of a verdict; defaults are what the calibration was run with."""

    threshold: float = 1.10  # minimum head/base time ratio for a regression (1/x: improvement)
    alpha: float = 0.01  # one-sided Mann-Whitney significance level
    quantile: float = 0.0  # per-round statistic: this quantile of the round's samples (0: min)
    # Below this the exact test cannot reach alpha/6 (six benchmarks, Holm): 1/924 at n=6.
    min_rounds: int = 6

    def __post_init__(self) -> None:
        if not self.threshold > 1.0:
            raise ValueError(f"threshold must be > 1, got {self.threshold}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if not 0 <= self.quantile <= 1:
            raise ValueError(f"quantile must be in [0, 1], got {self.quantile}")


def round_statistic(samples: Sequence[float], ops: int, quantile: float) -> float:
    """One round's number: ``quantile`` of its sample times, per operation (seconds)."""
    import numpy as np

    if not samples:
        raise ValueError("a round without samples")
    return float(np.quantile(np.asarray(samples, dtype=float), quantile)) / max(1, ops)


def hodges_lehmann_ratio(base: Sequence[float], head: Sequence[float]) -> float:
    """Median of all pairwise ratios head_j / base_i, computed on logs."""
    import numpy as np

    lb = np.log(np.asarray(base, dtype=float))
    lh = np.log(np.asarray(head, dtype=float))
    return float(math.exp(np.median(lh[:, None] - lb[None, :])))


def mann_whitney(base: Sequence[float], head: Sequence[float], alternative: str) -> float:
    """One-sided Mann-Whitney p-value; ``greater``: head tends to be slower than base."""
    from scipy import stats

    ties = len(set(base) | set(head)) < len(base) + len(head)
    method = "asymptotic" if ties or max(len(base), len(head)) > 50 else "exact"
    return float(stats.mannwhitneyu(head, base, alternative=alternative, method=method).pvalue)


def cv(values: Sequence[float]) -> float:
    """Coefficient of variation (sample stdev / mean); 0 for fewer than two values."""
    if len(values) < 2:
        return 0.0
    mean = statistics.fmean(values)
    return statistics.stdev(values) / mean if mean else 0.0


@dataclass
class Comparison:
    """One benchmark, base vs head."""

    name: str
    base: list[float] = field(default_factory=list)  # per-round statistic, seconds per op
    head: list[float] = field(default_factory=list)
    ratio: float = math.nan  # Hodges-Lehmann head/base
    p_slower: float = math.nan  # one-sided p, head slower
    p_faster: float = math.nan  # one-sided p, head faster
    verdict: Verdict = "unchanged"
    note: str = ""
    # Holm-adjusted over the benchmarks of one gate (see judge()); equal to the raw p alone.
    p_slower_adj: float = math.nan
    p_faster_adj: float = math.nan

    @property
    def base_s(self) -> float:
        return statistics.median(self.base) if self.base else math.nan

    @property
    def head_s(self) -> float:
        return statistics.median(self.head) if self.head else math.nan

    @property
    def p_value(self) -> float:
        """The adjusted p-value in the direction of the change (the smaller one)."""
        return min(self.p_slower_adj, self.p_faster_adj)

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "base_s": self.base_s,
            "head_s": self.head_s,
            "ratio": self.ratio,
            "p_slower": self.p_slower,
            "p_faster": self.p_faster,
            "p_slower_holm": self.p_slower_adj,
            "p_faster_holm": self.p_faster_adj,
            "verdict": self.verdict,
            "base_cv": cv(self.base),
            "head_cv": cv(self.head),
            "rounds": [len(self.base), len(self.head)],
            "base_rounds_s": self.base,
            "head_rounds_s": self.head,
            "note": self.note,
        }


def compare(
    name: str, base: Sequence[float], head: Sequence[float], policy: Policy | None = None
) -> Comparison:
    """One benchmark judged on its own (a family of one: see :func:`judge` for a gate)."""
    return judge([measure(name, base, head)], policy)[0]


def measure(name: str, base: Sequence[float], head: Sequence[float]) -> Comparison:
    """Ratio and raw one-sided p-values for one benchmark; the verdict comes from judge()."""
    result = Comparison(name, list(base), list(head))
    if not base and not head:
        result.verdict, result.note = "skipped", "not run on either side"
    elif not base:
        result.verdict, result.note = "new", "not in the base revision"
    elif not head:
        result.verdict, result.note = "removed", "skipped or absent in head"
    else:
        result.ratio = hodges_lehmann_ratio(base, head)
        result.p_slower = mann_whitney(base, head, "greater")
        result.p_faster = mann_whitney(base, head, "less")
    return result


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (same order as given)."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    m = len(pvalues)
    adjusted = [math.nan] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def judge(comparisons: Sequence[Comparison], policy: Policy | None = None) -> list[Comparison]:
    """Verdicts for one gate run: the benchmarks are one family.

    A gate that checks six benchmarks at 1% each would fail identical code up to 6% of the
    time; Holm's step-down adjustment (per direction) keeps the chance of *any* false verdict
    at ``alpha`` when the code is unchanged, and costs little power: a 20% slowdown at the
    measured noise gives p-values far below alpha/6.
    """
    policy = policy or Policy()
    comparisons = list(comparisons)
    judged = [
        c
        for c in comparisons
        if c.base and c.head and min(len(c.base), len(c.head)) >= policy.min_rounds
    ]
    for c in comparisons:
        if c.base and c.head and c not in judged:
            c.p_slower_adj, c.p_faster_adj = c.p_slower, c.p_faster
            c.verdict = "unchanged"
            c.note = f"fewer than {policy.min_rounds} rounds: no verdict possible"
    slower = holm([c.p_slower for c in judged])
    faster = holm([c.p_faster for c in judged])
    for c, p_slow, p_fast in zip(judged, slower, faster, strict=True):
        c.p_slower_adj, c.p_faster_adj = p_slow, p_fast
        if c.ratio >= policy.threshold and p_slow < policy.alpha:
            c.verdict = "regression"
        elif c.ratio <= 1 / policy.threshold and p_fast < policy.alpha:
            c.verdict = "improvement"
        else:
            c.verdict = "unchanged"
    return comparisons


def json_safe(value: Any) -> Any:
    """``value`` with NaN/inf floats as None and numpy scalars as Python ones (strict JSON)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and hasattr(value, "dtype"):  # a numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
