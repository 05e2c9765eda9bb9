"""Kinds of series, gated or context: :func:`tristore_bench.thresholds.kind`, the context entries
asv_publish keeps off the Regressions page, and ``trust.json`` / ``trust.js``
(:mod:`tristore_bench.site_trust`). The browser checks of the bands and the grid are in
test_site.py, on a site published from real asv runs.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from _asv_results import COLUMNS as ASV_COLUMNS
from _git import git as _git
from click.testing import CliRunner

from tristore_bench import asv_publish, site, site_trust, thresholds
from tristore_bench import regressions as regressions_mod
from tristore_bench.thresholds import Kind

REPO = Path(__file__).resolve().parents[3]

# --------------------------------------------------------------------------------------------
# kind()

REAL = {
    "instructions.SQLiteWrite.track_instructions": Kind.COUNT,
    "instructions.PoolCheckout.track_instructions": Kind.COUNT,
    "ratios.DriverRatios.track_ratio('pool_checkout/asyncio.Queue')": Kind.RATIO,
    "ratios.DriverRatios.track_ratio('kuzu_read/kuzu executor')": Kind.RATIO,
    "coordinated.CoordinatedWrites.track_overhead_ratio": Kind.RATIO,
    "memory.PeakMemory.peakmem_place_orders_x300": Kind.SIZE,
    "memory.RedisMemory.track_redis_key_bytes_per_order": Kind.SIZE,
    "memory.RssPerConnection.track_rss_per_connection('graph')": Kind.SIZE,
    "pools.StorePoolContended.track_pool_size_after_load('sqlite', 20, 100)": Kind.SIZE,
    "pools.StorePoolContended.time_checkout_return('sqlite', 20, 100)": Kind.WALL,
    "pools.PoolFloor.time_queue_pool_x1000": Kind.WALL,
    "coordinated.CoordinatedWrites.track_p99_ms_25_concurrent": Kind.WALL,
    "coordinated.CoordinatedWrites.track_throughput_25_concurrent": Kind.WALL,
    "flows.FlowLoad.track_sync_lag_p99_ms": Kind.WALL,
    "flows.FlowLoad.track_stress_rss_growth_bytes": Kind.WALL,
    "sqlite_wal.SQLiteLoopLag.track_heartbeat_lag_p99_ms": Kind.WALL,
    "graph.GraphReads.time_point_lookup_x50('large', 'kuzu')": Kind.WALL,
}


@pytest.mark.parametrize(("entry", "expected"), sorted(REAL.items()))
def test_kind_of_real_entries(entry: str, expected: Kind) -> None:
    assert thresholds.kind(entry) is expected
    assert thresholds.kind(entry + "@main") is expected
    assert expected.gated is (expected is not Kind.WALL)


@pytest.mark.parametrize(
    ("name", "step", "threshold", "expected"),
    [
        ("instructions.X.track_instructions", None, 0.01, True),  # a count always is
        ("pools.P.time_x", 0.01, 0.05, False),  # wall time never is
        ("ratios.DriverRatios.track_ratio", 0.02, 0.08, True),
        ("ratios.DriverRatios.track_ratio", 0.06, 0.24, False),  # cannot see 10%: context
        ("memory.PeakMemory.peakmem_x", 0.04, 0.15, False),
        ("memory.PeakMemory.peakmem_x", None, 0.05, False),  # noise not yet measured
        ("coordinated.CoordinatedWrites.track_concurrency_ratio", 0.04, 0.16, True),  # wider
        ("coordinated.CoordinatedWrites.track_concurrency_ratio", 0.06, 0.24, False),
    ],
)
def test_a_ratio_or_a_size_is_gated_only_where_its_threshold_sees_the_goal(
    name: str, step: float | None, threshold: float, expected: bool
) -> None:
    noise = thresholds.Noise(name, 10, None, None, step)
    assert thresholds.gated(noise, threshold) is expected


def test_the_band_names_the_re_run_when_it_is_the_largest_noise() -> None:
    noise = thresholds.Noise("ratios.R.track_ratio", 10, None, None, 0.02, rerun=0.05)
    assert noise.band == 0.05
    assert site_trust._basis(noise) == "re-run"


def test_a_noisy_ratio_is_published_as_context_alone() -> None:
    """Its own key switches asv's detection off; its quiet neighbours keep theirs."""
    quiet = thresholds.Noise("ratios.R.track_ratio", 10, None, None, 0.01, params="'a'")
    noisy = thresholds.Noise("ratios.R.track_ratio", 10, None, None, 0.08, params="'b'")
    derived = thresholds.Derivation(thresholds.publish_block({}, [quiet, noisy]), (quiet, noisy))
    assert derived.gated(quiet) and not derived.gated(noisy)
    keys = asv_publish.context_keys(["ratios.R.track_ratio", "pools.P.time_x"], derived)
    assert list(keys) == [thresholds.name_regex("pools.P.time_x"), noisy.regex]
    assert not any(re.match(key, quiet.name) for key in keys)
    assert all(value is None for value in keys.values())


