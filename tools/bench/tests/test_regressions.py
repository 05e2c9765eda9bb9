"""``tristore-bench regressions`` over a hand-made published site, and noise-derived thresholds over
hand-made asv results (both in asv 0.6.6's formats; the integration test in
tests/integration/test_site.py runs the same code on files asv itself wrote).
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest
from _asv_results import COLUMNS
from _git import git as _git
from click.testing import CliRunner

from tristore_bench import regressions as reg
from tristore_bench import thresholds as th
from tristore_bench.counts import COUNT_BENCHMARKS, WorkloadNoise

# --------------------------------------------------------------------------------------------
# regressions


@pytest.fixture
def site(tmp_path: Path) -> dict[str, Any]:
    """A 5-commit repo, an asv config pointing at it and a published html dir with two jumps."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    for i in range(5):
        _git(repo, "commit", "-q", "--allow-empty", "-m", f"c{i}")
    commits = _git(repo, "rev-list", "--reverse", "main").split()
    html = tmp_path / "html"
    html.mkdir()
    (tmp_path / "asv.conf.json").write_text(
        json.dumps({"version": 1, "repo": "repo", "html_dir": "html", "branches": ["main"]})
    )
    (html / "index.json").write_text(
        json.dumps({"revision_to_hash": {str(i): h for i, h in enumerate(commits)}})
    )
    regressions = [
        # A jump between adjacent commits 1 -> 2 (asv writes None for the last good commit).
        ["mod.time_a", "graphs/x/mod.time_a.json", {}, None, 2.0, 1.0, [[None, 2, 1.0, 2.0]]],
        # A jump somewhere in commits 3..4 of a parameterized benchmark, 1.5x.
        ["mod.Cls.time_b(10)", "graphs/x/mod.Cls.time_b.json", {}, 0, 3.0, 2.0, [[3, 4, 2.0, 3.0]]],
    ]
    (html / "regressions.json").write_text(json.dumps({"regressions": regressions}))
    return {"root": tmp_path, "commits": commits, "html": html}


def _invoke(site: dict[str, Any], *args: str) -> Any:
    return CliRunner().invoke(
        reg.command, ["--asv-config", str(site["root"] / "asv.conf.json"), *args]
    )


def test_load_regressions_maps_revisions_to_commits(site: dict[str, Any]) -> None:
    found = reg.load_regressions(site["html"])
    assert [r.benchmark for r in found] == ["mod.time_a", "mod.Cls.time_b(10)"]  # biggest first
    a, b = found
    c = site["commits"]
    assert (a.last_good, a.first_bad, a.ratio) == (None, c[2], 2.0)
    assert (b.last_good, b.first_bad, b.ratio) == (c[3], c[4], 1.5)
    assert a.commits() == c[2][:8]
    assert b.commits() == f"{c[3][:8]}..{c[4][:8]}"


def test_a_jump_from_a_non_positive_value_has_no_ratio(site: dict[str, Any]) -> None:
    # A track_ delta in bytes can be negative before it jumps; after/before would read -12x.
    data = json.loads((site["html"] / "regressions.json").read_text())
    data["regressions"].append(
        [
            "mod.track_growth",
            "graphs/x/mod.track_growth.json",
            {},
            None,
            400.0,
            -33.0,
            [[None, 4, -33.0, 400.0]],
        ]
    )
    (site["html"] / "regressions.json").write_text(json.dumps(data))
    found = reg.load_regressions(site["html"])
    assert found[0].benchmark == "mod.track_growth" and found[0].ratio is None
    done = _invoke(site)
    assert done.exit_code == 1
    row = next(line for line in done.output.splitlines() if "mod.track_growth" in line)
    assert "n/a" in row and "-33 -> 400" in row
    rows = json.loads(_invoke(site, "--json").output)
    assert rows[0]["ratio"] is None


