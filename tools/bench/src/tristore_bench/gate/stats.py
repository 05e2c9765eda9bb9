"""Every verdict the tooling gives on "slower": per-round timings (the wall-time gate,
``tristore-bench compare``) and deterministic counts (the instruction gate).

The library's own baseline check (:meth:`tristore.monitor.Baseline.compare`) is for users' p99
budgets and stays in the library, which never imports the tooling.

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
* **Verdict, sequentially**: rounds continue until every benchmark's verdict is settled, or the
  budget runs out. After each pair of rounds (from ``min_rounds`` on) each benchmark gets the
  distribution-free confidence interval of its ratio that goes with the Hodges-Lehmann estimate
  and the Mann-Whitney test (Moses' interval: order statistics of the pairwise log ratios, cut at
  the exact null distribution of U). With ``T`` = ``threshold`` (1.10, the line that must be
  seen) and ``M`` = sqrt(T), halfway to it in log terms:

  - **regression**: the whole interval is above 1 and the estimate is at least ``M``;
  - **improvement**: the mirror image (below 1, estimate at most 1/M);
  - **unchanged**: the whole interval is inside (1/T, T): any change is smaller than the line;
  - otherwise undecided; undecided when the rounds or the budget run out is **inconclusive**,
    reported as such and never folded into "unchanged".

  The gate looks at rounds 8, 12, 16 and 20 per side by default, and once more if the budget
  stops it between two looks. Every look at every
  benchmark uses the confidence level ``1 - alpha / (2 x benchmarks x looks)`` per side
  (Bonferroni over both directions and the whole sequence), so on identical code the chance
  that a gate calls *anything* a regression or an improvement stays below ``alpha`` however
  many times it looks, and a change
  of 10% or more is called "unchanged" with at most the same chance. A 10% slowdown at the
  measured noise settles as a regression within a few rounds; where the noise is too high for
  the budget it ends inconclusive, never unchanged.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

# numpy and scipy are imported inside the functions that use them: this module is imported by
# the ``tristore`` CLI at start-up, and scipy.stats alone takes ~0.5 s to import.

Verdict = Literal[
    "regression", "improvement", "unchanged", "inconclusive", "new", "removed", "skipped", "error"
]
SETTLED: frozenset[str] = frozenset({"regression", "improvement", "unchanged"})


@dataclass(frozen=True)
class Policy:
    """The knobs of a verdict; defaults are what the calibration was run with."""

    threshold: float = 1.10  # the change that must be seen, as a head/base time ratio
    alpha: float = 0.01  # chance of any false regression in one gate, over all its looks
    quantile: float = 0.0  # per-round statistic: this quantile of the round's samples (0: min)
    # The first look; at 8+8 rounds the exact test reaches 1/12870, below alpha/(2 x 6 x 5).
    min_rounds: int = 8
    max_rounds: int = 20  # the last look, unless the budget stops the rounds first
    look_every: int = 4  # rounds per side between looks: fewer looks, each one less strict

    def __post_init__(self) -> None:
        if not self.threshold > 1.0:
            raise ValueError(f"threshold must be > 1, got {self.threshold}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if not 0 <= self.quantile <= 1:
            raise ValueError(f"quantile must be in [0, 1], got {self.quantile}")
        if self.look_every < 1:
            raise ValueError(f"look_every must be >= 1, got {self.look_every}")
        if not 2 <= self.min_rounds <= self.max_rounds:
            raise ValueError(
                f"need 2 <= min_rounds <= max_rounds, got {self.min_rounds}, {self.max_rounds}"
            )

    @property
    def looks(self) -> int:
        """How many times a gate may judge: at each of its looks (``is_look``), plus once more
        at the end when the budget stops the rounds between two looks."""
        return (self.max_rounds - self.min_rounds) // self.look_every + 2

    def is_look(self, rounds: int) -> bool:
        """Whether the gate judges after ``rounds`` rounds per side."""
        done = rounds - self.min_rounds
        return done >= 0 and done % self.look_every == 0 and rounds <= self.max_rounds

    @property
    def margin(self) -> float:
        """``M``: the estimate a regression needs, halfway (in logs) between 1 and threshold."""
        return math.sqrt(self.threshold)

    def alpha_per_look(self, benchmarks: int) -> float:
        """One side of one benchmark's interval at one look: Bonferroni over both directions,
        the benchmarks and the looks, so ``alpha`` bounds any false verdict in a gate."""
        return self.alpha / (2 * max(1, benchmarks) * self.looks)


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
    """Mann-Whitney p-value; ``greater``: head tends to be slower than base (or ``two-sided``).

    NaN with fewer than two values on a side: there is nothing to rank.
    """
    from scipy import stats

    if len(base) < 2 or len(head) < 2:
        return math.nan
    ties = len(set(base) | set(head)) < len(base) + len(head)
    method = "asymptotic" if ties or max(len(base), len(head)) > 50 else "exact"
    return float(stats.mannwhitneyu(head, base, alternative=alternative, method=method).pvalue)


@functools.lru_cache(maxsize=256)
def _u_cdf(m: int, n: int) -> tuple[float, ...]:
    """P(U <= u) for u = 0..m*n under H0 (no ties): the exact Mann-Whitney null distribution.

    Counts by the recurrence f(i, j) = f(i-1, j) shifted by j + f(i, j-1), in integers.
    """
    rows = [[1] for _ in range(n + 1)]  # f(0, j): one arrangement with U = 0
    for i in range(1, m + 1):
        prev, rows = rows, [[1]]  # f(i, 0)
        for j in range(1, n + 1):
            a, b = prev[j], rows[j - 1]
            out = [0] * (i * j + 1)
            for u, c in enumerate(a):
                out[u + j] += c
            for u, c in enumerate(b):
                out[u] += c
            rows.append(out)
    counts = rows[n]
    total = sum(counts)
    cdf, acc = [], 0
    for c in counts:
        acc += c
        cdf.append(acc / total)
    return tuple(cdf)


def ratio_interval(
    base: Sequence[float], head: Sequence[float], alpha_side: float
) -> tuple[float, float]:
    """Moses' distribution-free interval for head/base, each side missing with <= alpha_side.

    The ``c``-th smallest and largest of the m*n pairwise log ratios, with ``c`` the number of
    them that U may fall short by under H0 at ``alpha_side``; (0, inf) when too few rounds can
    reach that level at all.
    """
    import numpy as np

    m, n = len(base), len(head)
    if not m or not n:
        return (0.0, math.inf)
    cdf = _u_cdf(m, n)
    c = sum(1 for p in cdf if p <= alpha_side)  # P(U <= c - 1) <= alpha_side
    if c == 0:
        return (0.0, math.inf)
    d = np.sort(
        (
            np.log(np.asarray(head, dtype=float))[:, None] - np.log(np.asarray(base, dtype=float))
        ).ravel()
    )
    return (float(math.exp(d[c - 1])), float(math.exp(d[m * n - c])))


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
    low: float = math.nan  # the ratio's interval at this look (see judge())
    high: float = math.nan
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
            "ratio_low": self.low,
            "ratio_high": self.high,
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


def threshold_verdict(base: float, head: float, threshold: float) -> Verdict:
    """A deterministic measure's verdict: head/base beyond ``1 +- threshold``, no test.

    For counts whose repeat noise is known to sit well inside the threshold (instructions).
    """
    if not base > 0 or not head > 0:
        raise ValueError(f"values must be positive, got base={base} head={head}")
    ratio = head / base
    if ratio > 1 + threshold:
        return "regression"
    if ratio < 1 - threshold:
        return "improvement"
    return "unchanged"


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


def judge(
    comparisons: Sequence[Comparison], policy: Policy | None = None, *, final: bool = True
) -> list[Comparison]:
    """Verdicts for one look at a gate (the sequential rule of the module docstring).

    ``final``: the last look (rounds or budget exhausted): undecided becomes "inconclusive".
    Before it, undecided stays "inconclusive" too, and the caller runs more rounds.
    The Holm-adjusted p-values are reported alongside; the verdict uses the intervals.
    """
    policy = policy or Policy()
    comparisons = list(comparisons)
    compared = [c for c in comparisons if c.base and c.head]
    alpha_side = policy.alpha_per_look(len(compared))
    slower = holm([c.p_slower for c in compared])
    faster = holm([c.p_faster for c in compared])
    for c, p_slow, p_fast in zip(compared, slower, faster, strict=True):
        c.p_slower_adj, c.p_faster_adj = p_slow, p_fast
        c.low, c.high = ratio_interval(c.base, c.head, alpha_side)
        if min(len(c.base), len(c.head)) < policy.min_rounds:
            c.verdict = "inconclusive"
            c.note = f"fewer than {policy.min_rounds} rounds: no verdict possible"
        elif c.low > 1 and c.ratio >= policy.margin:
            c.verdict = "regression"
        elif c.high < 1 and c.ratio <= 1 / policy.margin:
            c.verdict = "improvement"
        elif 1 / policy.threshold < c.low and c.high < policy.threshold:
            c.verdict = "unchanged"
        else:
            c.verdict = "inconclusive"
            c.note = "not settled within the rounds run" if final else ""
    return comparisons


def freeze(comparisons: Sequence[Comparison], frozen: dict[str, Comparison]) -> list[Comparison]:
    """Settled verdicts stand: the sequential rule's error bound holds only if a benchmark
    settled at one look keeps that verdict (and its figures) at every later look.

    ``frozen`` carries the settled ones from look to look; newly settled ones are added.
    """
    out = []
    for c in comparisons:
        if c.name not in frozen and c.verdict in SETTLED and c.base and c.head:
            c.note = c.note or f"settled after {min(len(c.base), len(c.head))} rounds"
            frozen[c.name] = c
        out.append(frozen.get(c.name, c))
    return out


def settled(comparisons: Sequence[Comparison]) -> bool:
    """True when no benchmark of this look needs more rounds."""
    return all(c.verdict in SETTLED for c in comparisons if c.base and c.head)


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
