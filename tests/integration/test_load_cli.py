"""``tristore load``: real embedded stores in a temporary directory, short durations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tristore.load_cli import command, format_table

# The CLI takes the usual settings from the environment: keep a developer's TRISTORE_* out.
CLEAN_ENV = {"TRISTORE_CONFIG": None, "TRISTORE_DATA_DIR": None}


def _run(*args: str) -> object:
    return CliRunner(env=CLEAN_ENV).invoke(command, list(args), catch_exceptions=False)


@pytest.mark.parametrize(
    ("scenario", "extra"),
    [
        ("cache_synchronization", ["--cache-rate", "30", "--db-rate", "15"]),
        ("cross_database_coordination", ["--concurrency", "4"]),
        ("database_stress_test", ["--users", "4", "--ops-per-user", "5"]),
    ],
)
def test_load_runs_a_scenario_and_writes_json(
    tmp_path: Path, scenario: str, extra: list[str]
) -> None:
    target = tmp_path / "report.json"
    result = _run(scenario, "--duration", "1.5", "--json", str(target), *extra)
    assert result.exit_code == 0, result.output
    # Live progress on stderr, the table on stdout.
    assert f"{scenario}:" in result.stderr
    assert "ops/s" in result.stderr
    assert "throughput" in result.stdout
    assert "latency p99" in result.stdout

    data = json.loads(target.read_text(encoding="utf-8"))
    assert data["scenario"] == scenario
    assert data["errors"] == 0
    assert data["operations"] > 0
    assert data["environment"]["seeded"]["customers"] == 200  # the small data set
    # The JSON holds the figures the table shows.
    assert format_table(data) in result.stdout
    assert f"{data['throughput_ops_s']:.1f} ops/s" in result.stdout
    if scenario == "cache_synchronization":
        assert data["sync_lag_p99_ms"] is not None
        assert "sync lag p99" in result.stdout
    else:
        assert data["sync_lag_p99_ms"] is None
    # No credentials in anything it prints or writes.
    assert "redis://:" not in target.read_text(encoding="utf-8").replace("redis://:***", "")


def test_options_that_do_not_apply_are_refused() -> None:
    result = _run("cache_synchronization", "--duration", "1", "--users", "3")
    assert result.exit_code == 2
    assert "--users does not apply to cache_synchronization" in result.output


def test_unknown_scenario_and_bad_duration_are_usage_errors() -> None:
    assert _run("nope").exit_code == 2
    assert _run("cache_synchronization", "--duration", "0").exit_code == 2


def test_no_progress_keeps_stderr_quiet(tmp_path: Path) -> None:
    result = _run(
        "cross_database_coordination", "--duration", "1", "--concurrency", "2", "--no-progress"
    )
    assert result.exit_code == 0, result.output
    assert "ops/s" not in result.stderr
    assert "cross_database_coordination" in result.stdout