def test_lists_all_regressions_and_exits_1(site: dict[str, Any]) -> None:
    done = _invoke(site)
    assert done.exit_code == 1, done.output
    lines = done.output.splitlines()
    assert lines[0].split() == ["benchmark", "commits", "ratio", "before", "->", "after"]
    assert "mod.time_a" in lines[1] and "2.00x" in lines[1] and "1 -> 2" in lines[1]
    assert "mod.Cls.time_b(10)" in lines[2] and "1.50x" in lines[2]
    assert lines[-1] == "2 regression(s) in total"


@pytest.mark.parametrize(
    ("since_index", "expected_exit", "new"),
    [
        (0, 1, {"mod.time_a", "mod.Cls.time_b(10)"}),
        (1, 1, {"mod.time_a", "mod.Cls.time_b(10)"}),
        (2, 1, {"mod.Cls.time_b(10)"}),  # time_a's first bad commit is REF itself: not newer
        (3, 1, {"mod.Cls.time_b(10)"}),
        (4, 0, set()),
    ],
)
def test_since_counts_only_regressions_after_ref(
    site: dict[str, Any], since_index: int, expected_exit: int, new: set[str]
) -> None:
    done = _invoke(site, "--since", site["commits"][since_index], "--json")
    assert done.exit_code == expected_exit, done.output
    rows = json.loads(done.output)
    assert {r["benchmark"] for r in rows if r["counted"]} == new
    assert len(rows) == 2  # everything current is still printed


def test_since_accepts_any_git_ref(site: dict[str, Any]) -> None:
    assert _invoke(site, "--since", "main").exit_code == 0
    assert _invoke(site, "--since", "main~1").exit_code == 1


def test_regression_on_a_side_branch_counts_as_new(site: dict[str, Any]) -> None:
    # A first-bad commit that REF's history lacks is new relative to REF even if it is not a
    # descendant of REF (a branch merged later).
    repo = site["root"] / "repo"
    _git(repo, "checkout", "-q", "-b", "side", site["commits"][1])
    _git(repo, "commit", "-q", "--allow-empty", "-m", "side")
    side = _git(repo, "rev-parse", "HEAD")
    index = json.loads((site["html"] / "index.json").read_text())
    index["revision_to_hash"]["5"] = side
    (site["html"] / "index.json").write_text(json.dumps(index))
    data = {"regressions": [["mod.time_c", "g", {}, None, 2.0, 1.0, [[None, 5, 1.0, 2.0]]]]}
    (site["html"] / "regressions.json").write_text(json.dumps(data))
    assert _invoke(site, "--since", site["commits"][4]).exit_code == 1


def test_no_regressions_exits_0(site: dict[str, Any]) -> None:
    (site["html"] / "regressions.json").write_text(json.dumps({"regressions": []}))
    done = _invoke(site)
    assert done.exit_code == 0
    assert done.output.strip() == "no regressions"
    assert _invoke(site, "--since", site["commits"][0]).exit_code == 0


def test_never_published_is_exit_2_with_a_clear_message(site: dict[str, Any]) -> None:
    done = _invoke(site, "--html-dir", str(site["root"] / "nowhere"))
    assert done.exit_code == 2
    assert "never published" in done.output and "tristore-bench site" in done.output


@pytest.mark.parametrize("ref", ["no-such-branch", "0" * 40])
def test_unknown_ref_is_exit_2(site: dict[str, Any], ref: str) -> None:
    done = _invoke(site, "--since", ref)
    assert done.exit_code == 2
    assert "is not a commit" in done.output


def test_inconsistent_publish_is_exit_2(site: dict[str, Any]) -> None:
    (site["html"] / "index.json").write_text(json.dumps({"revision_to_hash": {}}))
    done = _invoke(site)
    assert done.exit_code == 2
    assert "different publishes" in done.output


# --------------------------------------------------------------------------------------------
# thresholds


