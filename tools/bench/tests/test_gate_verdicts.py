"""The gate end to end on wall time: the path and the report, never a verdict the clock decides.

Which verdict a wall-time comparison reaches depends on the machine's noise in that run, so these
tests assert only what holds every time: the report's structure, the injection note, and an exit
code that agrees with the verdicts. Detection power and false-verdict rates are measured by
``gate --calibrate`` and published, not asserted here; the verdict logic itself is tested on
recorded samples in tools/bench/tests/test_gate.py.

The tests drive the real path (``git archive`` of the base ref, interleaved pytest rounds with
``PYTHONPATH`` per side, verdict, Markdown report, exit code) on a throwaway git repository that
holds a snapshot of this checkout's library and perf suite, so that "base" (its HEAD) and "head"
(its working tree) are byte-identical whatever state the main checkout is in. The suite is cut
down (two benchmarks, fewer samples, 7 rounds) to keep both under a minute.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _git import git as _git

ROOT = Path(__file__).resolve().parents[3]
GATE = [sys.executable, "-m", "tristore_bench.gate"]
# Enough to exercise the verdict path, not to settle a verdict.
FAST = ["--rounds", "3", "--min-rounds", "3", "--scale", "0.4"]
VERDICTS = {"regression", "improvement", "unchanged", "inconclusive"}


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git repository whose HEAD is this checkout's src/, tests/perf/ and pyproject.toml."""
    repo = tmp_path_factory.mktemp("gate-repo")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(ROOT / "src", repo / "src", ignore=ignore)
    shutil.copytree(ROOT / "tests" / "perf", repo / "tests" / "perf", ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", repo / "pyproject.toml")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "snapshot")
    return repo


def _gate(repo: Path, tmp_path: Path, *args: str) -> tuple[int, dict, str]:
    report = tmp_path / "report.md"
    result = tmp_path / "result.json"
    proc = subprocess.run(
        [*GATE, "--base", "HEAD", *FAST, "--report", str(report), "--json", str(result), *args],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    return proc.returncode, json.loads(result.read_text()), report.read_text()


def _exit_code_for(verdicts: dict[str, str]) -> int:
    return 1 if "regression" in verdicts.values() else 0


def test_gate_compares_identical_code(snapshot: Path, tmp_path: Path) -> None:
    code, result, report = _gate(
        snapshot, tmp_path, "--only", "pool_checkout", "--only", "sqlite_write"
    )
    verdicts = {b["name"]: b["verdict"] for b in result["benchmarks"]}
    assert set(verdicts) == {"test_pool_checkout", "test_sqlite_write"}
    assert set(verdicts.values()) <= VERDICTS
    assert code == _exit_code_for(verdicts), report
    assert report.startswith("<!-- tristore-perf-gate -->")
    assert "| `sqlite_write` |" in report and "| `pool_checkout` |" in report
    assert "pytest-benchmark compare" in report
    assert "slowdown injected" not in report


def test_gate_reports_an_injected_slowdown(snapshot: Path, tmp_path: Path) -> None:
    code, result, report = _gate(
        snapshot, tmp_path, "--only", "sqlite_write", "--inject", "20", "--target", "sqlite_write"
    )
    (sqlite,) = result["benchmarks"]
    assert sqlite["verdict"] in VERDICTS
    assert code == _exit_code_for({sqlite["name"]: sqlite["verdict"]}), report
    assert sqlite["ratio"] > 0
    assert "slowdown injected into head: 20% on sqlite_write" in report


def test_gate_reports_a_bad_ref_as_an_error(snapshot: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [*GATE, "--base", "no-such-ref", "--report", str(tmp_path / "r.md")],
        cwd=snapshot,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "no-such-ref" in proc.stderr
    assert "could not judge" in (tmp_path / "r.md").read_text()
