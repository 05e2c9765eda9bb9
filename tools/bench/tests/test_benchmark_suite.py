"""The asv suite runs at HEAD: every benchmark once (``tristore-bench bench-smoke``).

The history in results/ is only as good as the suite: a benchmark that fails or skips at HEAD
would leave a hole in every future commit. This runs the real suite (``asv run --python=same
--quick``) in a scratch directory, so it also proves the smoke path never writes to results/.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from tristore_bench import smoke

REPO = Path(__file__).resolve().parents[3]

pytestmark = [pytest.mark.xdist_group("asv-suite"), pytest.mark.timeout(900)]


def _digest(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def test_every_benchmark_runs_at_head_and_results_stay_untouched(tmp_path: Path) -> None:
    results = REPO / "results"
    before = _digest(results)
    report = smoke.run_smoke(REPO / "asv.conf.json", tmp_path)
    assert not report.failed, f"failed at HEAD: {report.failed}\n{report.output[-6000:]}"
    assert not report.skipped, f"skipped at HEAD (an API HEAD lacks?): {report.skipped}"
    modules = {name.split(".")[0] for name in report.ran}
    assert modules >= {"pools", "sqlite_wal", "graph", "redis_pipeline", "coordinated"}
    assert modules >= {"flows", "memory"}
    assert _digest(results) == before


def _results_file(tmp_path: Path, values: dict[str, object]) -> Path:
    path = tmp_path / "r.json"
    columns = ["result", "params", "version"]
    rows = {name: [value, [], "v"] for name, value in values.items()}
    path.write_text(json.dumps({"result_columns": columns, "results": rows}))
    return path


def test_classify_tells_failures_from_skips(tmp_path: Path) -> None:
    path = _results_file(
        tmp_path,
        {
            "a.time_ok": [0.1],
            "a.time_param": [0.1, 0.2],
            "a.time_failed": None,
            "a.time_one_param_failed": [0.1, None],
            "a.time_skipped": [math.nan],
        },
    )
    # json cannot carry NaN portably, but asv writes it as NaN and Python reads it back.
    ran, failed, skipped = smoke._classify(path)
    assert ran == ["a.time_ok", "a.time_param"]
    assert failed == ["a.time_failed", "a.time_one_param_failed"]
    assert skipped == ["a.time_skipped"]


def test_cli_reports_a_missing_config(tmp_path: Path) -> None:
    done = CliRunner().invoke(smoke.command, ["--asv-config", str(tmp_path / "nope.json")])
    assert done.exit_code == 2
    assert "not found" in done.output