def _row(values: list[float | None], params: list[list[str]], ci: float, iqr: float) -> list[Any]:
    """One asv 0.6 results row: ``ci`` and ``iqr`` are relative half-width / full width."""
    return [
        values,
        params,
        "v1",
        0,
        0.1,
        [None if v is None else v * (1 - ci) for v in values],
        [None if v is None else v * (1 + ci) for v in values],
        [None if v is None else v * (1 - iqr / 2) for v in values],
        [None if v is None else v * (1 + iqr / 2) for v in values],
        [1 for _ in values],
        [10 for _ in values],
    ]


def _write_results(results: Path, machine: str, series: list[dict[str, list[Any]]]) -> None:
    """One results file per commit: ``series[i]`` maps benchmark name -> row for commit i."""
    (results / machine).mkdir(parents=True, exist_ok=True)
    (results / machine / "machine.json").write_text(json.dumps({"machine": machine}))
    for i, rows in enumerate(series):
        commit = f"{i:02d}" + "ab" * 19
        data = {
            "commit_hash": commit,
            "env_name": "existing-py",
            "date": 1_700_000_000_000 + i * 86_400_000,
            "params": {"machine": machine},
            "python": "3.11",
            "requirements": {},
            "env_vars": {},
            "result_columns": COLUMNS,
            "results": rows,
            "durations": {},
            "version": 2,
        }
        (results / machine / f"{commit[:8]}-existing-py.json").write_text(json.dumps(data))


@pytest.fixture
def results(tmp_path: Path) -> Path:
    out = tmp_path / "results"
    wobble = [1.00, 1.02, 1.00, 1.02, 1.00]  # 2% run-to-run
    series = []
    for i, w in enumerate(wobble):
        series.append(
            {
                # Quiet: 0.5% CI, 2% step -> 4 x 2% = 8%.
                "m.time_quiet": _row([w * 1e-3], [], ci=0.005, iqr=0.01),
                # Parameterized: one entry per combination, each 10% CI -> 2 x 10%.
                "m.time_param": _row([w * 1e-3, w * 2e-3], [["1", "2"]], ci=0.10, iqr=0.3),
                # Very noisy: capped.
                "m.time_noisy": _row([(1.0, 1.6)[i % 2]], [], ci=0.01, iqr=0.01),
                # A track_ benchmark (no statistics) seen on two commits only: no estimate.
                **({"m.track_two": [[5.0], [], "v1", 0, 0.1]} if i < 2 else {}),
                # A failed run (None) is skipped, not a zero.
                "m.time_failed": _row([None], [], ci=0.0, iqr=0.0),
            }
        )
    _write_results(out, "box", series)
    (out / "benchmarks.json").write_text("{}")  # asv keeps this at the top level: not a machine
    return out


def test_fixture_is_what_asv_reads(results: Path) -> None:
    asv_results = pytest.importorskip("asv.results")
    path = next((results / "box").glob("00*.json"))
    loaded = asv_results.Results.load(str(path))
    stats = loaded.get_result_stats("m.time_param", [["1", "2"]])
    assert stats[1]["ci_99_a"] == pytest.approx(2e-3 * 0.9)
    assert loaded.get_result_value("m.time_quiet", []) == [pytest.approx(1e-3)]


def test_noise_estimates(results: Path) -> None:
    noise = {n.name: n for n in th.measure_noise(results)}
    assert set(noise) == {
        "m.time_quiet",
        "m.time_param(1)",
        "m.time_param(2)",
        "m.time_noisy",
        "m.track_two",
    }
    assert (noise["m.time_param(2)"].benchmark, noise["m.time_param(2)"].params) == (
        "m.time_param",
        "2",
    )
    assert noise["m.time_quiet"].params is None
    quiet = noise["m.time_quiet"]
    assert quiet.commits == 5
    assert quiet.ci == pytest.approx(0.005)
    assert quiet.iqr == pytest.approx(0.01)
    assert quiet.step == pytest.approx(0.02)
    assert quiet.threshold() == pytest.approx(0.08)
    for entry in ("m.time_param(1)", "m.time_param(2)"):
        assert noise[entry].ci == pytest.approx(0.10)
        assert noise[entry].threshold() == pytest.approx(0.20)
    assert noise["m.time_noisy"].threshold() == th.CAP
    assert noise["m.track_two"].step is None  # two commits are not enough
    assert noise["m.track_two"].threshold() is None


