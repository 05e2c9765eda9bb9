"""Instruction counts: the callgrind parser, the skip reasons, and one real count (deterministic).

The real count runs two small valgrind processes (about 3 s); everything else is pure parsing.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SRC = ROOT / "tools/bench/src"
# tristore_bench may not be installed in the environment yet: import it from the checkout.
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

from tristore_bench import instructions  # noqa: E402
from tristore_bench.workloads import WORKLOADS  # noqa: E402

# Trimmed from a real callgrind 3.19 output (--instr-atstart=no, --dump-instr=no): name
# compression on fn/cfn/ob/cob, relative positions, a call whose inclusive cost follows `calls=`,
# and the `summary: 0` that callgrind writes when instrumentation started off.
RECORDED = """\
# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 7006
cmd:  /work/main/.venv/bin/python t.py 1000
part: 1

positions: line
events: Ir
summary: 0


ob=(4) ???
fl=(1) ???
fn=(164) 0x00000000049367a8
0 2
cob=(1) /root/.pyenv/versions/3.11.7/lib/libpython3.11.so.1.0
cfi=(19) Objects/obmalloc.c
cfn=(80) PyObject_Free
calls=2 739
0 88

ob=(1)
fl=(19)
fn=(80)
739 40
+5 20
-3 8

fn=(81) _PyEval_EvalFrameDefault
* 1000

fn=(82) _PyEval_EvalFrameDefault'2
0 30
+1 50
cfn=(80)
calls=1 739
0 44

totals: 1150
"""


def test_totals_prefer_totals_over_a_zero_summary() -> None:
    assert instructions.parse_totals(RECORDED) == 1150
    assert instructions.parse_totals("events: Ir\nsummary: 77\n") == 77
    with pytest.raises(ValueError, match="totals"):
        instructions.parse_totals("events: Ir\n0 5\n")


def test_functions_are_self_cost_with_names_resolved() -> None:
    functions = instructions.parse_functions(RECORDED)
    assert functions == {
        "0x00000000049367a8 (???)": 2,
        "PyObject_Free (libpython3.11.so.1.0)": 68,
        "_PyEval_EvalFrameDefault (libpython3.11.so.1.0)": 1080,  # both recursion levels
    }
    # Self costs add up to the total only if the callees' inclusive costs are left out.
    assert sum(functions.values()) == instructions.parse_totals(RECORDED)


def test_top_functions_and_deltas(tmp_path: Path) -> None:
    out = tmp_path / "callgrind.out"
    out.write_text(RECORDED)
    assert instructions.top_functions(out, 1) == [
        ("_PyEval_EvalFrameDefault (libpython3.11.so.1.0)", 1080)
    ]
    deltas = instructions.function_deltas({"a": 10, "b": 5}, {"a": 30, "b": 5, "c": 4}, 2)
    assert deltas == [("a", 10.0), ("c", 2.0), ("b", 0.0)]


def test_unavailable_names_the_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(instructions.shutil, "which", lambda tool: None)
    reason = instructions.available()
    assert reason is not None
    assert "'valgrind'" in reason and "apt-get install valgrind" in reason


def test_unavailable_without_setarch_or_on_another_arch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        instructions.shutil, "which", lambda tool: None if tool == "setarch" else f"/usr/bin/{tool}"
    )
    assert "setarch" in (instructions.available() or "")
    monkeypatch.setattr(instructions.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    monkeypatch.setattr(instructions.platform, "machine", lambda: "aarch64")
    assert "aarch64" in (instructions.available() or "")


def test_workloads_run_natively_where_the_toggles_are_no_ops(tmp_path: Path) -> None:
    # Outside valgrind the client-request sequence is a no-op returning 0: same code, no count.
    done = subprocess.run(
        [sys.executable, "-m", "tristore_bench.workloads", "pool_checkout", "5"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "workload pool_checkout ran 5 operations" in done.stdout
    from tristore_bench import workloads

    assert workloads.running_on_valgrind() is False


def test_asv_benchmarks_skip_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    suite = importlib.import_module("benchmarks.instructions")
    monkeypatch.setattr(instructions, "available", lambda: "valgrind is not installed: ...")
    names = {cls.workload for cls in vars(suite).values() if getattr(cls, "workload", "")}
    assert names == set(WORKLOADS) - {"noop"}
    with pytest.raises(NotImplementedError, match="valgrind is not installed"):
        suite.PoolCheckout().setup()


@pytest.mark.skipif(instructions.available() is not None, reason=str(instructions.available()))
def test_a_real_count_is_positive_and_exactly_reproducible() -> None:
    first = instructions.measure("noop", 300)
    second = instructions.measure("noop", 300)
    assert first.per_op > 0
    assert first.small.instructions > 0 and first.large.instructions > first.small.instructions
    # Deterministic, not timed: the same program in the same environment, the same count.
    assert (first.small.instructions, first.large.instructions) == (
        second.small.instructions,
        second.large.instructions,
    )
    assert first.valgrind == instructions.valgrind_version() is not None
    top = first.top_functions(3)
    assert len(top) == 3 and top[0][1] > 0
