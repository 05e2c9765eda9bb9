"""Which upward steps are regressions: asv's rule, with its one-commit dip decided in place."""

from __future__ import annotations

import random

import pytest
from asv.plugins import regressions as asv_regressions
from asv.step_detect import detect_regressions as asv_detect_regressions

from tristore_bench import asv_publish
from tristore_bench.changepoints import Step, detect_regressions, detect_steps

# instructions.RedisPipeline as published from a scratch clone's results/ (every count commit of
# main's history, then the 2026-12-07 hold-outs: H0..H7), up to and including H5. The older
# history is higher (the single-socket client took 8% off); H4 added ~2% in CacheStore.pipeline
# (10.57M -> 10.757M), and H5, a docs-only commit, read 1.2% higher again (10.887M, noise of a
# loaded machine; H6 and H7 read 10.757M).
REDIS_PIPELINE_TO_H5 = [
    11721586.6, 11719461.8, 11708826.1, 11708341.9, 11498316.4, 11494147.1, 11497575.6,
    11496164.4, 11496927.6, 11497488.4, 11498165.0, 11499086.5, 11499087.5, 11501583.5,
    11497852.2, 11472760.1, 11497765.3, 11495616.9, 10570021.4, 10571815.0, 10570021.4,
    10570065.1, 10571942.5, 10572279.4, 10573132.8, 10573154.8, 10573151.0, 10573134.2,
    10572096.2, 10573134.2, 10572100.2, 10573148.4, 10612416.7, 10611393.6, 10573977.1,
    10572694.8, 10543431.6, 10543413.4, 10543125.1, 10564385.0, 10757389.0, 10887339.8,
]  # fmt: skip
H4, H5 = 40, 41  # their indices
COUNT_THRESHOLD = 0.01

# Two steps up in a row, the middle level one commit long, under an older higher level.
STAIRCASE: list[Step] = [
    (0, 4, 11.5, 11.5, 0.0),
    (4, 10, 10.0, 10.0, 0.0),
    (10, 11, 10.2, 10.2, 0.0),
    (11, 12, 10.4, 10.4, 0.0),
]


def _first_bad(result: tuple[float | None, float | None, list | None]) -> list[int | None]:
    return [after for _before, after, *_ in result[2] or []]


def test_two_steps_in_a_row_are_both_regressions() -> None:
    assert _first_bad(detect_regressions(STAIRCASE, COUNT_THRESHOLD)) == [10, 11]
    # Without the older level asv agrees.
    assert _first_bad(asv_detect_regressions(STAIRCASE[1:], COUNT_THRESHOLD)) == [10, 11]


def test_asv_still_drops_the_first_of_them() -> None:
    """The defect the local version exists for; if this fails, asv fixed it upstream and
    ``asv_publish.install_regressions`` can go."""
    assert _first_bad(asv_detect_regressions(STAIRCASE, COUNT_THRESHOLD)) == [11]


def test_the_hold_out_count_names_both_commits() -> None:
    steps = detect_steps(REDIS_PIPELINE_TO_H5, count_tolerance=COUNT_THRESHOLD)
    assert [left for left, *_ in steps][-2:] == [H4, H5]  # one-commit segments, by design
    assert _first_bad(detect_regressions(steps, COUNT_THRESHOLD)) == [H4, H5]
    assert _first_bad(asv_detect_regressions(steps, COUNT_THRESHOLD)) == [H5]


@pytest.mark.parametrize(
    ("levels", "lengths", "expected"),
    [
        # A one-commit dip between two equal levels is not a regression, in either version.
        ([10.4, 10.0, 10.4], [4, 1, 3], []),
        # ... nor when the history before it is higher still.
        ([11.5, 10.4, 10.0, 10.4], [4, 4, 1, 3], []),
        # A one-commit dip right after a real step: the step is kept.
        ([10.0, 10.4, 10.2, 10.4], [4, 4, 1, 3], [4]),
        # Two one-commit levels climbing in a row.
        ([11.5, 10.0, 10.2, 10.4, 10.6], [4, 6, 1, 1, 2], [10, 11, 12]),
    ],
)
def test_one_commit_levels(levels: list[float], lengths: list[int], expected: list[int]) -> None:
    steps: list[Step] = []
    left = 0
    for level, length in zip(levels, lengths, strict=True):
        steps.append((left, left + length, level, level, 0.0))
        left += length
    assert _first_bad(detect_regressions(steps, COUNT_THRESHOLD)) == expected


def test_asv_s_result_wherever_no_segment_is_short() -> None:
    rng = random.Random(29)
    for _ in range(2000):
        steps: list[Step] = []
        left = 0
        for _ in range(rng.randint(1, 8)):
            length = rng.randint(2, 6)
            level = rng.choice([9.0, 9.5, 10.0, 10.05, 10.2, 10.5, 11.0])
            err = rng.choice([0.0, 0.01, 0.3])
            steps.append((left, left + length, level, level, err))
            left += length
        threshold = rng.choice([0.0, 0.01, 0.05])
        assert detect_regressions(steps, threshold) == asv_detect_regressions(steps, threshold)


def test_no_steps_no_regressions() -> None:
    assert detect_regressions([]) == (None, None, None)
    assert detect_regressions([(0, 5, 1.0, 1.0, 0.0)]) == (None, None, None)


def test_the_publisher_uses_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asv_regressions, "detect_regressions", asv_regressions.detect_regressions)
    asv_publish.install_regressions()
    assert asv_regressions.detect_regressions is detect_regressions