def test_every_benchmark_of_the_suite_has_a_kind() -> None:
    """The committed suite, by kind: a new benchmark that is not wall time needs a rule."""
    names = asv_publish.benchmark_names(REPO / "results")
    kinds = Counter(thresholds.kind(name) for name in names)
    assert kinds == {Kind.COUNT: 6, Kind.RATIO: 3, Kind.SIZE: 7, Kind.WALL: len(names) - 16}
    # A parameter that looks like a rule does not move an entry to another kind.
    assert thresholds.kind("pools.PoolFloor.time_x('ratios.a_ratio')") is Kind.WALL
    # Noise.is_count and kind() agree: one definition.
    noise = thresholds.Noise("instructions.X.track_instructions", 3, None, None, 0.0)
    assert noise.is_count and noise.kind is Kind.COUNT


def test_context_keys_switch_off_the_wall_benchmarks_alone() -> None:
    names = [
        "m.Wall.time_op",
        "m.Wall.track_lag_ms",
        "m.Gated.track_overhead_ratio",
        "instructions.X.track_instructions",
    ]
    keys = asv_publish.context_keys(names)
    assert set(keys.values()) == {None}
    assert len(keys) == 2

    def skipped(entry: str) -> bool:
        return any(re.match(key, entry) for key in keys)

    assert skipped("m.Wall.time_op") and skipped("m.Wall.time_op(1, 'a')@main")
    assert skipped("m.Wall.track_lag_ms")
    assert not skipped("m.Gated.track_overhead_ratio")
    assert not skipped("instructions.X.track_instructions")
    assert not skipped("m.Wall.time_op_x2")  # another benchmark


def test_index_lists_every_graphs_parameter_values(tmp_path: Path) -> None:
    """A count series whose other parameters are None can be selected on its graph page."""
    index = {
        "params": {"machine": ["a", "b"], "ram": ["1"], "branch": ["main", "dev"]},
        "graph_param_list": [
            {"machine": "a", "ram": "1", "branch": "main"},
            {"machine": "b", "ram": None, "branch": "main"},
        ],
    }
    (tmp_path / "index.json").write_text(json.dumps(index))
    assert asv_publish.list_series_params(tmp_path)
    params = json.loads((tmp_path / "index.json").read_text())["params"]
    assert params == {"machine": ["a", "b"], "ram": ["1", None], "branch": ["main", "dev"]}
    assert not asv_publish.list_series_params(tmp_path)


# --------------------------------------------------------------------------------------------
# A published site whose wall-time series step by 3x: never flagged; the gated control is.

COLUMNS = ASV_COLUMNS[:11]  # no samples, no profile
MACHINE = "trust-test"
WALL_TIME = "toy.Wall.time_op"
WALL_TRACK = "toy.Wall.track_lag_ms"
RATIO = "toy.Gated.track_overhead_ratio"
# Eight commits, the level x3 from the fifth on: a lasting step of +200%.
LEVELS = (1.0, 1.0, 1.0, 1.0, 3.0, 3.0, 3.0, 3.0)


def _row(value: float, timed: bool) -> list[Any]:
    """One asv 0.6 results row; a time_ benchmark's carries a +/-1% interval."""
    stats: list[Any] = (
        [[value * 0.99], [value * 1.01], [value * 0.995], [value * 1.005], [1], [10]]
        if timed
        else [None] * 6
    )
    return [[value], [], "v1", 0, 0.1, *stats]


def _benchmark(name: str, unit: str) -> dict[str, Any]:
    kind = "time" if ".time_" in name else "track"
    return {"name": name, "params": [], "param_names": [], "type": kind, "unit": unit,
            "version": "v1", "code": "", "timeout": 60}  # fmt: skip