def test_steps_across_a_benchmark_code_change_are_not_noise(tmp_path: Path) -> None:
    out = tmp_path / "results"
    rows = []
    for i, value in enumerate([1.0, 1.0, 3.0, 3.0, 3.0]):
        row = _row([value], [], ci=0.0, iqr=0.0)
        row[2] = "v1" if i < 2 else "v2"  # the benchmark itself changed at commit 2
        rows.append({"m.time_x": row})
    _write_results(out, "box", rows)
    (noise,) = th.measure_noise(out)
    assert noise.step == pytest.approx(0.0)


def test_a_quantized_measure_is_not_flagged_for_one_quantum(tmp_path: Path) -> None:
    # RSS per connection in 256-byte steps: mostly identical readings, the odd one a page off.
    out = tmp_path / "results"
    readings = [512.0, 512.0, 512.0, 768.0, 512.0, 512.0, 768.0, 768.0]
    _write_results(out, "box", [{"m.track_rss": _row([v], [], 0.0, 0.0)} for v in readings])
    (noise,) = th.measure_noise(out)
    assert noise.step == pytest.approx(0.0)  # the median pair does not move...
    assert noise.resolution == pytest.approx(0.5)  # ...but one quantum is 50% of the value
    assert noise.threshold() == pytest.approx(1.0)  # two quanta, above the noise cap
    # asv reports a jump only when it exceeds the threshold: 512 -> 768 or 1024 is not reported,
    # 512 -> 1536 (four quanta above the old level, on the last three commits) is.
    from asv.step_detect import detect_regressions, detect_steps

    assert detect_regressions(detect_steps(readings), noise.threshold())[2] is None
    assert detect_regressions(detect_steps(readings), 0.05)[2]  # the floor alone cried wolf
    doubled = [*readings, 1024.0, 1024.0]
    assert detect_regressions(detect_steps(doubled), noise.threshold())[2] is None
    tripled = [*readings, 1536.0, 1536.0, 1536.0]
    assert detect_regressions(detect_steps(tripled), noise.threshold())[2]


def test_a_single_lasting_step_is_a_change_not_a_quantum(tmp_path: Path) -> None:
    out = tmp_path / "results"
    readings = [3.0, 3.0, 3.0, 3.0, 5.0, 5.0, 5.0]  # a pool that now grows to 5: real
    _write_results(out, "box", [{"m.track_size": _row([v], [], 0.0, 0.0)} for v in readings])
    (noise,) = th.measure_noise(out)
    assert noise.resolution is None
    assert noise.threshold() == pytest.approx(th.FLOOR)


def test_continuous_measures_have_no_resolution(results: Path) -> None:
    assert all(n.resolution is None for n in th.measure_noise(results))


def test_block_keeps_the_floors_and_lists_entries_above_them(results: Path) -> None:
    block = th.thresholds_block(th.measure_noise(results))
    assert block == {
        r"^(?!instructions\.)": 0.05,
        r"instructions\.": 0.01,
        r"m\.time_noisy(\(|@|$)": 0.5,
        r"m\.time_param\(1\)(@|$)": 0.2,
        r"m\.time_param\(2\)(@|$)": 0.2,
        r"m\.time_quiet(\(|@|$)": 0.08,
    }
    # The entries at their floor (no estimate: m.track_two) get it from the default key alone.
    assert th.effective_threshold(block, "m.track_two") == th.FLOOR
    assert th.effective_threshold(block, "m.time_quiet@main") == 0.08


