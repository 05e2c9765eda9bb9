"""The history's change-point detection, on recorded series and seeded synthetic ones."""

from __future__ import annotations

import numpy as np
import pytest
from asv.step_detect import detect_regressions
from asv.step_detect import detect_steps as asv_detect_steps

from tristore_bench.changepoints import (
    MIN_SEGMENT,
    change_points,
    count_change_points,
    detect_steps,
)
from tristore_bench.counts import flag_tolerance

# The pool checkout / asyncio.Queue ratio as published from results/ (33 library commits, a real
# -14% at bcf2568 on the 17th), then a hold-out commit that made the pool's return path ~11%
# slower (2.17 -> 2.45), a docs-only commit, a further +2% and another docs-only commit.
POOL_RATIO = [
    2.5337, 2.4919, 2.5737, 2.5952, 2.5311, 2.5468, 2.4961, 2.5959, 2.5351, 2.5029,
    2.4772, 2.6348, 2.4708, 2.4915, 2.6032, 2.486, 2.1501, 2.1652, 2.1703, 2.2081,
    2.1417, 2.1587, 2.0871, 2.1498, 2.1709, 2.1645, 2.189, 2.2027, 2.1562, 2.1579,
    2.1181, 2.149, 2.1313, 2.1234, 2.1443, 2.1718, 2.4515, 2.343, 2.5965, 2.4559,
]  # fmt: skip
# instructions.PoolCheckout over the same stretch: exact, alternating by 4 instructions, the
# hold-out's +11% and +2% on the last four commits.
POOL_COUNT = [
    13328.5, 13328.5, 13328.5, 13328.5, 13339.5, 13328.5, 13328.5, 13347.5, 13358.5, 13358.5,
    13347.1, 13328.1, 13328.1, 13343.1, 11858.6, 11854.6, 11858.6, 11854.6, 11854.6, 11858.6,
    11854.6, 11854.6, 11858.6, 11854.6, 11858.6, 11858.6, 11858.6, 11854.6, 11858.6, 11854.6,
    11858.6, 11854.6, 11854.6, 11854.6, 13168.6, 13168.6, 13440.6, 13440.6,
]  # fmt: skip
POOL_RATIO_THRESHOLD = 0.07  # asv.conf.json, derived from this series' noise
COUNT_THRESHOLD = 0.01


def _regressions(values: list[float], threshold: float, detector: object = detect_steps) -> list:
    steps = detector(values)  # type: ignore[operator]
    return detect_regressions(steps, threshold)[2] or []


def test_the_hold_out_step_in_the_pool_ratio_is_flagged_at_its_commit() -> None:
    found = _regressions(POOL_RATIO, POOL_RATIO_THRESHOLD)
    assert [(before, after) for before, after, *_ in found] == [(35, 36)]
    (_, _, level_before, level_after) = found[0]
    assert level_after / level_before == pytest.approx(1.14, abs=0.01)
    # asv's own segmentation keeps the whole series as one segment and flags nothing.
    assert _regressions(POOL_RATIO, POOL_RATIO_THRESHOLD, asv_detect_steps) == []


def test_the_real_earlier_step_is_found_too() -> None:
    assert 16 in change_points(POOL_RATIO)  # bcf2568: the in-use flag, 2.53 -> 2.16


def test_docs_only_commits_before_the_step_are_not_flagged() -> None:
    before = POOL_RATIO[:36]  # up to the commit before the hold-out
    assert _regressions(before, POOL_RATIO_THRESHOLD) == []


def _count_regressions(values: list[float], spread: float = 0.0) -> list:
    steps = detect_steps(values, count_tolerance=flag_tolerance(spread))
    return detect_regressions(steps, COUNT_THRESHOLD)[2] or []


def test_an_exact_count_steps_at_the_commit_even_with_one_point() -> None:
    found = _count_regressions(POOL_COUNT)
    assert [(before, after) for before, after, *_ in found] == [(33, 34), (35, 36)]
    # The 4-instruction alternation is not a step.
    tolerance = flag_tolerance(0.0)
    assert not [b for b in count_change_points(POOL_COUNT, tolerance) if 14 < b < 34]


# A SQLiteWrite-like history of real small steps (a few hundred instructions each, two real
# improvements of about 2%), which a history-spread rule reads as noise; then the four
# commits: main, a docs-only commit, +7.7% in SQLiteStore.execute (187,295 -> 201,717), and one
# more docs-only commit (201,719).
SQLITE_HISTORY = [
    207209.5, 207328.7, 206530.4, 207412.6, 206204.1, 205960.3, 206870.2, 205731.8, 206402.9,
    205190.4, 204871.0, 205533.7, 204104.2, 203662.5, 204530.8, 203118.4, 202544.1, 203301.6,
    201987.0, 198420.6, 197833.1, 198610.2, 196902.7, 196118.4, 194871.5, 193020.3, 191452.7,
    190160.8, 189004.3, 188112.5, 187295.0,
]  # fmt: skip
SQLITE_HOLDOUT = [*SQLITE_HISTORY, 187295.0, 201717.0, 201719.0]


def test_the_sqlite_write_step_is_flagged_at_its_commit_with_one_commit_after_it() -> None:
    spread = 0.0039  # the largest repeat spread measured for sqlite_write (3 counts of 1c9db77)
    found = _count_regressions(SQLITE_HOLDOUT, spread)
    step_at = len(SQLITE_HISTORY) + 1
    assert [(before, after) for before, after, *_ in found] == [(step_at - 1, step_at)]
    (_, _, level_before, level_after) = found[0]
    assert level_after / level_before == pytest.approx(1.077, abs=0.001)
    # ... and as soon as the commit is measured, before anything follows it.
    found = _count_regressions(SQLITE_HOLDOUT[:-1], spread)
    assert [(before, after) for before, after, *_ in found] == [(step_at - 1, step_at)]
    # The history-spread rule (a measured series, MIN_SEGMENT) does not see it with 2 commits.
    assert _regressions(SQLITE_HOLDOUT, COUNT_THRESHOLD) == []


