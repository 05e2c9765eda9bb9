"""False alarms and detection of the history's change-point detection, on synthetic series.

    .venv/bin/python tools/bench/measurements/changepoints_calibration.py [SERIES]

Each series is 40 commits of noise around 1.0 (Gaussian, or Student t with 3 degrees of
freedom for heavy tails) at the noise of the ratio history (robust CV 1.7%); its threshold is
derived as ``tristore-bench thresholds`` does (4 x the median relative change between
consecutive commits, at least 5%). A/A: no step; a step: +10% or +20% on the last 4 commits.
A series counts as flagged when asv's ``detect_regressions`` reports a regression from the
segments of :func:`tristore_bench.changepoints.detect_steps` (and, for comparison, asv's own).
"""

from __future__ import annotations

import itertools
import statistics
import sys

import numpy as np
from asv.step_detect import detect_regressions
from asv.step_detect import detect_steps as asv_detect_steps

from tristore_bench.changepoints import detect_steps
from tristore_bench.thresholds import FLOOR, Noise

N_COMMITS = 40
AFTER = 4
CV = 0.017


def _threshold(y: np.ndarray) -> float:
    """The threshold ``tristore-bench thresholds`` derives from this history's steps."""
    steps = [max(b / a, a / b) - 1 for a, b in itertools.pairwise(y)]
    noise = Noise("synthetic.track_ratio", len(y), None, None, statistics.median(steps))
    return noise.threshold() or FLOOR


def _flagged(y: np.ndarray, detector: object) -> bool:
    steps = detector(list(y))  # type: ignore[operator]
    return bool(detect_regressions(steps, _threshold(y[:-AFTER]))[2])


def main(count: int) -> None:
    rng = np.random.default_rng(20261206)
    print(f"{count} series x {N_COMMITS} commits, noise CV {CV:.1%}, step on the last {AFTER}")
    for noise in ("gaussian", "student-t3"):
        for step in (0.0, 0.10, 0.20):
            ours = theirs = 0
            for _ in range(count):
                if noise == "gaussian":
                    e = rng.normal(0, CV, N_COMMITS)
                else:  # t3 has variance 3: scale to the same CV
                    e = rng.standard_t(3, N_COMMITS) * CV / np.sqrt(3)
                y = 1.0 + e
                y[-AFTER:] *= 1 + step
                ours += _flagged(y, detect_steps)
                theirs += _flagged(y, asv_detect_steps)
            print(
                f"{noise:>10} step {step:+.0%}: flagged {ours}/{count} "
                f"(asv's own segmentation: {theirs}/{count})"
            )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