@pytest.fixture(scope="module")
def stepped(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("trust-site")
    repo, results = root / "repo", root / "results"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    for day in range(1, len(LEVELS) + 1):
        stamp = f"2026-01-{day:02d}T12:00:00+00:00"
        _git(repo, "commit", "-q", "--allow-empty", "-m", f"c{day}", date=stamp)
    commits = _git(repo, "rev-list", "--reverse", "main").split()
    machine_dir = results / MACHINE
    machine_dir.mkdir(parents=True)
    (machine_dir / "machine.json").write_text(json.dumps({"machine": MACHINE, "version": 1}))
    benchmarks = {
        WALL_TIME: _benchmark(WALL_TIME, "seconds"),
        WALL_TRACK: _benchmark(WALL_TRACK, "ms"),
        RATIO: _benchmark(RATIO, "ratio"),
    }
    (results / "benchmarks.json").write_text(json.dumps({**benchmarks, "version": 2}))
    for i, (commit, level) in enumerate(zip(commits, LEVELS, strict=True)):
        data = {
            "commit_hash": commit,
            "env_name": "existing-py",
            "date": 1_767_268_800_000 + i * 86_400_000,
            "params": {"machine": MACHINE},
            "python": "3.11",
            "requirements": {},
            "env_vars": {},
            "result_columns": COLUMNS,
            "results": {
                WALL_TIME: _row(0.01 * level, timed=True),
                WALL_TRACK: _row(10.0 * level, timed=False),
                RATIO: _row(1.0 * level, timed=False),
            },
            "durations": {},
            "version": 2,
        }
        (machine_dir / f"{commit[:8]}-existing-py.json").write_text(json.dumps(data))
    conf = json.loads((REPO / "asv.conf.json").read_text())
    conf.update(
        repo=str(repo),
        branches=["main"],
        results_dir=str(results),
        html_dir=str(root / "html"),
        env_dir=str(root / "env"),
    )
    config = root / "asv.conf.json"
    config.write_text(json.dumps(conf, indent=2))
    html = site.publish(config)
    return {"config": config, "html": html, "results": results}


def test_context_entries_are_never_flagged_even_by_a_3x_step(stepped: dict[str, Path]) -> None:
    trust = json.loads((stepped["html"] / site_trust.DATA_FILE).read_text())
    for entry in (WALL_TIME, WALL_TRACK):
        info = trust["entries"][entry]
        assert info["kind"] == "wall" and info["gated"] is False
        # Held to its threshold, a +200% step would be flagged: only its kind keeps it off.
        assert info["threshold"] < 2.0
    assert trust["entries"][RATIO]["gated"] is True
    # The page's data: the gated control is flagged, the context series are not.
    page = json.loads((stepped["html"] / "regressions.json").read_text())["regressions"]
    assert {row[0] for row in page} == {RATIO}
    # The command reads the same file.
    done = CliRunner().invoke(regressions_mod.command, ["--asv-config", str(stepped["config"])])
    assert done.exit_code == 1, done.output
    assert RATIO in done.output
    assert WALL_TIME not in done.output and WALL_TRACK not in done.output
    assert "1 regression(s) in total" in done.output
    # Their graphs are still published, with the step.
    graphs = {p.stem: p for p in (stepped["html"] / "graphs").rglob("*.json")}
    values = [point[1] for point in json.loads(graphs[WALL_TIME].read_text())]
    assert values[-1] == pytest.approx(3 * values[0])


def test_trust_json_is_the_derivation_asv_published_with(stepped: dict[str, Path]) -> None:
    policy = json.loads(stepped["config"].read_text())["regressions_thresholds"]
    derived = thresholds.derivation(policy, stepped["results"])
    names = asv_publish.benchmark_names(stepped["results"])
    written = json.loads((stepped["html"] / site_trust.DATA_FILE).read_text())
    assert written == json.loads(json.dumps(site_trust.data(derived, names)))
    assert written["benchmarks"] == {WALL_TIME: "wall", WALL_TRACK: "wall", RATIO: "ratio"}
    # The wall track's noise is its run-to-run step (none but the 3x one: a median of 0),
    # the time_ benchmark's the larger of that and its interval.
    assert written["entries"][WALL_TRACK]["basis"] == "step"
    assert written["entries"][WALL_TIME]["noise"] == pytest.approx(0.01)
    assert written["entries"][WALL_TIME]["basis"] == "ci"


# --------------------------------------------------------------------------------------------
# trust.js


def test_the_pages_load_the_script_once(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<html><body></body></html>")
    assert site_trust.link_from_index(tmp_path)
    assert not site_trust.link_from_index(tmp_path)
    text = (tmp_path / "index.html").read_text()
    assert text.count('<script src="trust.js"></script>') == 1
    assert (tmp_path / site_trust.SCRIPT_FILE).read_text() == site_trust.TRUST_JS


def test_the_script_parses(tmp_path: Path) -> None:
    """Syntax only: the drawing is the browser's (test_site.py's headless checks)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    script = tmp_path / site_trust.SCRIPT_FILE
    script.write_text(site_trust.TRUST_JS)
    done = subprocess.run([node, "--check", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
