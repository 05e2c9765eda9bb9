"""``tristore-bench compare --fast --json``: valid rows, and pyperf files pyperf itself can read."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyperf

from tristore_bench.compare import TARGETS


def test_compare_fast_writes_rows_and_pyperf_files(tmp_path: Path) -> None:
    out = tmp_path / "pyperf"
    rows_path = tmp_path / "rows.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tristore_bench.compare",
            "--fast",
            "--output-dir",
            str(out),
            "--json",
            str(rows_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    rows = json.loads(rows_path.read_text())
    pairs = {(r["name"], r["reference"]) for r in rows}
    assert set(TARGETS) <= pairs
    assert ("kuzu_read", "kuzu sync") in pairs  # reported, without a target
    for row in rows:
        assert {"name", "tristore_s", "reference", "reference_s", "ratio"} <= row.keys()
        assert row["tristore_s"] > 0 and row["reference_s"] > 0
        assert row["ratio"] > 0
    assert "ratio = time tristore / time reference" in proc.stdout

    for name in ("compare", "tristore", "reference", "reference-sync", "reference-unprepared"):
        suite = pyperf.BenchmarkSuite.load(str(out / f"{name}.json"))
        assert suite.get_benchmarks()
    names = pyperf.BenchmarkSuite.load(str(out / "tristore.json")).get_benchmark_names()
    assert names == [
        "pool_checkout",
        "sqlite_write",
        "redis_single",
        "redis_pipeline_100",
        "kuzu_read",
    ]

    compared = subprocess.run(
        [
            sys.executable,
            "-m",
            "pyperf",
            "compare_to",
            str(out / "reference.json"),
            str(out / "tristore.json"),
            "--table",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert compared.returncode == 0, compared.stderr
    # Either a table of significant differences or pyperf's "hidden because not significant".
    assert "Benchmark" in compared.stdout or "significant" in compared.stdout
