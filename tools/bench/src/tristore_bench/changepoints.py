"""Change points in the asv history: a lasting step of a few percent at one commit, among noise.

asv segments each series with an L1 Potts model whose penalty it sets from the series itself
(``asv.step_detect.solve_potts_autogamma``). On the in-process ratios that penalty is too high to
see the steps they exist for: the pool ratio's history (step noise 1.7%) went 2.15 -> 2.45 at a
hold-out commit (+14%, four commits after it) and asv kept one segment for the whole series, as it
did for a real -14% step earlier in the same series. So ``tristore-bench site`` publishes with this
module's :func:`detect_steps` in place of asv's (same contract, so asv's own
``detect_regressions`` still decides what is a regression, against the same thresholds); the
site's Regressions page and ``tristore-bench regressions`` read the same ``regressions.json``
and agree by construction.

The method is Apache Otava's (Hunter's) in outline: candidate change points, each kept only if
the segments on either side differ by a significance test, with a minimum segment length.

1. Candidates: PELT (``ruptures``, L2 cost, ``min_size = MIN_SEGMENT``) with a BIC-like penalty,
   ``PENALTY x sigma^2 x ln(n)``, where ``sigma`` is a robust estimate of the point-to-point noise
   (the median absolute difference of consecutive points / (0.6745 x sqrt 2)); liberal on
   purpose: the test below prunes.
2. Pruning: the least significant candidate (Welch's t-test between its two neighbouring
   segments) is dropped while its p-value exceeds ``MAX_PVALUE``, and the test is redone on the
   merged segments. Two segments with no spread at all differ when their values do.
3. Each segment is reported as asv reports it: (left, right, median, minimum, mean absolute
   deviation from the median).

MIN_SEGMENT = 3 for every measured series (wall time, ratios, percentiles, bytes): a step is seen
once three commits carry it (one commit is an outlier, not a change). ``sigma`` never falls below
``SIGMA_FLOOR`` of the series' median.

An instruction count is different (:func:`count_steps`): its noise is known from repeating one
commit (``tristore-bench count-noise``, :mod:`tristore_bench.counts`), not guessed from the
spread of its history, which for a count is mostly real small steps. A new segment starts at the
first commit whose count leaves its segment's level (the segment's median so far) by more than
max(1%, 3 x that noise): so a step that large is a segment of its own from the commit that
measured it, with no minimum length, and a commit whose count equals its predecessor's (a
docs-only commit) never starts one. What is flagged is then asv's call, by each entry's
threshold (1% for counts, or 3 x the noise where that is larger: ``tristore-bench thresholds``).

Which upward steps are regressions is asv's rule too, :func:`detect_regressions`, with one
correction: asv drops a one-commit segment's jump as a dip by looking at the wrong segment when
two steps up come in a row (see there). Count series have one-commit segments by design, so
``tristore-bench site`` publishes with this version.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence

import numpy as np
import ruptures
from scipy import stats

__all__ = [
    "MAX_PVALUE",
    "MIN_SEGMENT",
    "PENALTY",
    "SIGMA_FLOOR",
    "Step",
    "count_change_points",
    "detect_regressions",
    "detect_steps",
]

MIN_SEGMENT = 3
MAX_PVALUE = 0.01
PENALTY = 2.0
SIGMA_FLOOR = 1e-3  # relative: 0.1% of the median

#: (left index, right index exclusive, value, minimum, error), as asv.step_detect returns them.
Step = tuple[int, int, float, float, float]


def _sigma(y: np.ndarray) -> float:
    """The point-to-point noise estimate, never below SIGMA_FLOOR of the median."""
    diffs = np.abs(np.diff(y))
    robust = float(np.median(diffs)) / (0.6745 * math.sqrt(2)) if diffs.size else 0.0
    return max(robust, SIGMA_FLOOR * abs(float(np.median(y))))


def _pvalue(a: np.ndarray, b: np.ndarray, sigma: float) -> float:
    """Welch's t-test between two segments; a segment without spread takes the series' noise."""
    if np.all(a == a[0]) and np.all(b == b[0]):
        return 0.0 if a[0] != b[0] else 1.0
    var_a = max(float(np.var(a, ddof=1)) if a.size > 1 else 0.0, sigma**2 * 1e-6)
    var_b = max(float(np.var(b, ddof=1)) if b.size > 1 else 0.0, sigma**2 * 1e-6)
    result = stats.ttest_ind_from_stats(
        float(np.mean(a)),
        math.sqrt(var_a),
        a.size,
        float(np.mean(b)),
        math.sqrt(var_b),
        b.size,
        equal_var=False,
    )
    p = float(result.pvalue)
    return 1.0 if math.isnan(p) else p


def change_points(y: Sequence[float]) -> list[int]:
    """Indices where a new segment starts (0 < i < len(y)), after pruning (a measured series)."""
    values = np.asarray(y, dtype=float)
    n = values.size
    if n < 2 * MIN_SEGMENT:
        return []
    sigma = _sigma(values)
    if sigma == 0.0:  # a median of 0 (a count of errors, say): no relative floor to lean on
        sigma = float(np.std(values))
        if sigma == 0.0:
            return []
    algo = ruptures.Pelt(model="l2", min_size=MIN_SEGMENT, jump=1).fit(values)
    breaks = [b for b in algo.predict(pen=PENALTY * sigma**2 * math.log(n)) if b < n]
    while breaks:
        bounds = [0, *breaks, n]
        pvalues = [
            _pvalue(values[bounds[i] : bounds[i + 1]], values[bounds[i + 1] : bounds[i + 2]], sigma)
            for i in range(len(breaks))
        ]
        worst = max(range(len(breaks)), key=lambda i: pvalues[i])
        if pvalues[worst] <= MAX_PVALUE:
            break
        del breaks[worst]
    return breaks


def count_change_points(y: Sequence[float], tolerance: float) -> list[int]:
    """Where an instruction count's segments start: a count off its level by > ``tolerance``.

    ``tolerance`` is relative (max(1%, 3 x the workload's repeat spread):
    :func:`tristore_bench.counts.flag_tolerance`). The level is the median of the segment so
    far; adding a value moves a median towards it, so a value equal to its predecessor (a
    docs-only commit) is never off the level by more than that predecessor was, and never starts
    a segment. A segment may be one commit long: the commit that measured a step is flagged at
    once. A slow creep is one segment until it is ``tolerance`` away from where it began; then it
    breaks at the commit that carried it there (one that changed the count).
    """
    breaks: list[int] = []
    segment: list[float] = []
    for i, value in enumerate(y):
        if segment:
            level = statistics.median(segment)
            if abs(value - level) > tolerance * abs(level):
                breaks.append(i)
                segment = []
        segment.append(float(value))
    return breaks


def detect_steps(
    y: Sequence[float | None],
    w: Sequence[float | None] | None = None,
    *,
    count_tolerance: float | None = None,
) -> list[Step]:
    """asv's ``step_detect.detect_steps`` contract, with the segmentation above.

    Missing points (None, NaN, non-positive weight) belong to no segment, as in asv. Weights are
    otherwise not used: a track_ series (the ratios, the counts) has none, and a time_ series'
    weights come from its confidence interval, whose noise the t-test sees anyway.
    ``count_tolerance``: the series is an instruction count, segmented by
    :func:`count_change_points` at that relative tolerance; otherwise it is a measured one.
    """
    index: list[int] = []
    kept: list[float] = []
    for j, value in enumerate(y):
        if value is None or value != value:
            continue
        weight = None if w is None else w[j]
        if weight is not None and weight == weight and weight <= 0:
            continue
        index.append(j)
        kept.append(float(value))
    if not kept:
        return []
    found = (
        change_points(kept)
        if count_tolerance is None
        else count_change_points(kept, count_tolerance)
    )
    bounds = [0, *found, len(kept)]
    steps: list[Step] = []
    for left, right in itertools.pairwise(bounds):
        segment = kept[left:right]
        middle = statistics.median(segment)
        error = sum(abs(v - middle) for v in segment) / len(segment)
        steps.append((index[left], index[right - 1] + 1, middle, min(segment), error))
    return steps


#: asv's ``detect_regressions`` result: (latest value, best value, jumps) or (None, None, None);
#: a jump is (index of the last good point, index of the first bad point, level before, best
#: level after).
Jump = tuple[int, int | None, float, float]


def detect_regressions(
    steps: Sequence[Step], threshold: float = 0.0, min_size: int = 2
) -> tuple[float | None, float | None, list[Jump] | None]:
    """asv's ``step_detect.detect_regressions`` (0.6.6), its one-commit dip rule decided in place.

    The rule, as asv has it: walking back from the latest segment, a segment whose level lies
    below the lowest level that follows it by more than max(its error, that level's error,
    ``threshold`` x its level) is the "before" of an upward jump. A segment shorter than
    ``min_size`` commits is such a "before" only conditionally: if the segment right before it
    is back at the level after it, the short one was a dip, not a step, and its jump is dropped.

    asv keeps that condition pending past the segment right before the short one whenever that
    segment is itself the "before" of a jump (two steps up in a row, the middle level one commit
    long), and settles it at the next segment that is not: an older, higher level of the history
    then drops the jump recorded *last*, which is the older of the two real steps, not the short
    one. An instruction count steps at the very commit that measured a change, so a second
    change at the next commit hid the first one from the Regressions page and from
    ``tristore-bench regressions`` (docs/reports/2026-12-07-holdouts.md). Here the condition is
    settled by the segment right before the short one, whichever way it goes; every other case
    is asv's.
    """
    if not steps:
        return None, None, None
    latest = steps[-1][2]
    best = latest  # the lowest level from the segment looked at to the latest
    level, level_err = latest, steps[-1][4]  # the level a lower segment is a jump below
    dip: tuple[float, float] | None = None  # the level after a short jump, pending
    after: int | None = None  # the first index of the segment after the one looked at
    jumps: list[Jump] = []
    for left, right, value, _low, err in reversed(steps):
        margin = max(err, level_err, threshold * value)
        pending, dip = dip, None
        if level > value + margin:
            if right - left < min_size:
                dip = (level, level_err)
            jumps.append((right - 1, after, value, best))
            level, level_err = value, err
        elif pending is not None and pending[0] <= value + margin:
            jumps.pop()  # the short segment's own jump: it was a dip
            level, level_err = pending
        after = left
        best = min(best, value)
    if not jumps:
        return None, None, None
    jumps.reverse()
    return latest, best, jumps