# instructions.SQLiteWrite as published from results/ (36 library commits): real steps of -33%,
# +18.7% (0a958b3) reverted at the next commit, and +14% at the last commit (8e70327, the inline
# write's extra yield), which the history-spread rule left unflagged.
SQLITE_PUBLISHED = [
    204783.035, 204757.565, 205992.76, 206060.455, 206280.03, 205914.825, 205898.845, 205929.755,
    206357.585, 206453.33, 205875.38, 205970.44, 205853.9, 138047.02, 137229.25, 136717.8,
    162363.69, 161754.06, 161748.49, 161725.655, 161748.49, 162031.115, 161680.285, 163396.49,
    163474.125, 163875.33, 163462.31, 163507.3, 163464.755, 163507.3, 163464.755, 163775.82,
    194332.005, 164229.35, 164198.415, 187459.365,
]  # fmt: skip


def test_the_published_sqlite_history_flags_its_last_step_at_once() -> None:
    spread = 0.00233  # tools/bench/count-noise.json, sqlite_write
    found = _count_regressions(SQLITE_PUBLISHED, spread)
    last = len(SQLITE_PUBLISHED) - 1
    assert (last - 1, last) in [(before, after) for before, after, *_ in found]
    measured = _regressions(SQLITE_PUBLISHED, COUNT_THRESHOLD)  # as if it were wall time
    assert (last - 1, last) not in [(before, after) for before, after, *_ in measured]
    # The +18.7% that was reverted at the next commit is not a current regression.
    assert not [f for f in found if f[1] == 32]


def test_docs_only_commits_are_never_flagged() -> None:
    spread = 0.0039
    assert _count_regressions(SQLITE_HISTORY, spread) == []
    assert _count_regressions([*SQLITE_HISTORY, *[SQLITE_HISTORY[-1]] * 5], spread) == []
    # A docs-only commit right after a step is part of the step's segment, not a new one.
    breaks = count_change_points(SQLITE_HOLDOUT, flag_tolerance(spread))
    assert len(SQLITE_HISTORY) + 2 not in breaks
    assert len(SQLITE_HISTORY) not in breaks


def test_a_count_step_must_exceed_three_times_the_repeat_noise() -> None:
    base = [1_000_000.0] * 20
    # Noise 0.5%: a 1.2% step is within 3 x noise (1.5%), a 2% step is not.
    assert _count_regressions([*base, 1_012_000.0], 0.005) == []
    assert _count_regressions([*base, 1_020_000.0], 0.005)
    # Exact workload: the 1% floor holds; 0.8% is below it, 1.2% is flagged.
    assert _count_regressions([*base, 1_008_000.0], 0.0) == []
    assert _count_regressions([*base, 1_012_000.0], 0.0)


def test_a_step_that_reverts_is_not_a_current_regression() -> None:
    values = [1000.0] * 10 + [1100.0] + [1000.0] * 3
    assert count_change_points(values, 0.01) == [10, 11]
    assert _count_regressions(values) == []


def test_a_measured_series_never_takes_the_count_rule_from_its_history() -> None:
    """A flat ratio (no spread in its history) still needs MIN_SEGMENT commits after a step."""
    flat = [2.0] * 20 + [2.5] * (MIN_SEGMENT - 1)
    assert _regressions(flat, 0.07) == []
    assert _regressions([*flat, 2.5], 0.07)


def test_a_noisy_series_needs_min_segment_commits_after_a_step() -> None:
    rng = np.random.default_rng(1)
    values = list(1.0 + rng.normal(0, 0.017, 30))
    values[-(MIN_SEGMENT - 1) :] = [v * 1.3 for v in values[-(MIN_SEGMENT - 1) :]]
    assert _regressions(values, 0.07) == []  # two commits: could be an outlier
    values.append(1.3 + rng.normal(0, 0.017))
    assert _regressions(values, 0.07)  # the third makes it a step


@pytest.mark.parametrize("noise", ["gaussian", "t3"])
def test_false_alarms_and_detection_on_seeded_series(noise: str) -> None:
    """A/A series never flagged; a 10% step on the last 4 of 40 commits mostly is.

    The full figures (500 series per case) are in tools/bench/measurements/changepoints*.
    """
    rng = np.random.default_rng(20261206)
    flagged = {0.0: 0, 0.10: 0}
    for step in flagged:
        for _ in range(100):
            if noise == "gaussian":
                e = rng.normal(0, 0.017, 40)
            else:
                e = rng.standard_t(3, 40) * 0.017 / np.sqrt(3)
            y = 1.0 + e
            y[-4:] *= 1 + step
            flagged[step] += bool(_regressions(list(y), 0.08))
    assert flagged[0.0] == 0
    assert flagged[0.10] >= 80


def test_missing_points_belong_to_no_segment() -> None:
    values: list[float | None] = [1.0, None, 1.0, float("nan"), 1.0, 2.0, 2.0, 2.0]
    steps = detect_steps(values)
    assert [(left, right) for left, right, *_ in steps] == [(0, 5), (5, 8)]
    assert detect_steps([]) == []
    assert detect_steps([None, None]) == []


def test_a_series_around_zero_is_segmented_by_its_own_spread() -> None:
    assert change_points([0.0] * 20) == []
    spikes = [0.0] * 9 + [1.0] + [0.0] * 10  # one odd reading: not a step
    assert change_points(spikes) == []
    assert change_points([0.0] * 10 + [5.0] * 10) == [10]