def _track(value: float) -> list[Any]:
    """A ``track_`` row as asv writes it: no statistics, trailing empty columns dropped."""
    return [[value], [], "v1", 0, 0.1]


@pytest.fixture
def counts(tmp_path: Path) -> Path:
    """Instruction counts beside timed benchmarks, and benchmarks with unequal parameters."""
    out = tmp_path / "results"
    series = []
    for i in range(6):
        count = (1.000, 1.003)[i % 2]  # 0.3% run-to-run: 4 x 0.3% -> 2%
        queue = (1.00, 1.02)[i % 2]  # 2%: 4 x 2% -> 8%
        kuzu = (1.00, 1.10)[i % 2]  # 10%: 4 x 10% -> 40%
        series.append(
            {
                "instructions.Quiet.track_instructions": _track(count * 41_000),
                "instructions.Exact.track_instructions": _track(12_345.0),  # repeats exactly
                # Named like a count but not one: the ordinary floor.
                "m.track_instructions_total": _track(count * 100.0),
                "m.time_timed": _row([kuzu * 1e-3], [], ci=0.01, iqr=0.02),
                # Three combinations of unequal noise, as DriverRatios.track_ratio's.
                "m.Ratios.track_ratio": [
                    [queue * 1.2, kuzu * 3.0, 2.0],
                    [["'pool_checkout/asyncio.Queue'", "'kuzu_read/kuzu executor'", "'flat'"]],
                    "v1",
                    0,
                    0.1,
                ],
                # Two parameters: four quiet entries named "m.Grid.time_grid('a', 1)" and so on.
                "m.Grid.time_grid": _row(
                    [1e-3, 2e-3, 3e-3, 4e-3], [["'a'", "'b'"], ["1", "10"]], ci=0.001, iqr=0.002
                ),
            }
        )
    _write_results(out, "box", series)
    return out


QUEUE = "m.Ratios.track_ratio('pool_checkout/asyncio.Queue')"
KUZU = "m.Ratios.track_ratio('kuzu_read/kuzu executor')"
FLAT = "m.Ratios.track_ratio('flat')"


def _records(**spreads: float) -> dict[str, WorkloadNoise]:
    return {
        w: WorkloadNoise(w, f"instructions.{w}", "0" * 40, 10, [1000.0, 1000.0 * (1 + s)])
        for w, s in spreads.items()
    }


