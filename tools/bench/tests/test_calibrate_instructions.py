"""The instruction calibration's bookkeeping: verdict counting, resume and merge.

valgrind is replaced by a counter with a known per-operation cost (plus a known A/A wobble), so
each figure the calibration reports can be checked against arithmetic; the real counts are the
gate's own measure, tested in test_gate_instructions.py.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pytest

from tristore_bench.gate import calibrate_instructions as ci
from tristore_bench.workloads import INJECT_ENV

PER_ITERATION = 76.0
BASE = {"pool_checkout": 13_300.0, "sqlite_write": 207_000.0, "noop": 1_000.0}


@dataclass
class FakeCount:
    per_op: float


class FakeCallgrind:
    """Per-op count = base x (1 + wobble) + injected iterations x PER_ITERATION."""

    def __init__(self, wobble: list[float]) -> None:
        self.wobble = wobble
        self.calls: list[tuple[str, str]] = []

    def __call__(self, name: str, n: int | None = None, **kw: object) -> FakeCount:
        env = kw.get("env") or {}
        assert isinstance(env, dict)
        spec = env.get(INJECT_ENV, f"{name}:0")
        iterations = int(spec.split(":")[1])
        self.calls.append((name, spec))
        wobble = self.wobble[len(self.calls) % len(self.wobble)]
        return FakeCount(BASE[name] * (1 + wobble) + iterations * PER_ITERATION)


def _cal() -> ci.InstrCalibration:
    return ci.InstrCalibration(source="commit abc", valgrind="valgrind-3.19.0")


def test_aa_within_threshold_is_all_unchanged_and_injections_are_caught(tmp_path: Path) -> None:
    fake = FakeCallgrind([0.0, 0.002, -0.003, 0.001])
    cal = ci.run(_cal(), 4, tmp_path, workloads=["pool_checkout", "sqlite_write"], measure=fake)
    s = cal.summary()
    # 2 A/A variants x C(4, 2) pairs x 2 workloads; disjoint: 2 x 2 x 2
    assert (s["aa_verdicts"], s["aa_false"]) == (24, 0)
    assert (s["aa_disjoint_verdicts"], s["aa_disjoint_false"]) == (8, 0)
    assert s["aa_false_ci95"][0] == 0.0 and 0 < s["aa_false_ci95"][1] < 0.15
    for level in ("inject:2", "inject:5"):
        d = s["detection"][level]
        assert (d["same_round"], d["same_round_caught"]) == (8, 8)
        assert (d["all_pairs"], d["all_pairs_caught"]) == (32, 32)
    # the gate's own rule: the fewest iterations that add at least the level
    its = cal.iterations["pool_checkout"]["inject:2"]
    assert its == math.ceil(13_300 * 0.02 / PER_ITERATION)
    assert "| pool_checkout | 4 |" in ci.markdown(cal, "tristore-bench gate --calibrate")


def test_a_wobble_beyond_the_threshold_is_counted_false(tmp_path: Path) -> None:
    fake = FakeCallgrind([0.0, 0.03])  # alternate counts 3% apart: every cross pair is false
    cal = ci.run(_cal(), 2, tmp_path, workloads=["pool_checkout"], measure=fake)
    row = cal.workload_summary("pool_checkout")
    assert row["aa_pairs"] == 2
    assert row["aa_false"] == sum(
        ci.verdict(*cal.counts["pool_checkout"][v], cal.threshold) != "unchanged"
        for v in (ci.PLAIN, ci.ZERO)
    )


def test_a_stopped_run_resumes_without_recounting(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    fake = FakeCallgrind([0.0])
    ci.run(_cal(), 1, tmp_path, workloads=["pool_checkout"], measure=fake, state=state)
    first = len(fake.calls)  # the loop's calibration (2 counts) + 4 variants
    assert first == 6
    resumed = ci.InstrCalibration.load(state)
    ci.run(resumed, 2, tmp_path, workloads=["pool_checkout"], measure=fake, state=state)
    assert len(fake.calls) == first + 4  # only round 2, and the loop cost was kept
    assert resumed.rounds_done("pool_checkout") == 2
    assert json.loads(state.read_text())["summary"]["aa_verdicts"] == 2


def test_merge_adds_rounds_of_the_same_library_only(tmp_path: Path) -> None:
    a = ci.run(_cal(), 1, tmp_path, workloads=["pool_checkout"], measure=FakeCallgrind([0.0]))
    b = ci.run(_cal(), 1, tmp_path, workloads=["pool_checkout"], measure=FakeCallgrind([0.001]))
    a.merge(b)
    assert a.rounds_done("pool_checkout") == 2
    other = ci.InstrCalibration(source="commit def", valgrind="valgrind-3.19.0")
    with pytest.raises(ci.CalibrationMismatch):
        a.merge(other)


def test_a_failed_count_is_counted_again_not_judged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ci, "RETRY_WAIT_S", 0.0)
    fake = FakeCallgrind([0.0])
    failures = iter([True])  # the first plain count fails, as a store timing out would

    def flaky(name: str, n: int | None = None, **kw: object) -> FakeCount:
        if next(failures, False):
            raise RuntimeError("workload failed:\nStoreUnavailable: timed out after 10s")
        return fake(name, n, **kw)

    messages: list[str] = []
    cal = ci.run(
        _cal(), 1, tmp_path, workloads=["pool_checkout"], measure=flaky, progress=messages.append
    )
    assert cal.rounds_done("pool_checkout") == 1
    assert any("counting again" in m for m in messages)
