"""``python -m tristore_bench.asv_publish ARGS``: ``asv ARGS`` with the history's own change points.

asv finds steps with ``asv.step_detect.detect_steps`` while it publishes (graphs and the
Regressions page alike); this runs asv's own command line with :func:`detect_steps` in its place,
so what the site shows and what ``tristore-bench regressions`` reads come from the same
segmentation. asv computes steps in a process pool: the pool forks, so it inherits the swap.

Which segmentation a series gets depends on what it carries. A ``track_`` series (instruction
counts, in-process ratios, percentiles, bytes) has no per-point weights, and asv's penalty misses
its 10-15% steps: :mod:`tristore_bench.changepoints`. A ``time_`` series has weights from each
run's confidence interval, and its absolute times move in lasting streaks with the machine's state
(the untouched ``asyncio.Queue`` floor jumped 57% for a stretch of the history): asv's own,
weighted and more conservative, which does not read such a streak as a regression.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Sequence
from typing import Any

from asv import step_detect

from tristore_bench import changepoints

_ASV_DETECT_STEPS = step_detect.detect_steps  # asv's own, kept for weighted series


def detect_steps(y: Sequence[Any], w: Sequence[Any] | None = None) -> list[Any]:
    """asv's contract: the change points of :mod:`changepoints` unless the points carry weights."""
    if w is not None and any(x is not None and x == x for x in w):
        return list(_ASV_DETECT_STEPS(y, w))
    return changepoints.detect_steps(y, w)


def main(argv: list[str] | None = None) -> None:
    from asv.main import main as asv_main

    step_detect.detect_steps = detect_steps
    multiprocessing.set_start_method("fork", force=True)
    sys.argv = ["asv", *(sys.argv[1:] if argv is None else argv)]
    asv_main()


if __name__ == "__main__":
    main()