def test_counts_get_the_count_floor_not_the_default(
    counts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(COUNT_BENCHMARKS, "instructions.Quiet", "sqlite_write")
    monkeypatch.setitem(COUNT_BENCHMARKS, "instructions.Exact", "pool_checkout")
    records = _records(sqlite_write=0.006, pool_checkout=0.0)
    noise = {n.name: n for n in th.measure_noise(counts, records=records)}
    quiet = noise["instructions.Quiet.track_instructions"]
    # Held to 3 x its repeat spread, not to its history's steps (0.3% there, x 4).
    assert quiet.is_count and quiet.step == pytest.approx(0.003)
    assert quiet.repeat == pytest.approx(0.006)
    assert quiet.threshold() == pytest.approx(0.018)  # FLOOR would have made it 5%
    assert noise["instructions.Exact.track_instructions"].threshold() == th.COUNT_FLOOR
    assert not noise["m.track_instructions_total"].is_count
    assert noise["m.track_instructions_total"].repeat is None
    assert noise["m.track_instructions_total"].threshold() == th.FLOOR
    block = th.thresholds_block(noise.values())
    # What asv applies, branch suffix or not: no default key lifts a count to 5%.
    for suffix in ("", "@main"):
        name = "instructions.Quiet.track_instructions" + suffix
        assert th.effective_threshold(block, name) == pytest.approx(0.018)
        assert th.effective_threshold(block, "instructions.Exact.track_instructions" + suffix) == (
            th.COUNT_FLOOR
        )
        assert th.effective_threshold(block, "m.track_instructions_total" + suffix) == th.FLOOR
    defaults = th.default_keys()
    assert th.effective_threshold(defaults, "instructions.New.track_instructions") == th.COUNT_FLOOR
    assert th.effective_threshold(defaults, "m.time_new") == th.FLOOR
    assert th.effective_threshold(defaults, "xinstructions.time_new") == th.FLOOR
    # Each entry matches exactly one default key.
    for name in ("instructions.New.track_instructions", "m.time_new", "instructions_x.time_new"):
        assert sum(bool(re.match(k, name)) for k in defaults) == 1, name


def test_count_floor_is_an_option(counts: Path) -> None:
    done = CliRunner().invoke(
        th.command,
        [
            "--results-dir", str(counts), "--count-floor", "0.03", "--floor", "0.06",
            "--count-noise", str(counts / "none.json"),
            "--asv-config", str(counts / "no-config.json"),
        ],
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    block = json.loads(done.stdout)
    assert block[r"^(?!instructions\.)"] == 0.06 and block[r"instructions\."] == 0.03
    assert th.effective_threshold(block, "instructions.Quiet.track_instructions") == 0.03


def test_each_parameter_combination_gets_its_own_threshold(counts: Path) -> None:
    noise = {n.name: n for n in th.measure_noise(counts)}
    assert noise[QUEUE].threshold() == pytest.approx(0.08)
    assert noise[KUZU].threshold() == pytest.approx(0.40)  # pooled, QUEUE would have had this
    assert noise[FLAT].threshold() == th.FLOOR
    assert "m.Grid.time_grid('b', 10)" in noise
    block = th.thresholds_block(noise.values())
    assert th.effective_threshold(block, QUEUE) == pytest.approx(0.08)
    assert th.effective_threshold(block, KUZU) == pytest.approx(0.40)
    assert th.effective_threshold(block, FLAT) == th.FLOOR
    assert th.effective_threshold(block, FLAT + "@main") == th.FLOOR
    for entry in (QUEUE, KUZU):
        regex = noise[entry].regex
        assert regex == re.escape(entry) + "(@|$)"
        assert block[regex] == noise[entry].threshold()
        assert re.match(regex, entry) and re.match(regex, entry + "@main")
        others = [e for e in (QUEUE, KUZU, FLAT) if e != entry]
        for name in [*others, "m.Ratios.track_ratio", entry + "x", entry[:-1], "x" + entry]:
            assert not re.match(regex, name), (regex, name)
    # The table: one row per entry.
    done = CliRunner().invoke(
        th.command, ["--results-dir", str(counts), "--asv-config", str(counts / "none.json")]
    )
    assert done.exit_code == 0, done.output
    rows = done.stderr.splitlines()[1:-1]  # the header, the rows, the goal's summary line
    assert len(rows) == len(noise)
    for entry in noise:
        assert sum(row.startswith(entry + " ") for row in rows) == 1, entry


def _asv_thresholds(
    block: dict[str, float], benchmark: dict[str, Any], branch: str | None
) -> list[tuple[str, float]]:
    """(entry name, threshold) as asv 0.6.6's regression detection derives them."""
    from asv.config import Config
    from asv.graph import Graph
    from asv.plugins.regressions import _GraphDataFilter

    conf = Config()
    conf.regressions_thresholds = block
    graph = Graph(benchmark["name"], {"branch": branch} if branch else {})
    combos = max(1, len(list(itertools.product(*benchmark["params"]))))
    for revision in range(4):
        value = [1.0 + revision] * combos if benchmark["params"] else 1.0 + revision
        graph.add_data_point(revision, value)
    found = _GraphDataFilter(conf, None, {f"{r:040x}": r for r in range(4)})
    return [(entry, threshold) for _, entry, _, threshold in found.get_graph_data(graph, benchmark)]


@pytest.mark.parametrize("branch", [None, "main"])
def test_effective_threshold_is_what_asv_applies(counts: Path, branch: str | None) -> None:
    pytest.importorskip("asv.plugins.regressions")
    noise = th.measure_noise(counts)
    block = th.thresholds_block(noise)
    benchmarks = [
        {"name": "instructions.Quiet.track_instructions", "params": []},
        {"name": "instructions.Exact.track_instructions", "params": []},
        {"name": "m.track_instructions_total", "params": []},
        {"name": "m.time_timed", "params": []},
        {"name": "m.time_unmeasured", "params": []},
        {
            "name": "m.Ratios.track_ratio",
            "params": [["'pool_checkout/asyncio.Queue'", "'kuzu_read/kuzu executor'", "'flat'"]],
        },
        # Two parameters: asv joins them with ", "; only the default key matches.
        {"name": "m.Grid.time_grid", "params": [["'a'", "'b'"], ["1", "10"]]},
    ]
    suffix = f"@{branch}" if branch else ""
    seen = []
    for benchmark in benchmarks:
        for entry, threshold in _asv_thresholds(block, benchmark, branch):
            seen.append(entry)
            assert th.effective_threshold(block, entry + suffix) == threshold, entry
    # asv names the entries as measure_noise does.
    assert {n.name for n in noise} <= set(seen)
    assert "m.Grid.time_grid('b', 10)" in seen
    # And with no key matching at all, both fall back to asv's 5%.
    for entry, threshold in _asv_thresholds({}, benchmarks[0], branch):
        assert threshold == th.effective_threshold({}, entry) == th.ASV_DEFAULT


@pytest.mark.parametrize(
    ("entry", "matches"),
    [
        ("m.time_param", True),
        ("m.time_param(1)", True),
        ("m.time_param@main", True),
        ("m.time_param(2)@main", True),
        ("m.time_param_big", False),
        ("m.time_paramx", False),
        ("xm.time_param", False),
    ],
)
def test_name_regex_matches_as_asv_does(entry: str, matches: bool) -> None:
    # asv: re.match(regex, entry_name + branch_suffix) (plugins/regressions.py _get_threshold).
    assert bool(re.match(th.name_regex("m.time_param"), entry)) is matches


def test_cli_prints_the_block_without_a_config(results: Path) -> None:
    done = CliRunner().invoke(
        th.command, ["--results-dir", str(results), "--asv-config", str(results / "none.json")]
    )
    assert done.exit_code == 0, done.output
    block = json.loads(done.stdout)
    assert block == th.thresholds_block(th.measure_noise(results))
    assert ".*" not in block and block[r"^(?!instructions\.)"] == 0.05
    assert "capped" in done.stderr and "m.time_quiet" in done.stderr


# --------------------------------------------------------------------------------------------
# thresholds derived at publish time: asv.conf.json holds the policy, publish_block the rest

OVERRIDE = r"m\.time_param\(1\)(@|$)"  # a person's choice for one entry


def _config(tmp_path: Path, results: Path, policy: dict[str, float]) -> Path:
    config = tmp_path / "asv.conf.json"
    config.write_text(
        json.dumps(
            {
                "version": 1,
                "repo": ".",
                "branches": ["main"],
                "results_dir": str(results),
                "html_dir": str(tmp_path / "html"),
                "regressions_thresholds": policy,
            }
        )
    )
    return config


def test_the_policy_floors_set_the_derivation(results: Path) -> None:
    noise = th.measure_noise(results)
    policy = {r"^(?!instructions\.)": 0.1, r"instructions\.": 0.02}
    assert th.policy_floors(policy) == (0.1, 0.02)
    assert th.policy_floors({}) == (th.FLOOR, th.COUNT_FLOOR)
    block = th.publish_block(policy, noise)
    assert block == th.thresholds_block(noise, floor=0.1, count_floor=0.02)
    # m.time_quiet's 8% is under this floor: no key of its own.
    assert th.effective_threshold(block, "m.time_quiet") == 0.1
    assert th.publish_block({}, noise) == th.thresholds_block(noise)


def test_an_override_replaces_the_derivation_for_the_entries_it_matches(results: Path) -> None:
    noise = th.measure_noise(results)
    derived = th.thresholds_block(noise)
    assert derived[r"m\.time_param\(1\)(@|$)"] == 0.2  # what the noise gives it
    policy = {**th.default_keys(), OVERRIDE: 0.12}
    assert th.overrides(policy) == {OVERRIDE: 0.12}
    block = th.publish_block(policy, noise)
    # Lowered from 0.2 to 0.12: asv's maximum over matching keys would have kept 0.2.
    assert th.effective_threshold(block, "m.time_param(1)") == 0.12
    assert th.effective_threshold(block, "m.time_param(1)@main") == 0.12
    # Every other entry keeps its derived threshold.
    for n in noise:
        if n.name != "m.time_param(1)":
            assert th.effective_threshold(block, n.name) == th.effective_threshold(derived, n.name)
    assert list(block)[:2] == list(th.default_keys()) and list(block)[-1] == OVERRIDE


def test_the_command_derives_from_the_configs_policy(results: Path, tmp_path: Path) -> None:
    policy = {**th.default_keys(), OVERRIDE: 0.12}
    config = _config(tmp_path, results, policy)
    done = CliRunner().invoke(th.command, ["--asv-config", str(config)])
    assert done.exit_code == 0, done.output
    block = json.loads(done.stdout)
    assert (
        block == th.derive(policy, results) == th.publish_block(policy, th.measure_noise(results))
    )
    (row,) = [r for r in done.stderr.splitlines() if r.startswith("m.time_param(1) ")]
    assert row.endswith("0.120 (override)")


def test_derive_without_results_is_the_policy(tmp_path: Path) -> None:
    policy = {OVERRIDE: 0.3}
    assert th.derive(policy, tmp_path / "none") == {**th.default_keys(), OVERRIDE: 0.3}


def test_asv_loads_the_derived_block_when_publishing(
    results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What asv_publish hands asv: the block the command prints, from the same results."""
    asv_config = pytest.importorskip("asv.config")
    from tristore_bench import asv_publish

    monkeypatch.setattr(asv_config.Config, "load", asv_config.Config.load)
    policy = {r"^(?!instructions\.)": 0.05, r"instructions\.": 0.02, OVERRIDE: 0.12}
    config = _config(tmp_path, results, policy)
    tolerances = asv_publish.count_tolerances({})
    asv_publish.install_thresholds(tolerances, {})
    conf = asv_config.Config.load(str(config))
    done = CliRunner().invoke(
        th.command,
        ["--asv-config", str(config), "--count-noise", str(tmp_path / "no-noise.json")],
    )
    assert done.exit_code == 0, done.output
    assert conf.regressions_thresholds == json.loads(done.stdout)
    assert conf.regressions_thresholds != policy  # the derived keys were added
    # The count steps' tolerance follows the policy's count floor.
    assert set(tolerances.values()) == {0.02}


def test_cli_machine_filter_and_missing_results(results: Path, tmp_path: Path) -> None:
    done = CliRunner().invoke(th.command, ["--results-dir", str(results), "--machine", "other"])
    assert done.exit_code == 1 and "no benchmark results" in done.output
    done = CliRunner().invoke(th.command, ["--results-dir", str(tmp_path / "none")])
    assert done.exit_code == 1 and "run the benchmarks first" in done.output


def test_ref_that_looks_like_a_git_option_is_refused(site: dict[str, Any]) -> None:
    done = _invoke(site, "--since=--all")
    assert done.exit_code == 2
    assert "is not a commit" in done.output
