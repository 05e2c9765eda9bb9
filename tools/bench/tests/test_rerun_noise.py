"""``tristore-bench rerun-noise``: which commits it runs again, how it compares a re-run with the
stored results (asv 0.6 result files shaped as results/tristore-2core/ holds them), the record,
and the re-run term of the thresholds' derivation. asv itself is not run.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from _asv_results import COLUMNS
from click.testing import CliRunner

from tristore_bench import rerun_noise as rn
from tristore_bench import thresholds as th

MACHINE = "tristore-2core"
ENV = "virtualenv-py3.11-aiosqlite0.22.1-kuzu0.11.3-redis8.1.0"
RATIO = "ratios.DriverRatios.track_ratio"
PAIRS = ["'pool_checkout/asyncio.Queue'", "'kuzu_read/kuzu executor'"]
RSS = "memory.RssPerConnection.track_rss_per_connection"
PEAK = "memory.PeakMemory.peakmem_place_orders_x300"
OVERHEAD = "coordinated.CoordinatedWrites.track_overhead_ratio"
WALL = "pools.PoolCheckout.time_acquire_release_x1000"
COUNT = "instructions.SQLiteWrite.track_instructions"
VERSIONS = {RATIO: "registry-1", RSS: "f5887ab0", PEAK: "94a53684", OVERHEAD: "3475dc13"}
VERSIONS |= {WALL: "97707016", COUNT: "count-3"}
PARAMS = {RATIO: [PAIRS], RSS: [["'sqlite'", "'graph'", "'redis'"]]}
DAY = 86_400_000
T0 = 1_795_000_000_000


def commit(i: int) -> str:
    return f"{i:02d}" + "c0ffee" * 6 + "ab"


def track(values: list[float | None], benchmark: str, started: int, version: str = "") -> list[Any]:
    """A track_ / peakmem_ row: no statistics, so asv drops the columns after ``duration``."""
    return [values, PARAMS.get(benchmark, []), version or VERSIONS[benchmark], started, 1.7656]


def timed(value: float, started: int) -> list[Any]:
    """A time_ row, with asv's statistics."""
    ci = [value * 0.99], [value * 1.01], [value * 0.995], [value * 1.005]
    return [[value], [], VERSIONS[WALL], started, 0.24472, *ci, [1], [10]]


def write_result(
    results: Path, i: int, rows: dict[str, list[Any]], *, date: int | None = None
) -> Path:
    """One commit's results file, with every key of a real one (results/tristore-2core/)."""
    machine_dir = results / MACHINE
    machine_dir.mkdir(parents=True, exist_ok=True)
    (machine_dir / "machine.json").write_text(
        json.dumps({"machine": MACHINE, "num_cpu": "2", "os": "Linux 6.18.44", "version": 1})
    )
    requirements = {"aiosqlite": "0.22.1", "kuzu": "0.11.3", "redis": "8.1.0"}
    data = {
        "commit_hash": commit(i),
        "env_name": ENV,
        "date": T0 + i * DAY if date is None else date,
        "params": {"arch": "x86_64", "machine": MACHINE, "num_cpu": "2", "python": "3.11"}
        | requirements,
        "python": "3.11",
        "requirements": requirements,
        "env_vars": {},
        "result_columns": COLUMNS,
        "results": rows,
        "durations": {"<setup_cache flows:131>": 8.57261},
        "version": 2,
    }
    path = machine_dir / f"{commit(i)[:8]}-{ENV}.json"
    path.write_text(json.dumps(data))
    return path


def write_suite(results: Path, versions: dict[str, str] | None = None) -> None:
    """results/benchmarks.json as asv writes it: one description per benchmark, plus "version"."""
    suite: dict[str, Any] = {"version": 2}
    for name, version in (versions or VERSIONS).items():
        suite[name] = {
            "code": "...",
            "name": name,
            "param_names": ["pair"] if name in PARAMS else [],
            "params": PARAMS.get(name, []),
            "timeout": 120,
            "type": "time" if ".time_" in name else "track",
            "unit": "seconds",
            "version": version,
        }
    results.mkdir(parents=True, exist_ok=True)
    (results / "benchmarks.json").write_text(json.dumps(suite))


def suite_of(results: Path) -> dict[str, dict[str, Any]]:
    return rn.load_suite(results)


@pytest.fixture
def stored(tmp_path: Path) -> Path:
    """Seven commits: the memory entries on the first five, the ratios on the last four."""
    results = tmp_path / "results"
    write_suite(results)
    for i in range(7):
        rows: dict[str, list[Any]] = {WALL: timed(1.4e-3, T0 + i * DAY), OVERHEAD: []}
        rows[OVERHEAD] = track([1.28 + 0.01 * i], OVERHEAD, T0 + i * DAY)
        if i < 5:
            rows[RSS] = track([181760.0, 256.0, 38144.0], RSS, T0 + i * DAY)
            rows[PEAK] = track([134557696.0], PEAK, T0 + i * DAY)
        if i >= 3:
            rows[RATIO] = track([2.0, 1.1], RATIO, T0 + i * DAY)
        write_result(results, i, rows)
    return results


def test_the_fixture_is_what_asv_reads(stored: Path) -> None:
    asv_results = pytest.importorskip("asv.results")
    loaded = asv_results.Results.load(str(next((stored / MACHINE).glob("03*.json"))))
    assert loaded.get_result_value(RATIO, [PAIRS]) == [2.0, 1.1]
    assert loaded.get_result_value(RSS, PARAMS[RSS]) == [181760.0, 256.0, 38144.0]
    assert loaded.started_at[RATIO] == T0 + 3 * DAY


# -- which benchmarks, which commits ----------------------------------------------------------


def test_the_default_selects_ratios_and_sizes_as_asv_would(stored: Path) -> None:
    suite = suite_of(stored)
    pattern = rn.default_pattern(suite)
    entries = rn.selected_entries(suite, pattern)
    assert set(entries) == {
        f"{RATIO}({PAIRS[0]})",
        f"{RATIO}({PAIRS[1]})",
        f"{RSS}('sqlite')",
        f"{RSS}('graph')",
        f"{RSS}('redis')",
        PEAK,
        OVERHEAD,
    }
    assert {th.kind(e) for e in entries} == {th.Kind.RATIO, th.Kind.SIZE}
    # asv's own filter (asv.benchmarks.Benchmarks) selects the same benchmarks and combinations.
    benchmarks = pytest.importorskip("asv.benchmarks")

    class Conf:
        benchmark_dir = str(stored)

    chosen = benchmarks.Benchmarks(Conf(), list(suite.values()), regex=pattern)
    assert set(chosen) == {RATIO, RSS, PEAK, OVERHEAD}
    assert chosen.benchmark_selection[RATIO] == [0, 1]
    # And the exact pattern of some entries selects those alone.
    exact = rn.entries_pattern([f"{RSS}('graph')", PEAK])
    assert set(rn.selected_entries(suite, exact)) == {f"{RSS}('graph')", PEAK}
    narrowed = benchmarks.Benchmarks(Conf(), list(suite.values()), regex=exact)
    assert set(narrowed) == {RSS, PEAK} and narrowed.benchmark_selection[RSS] == [1]


def test_each_entry_gets_its_oldest_middle_and_newest_commit() -> None:
    history = {"a": [(T0 + i, commit(i)) for i in range(9)]}
    assert rn.default_commits(history) == [commit(0), commit(4), commit(8)]
    # Fewer commits than parts: all of them.
    assert rn.default_commits({"a": [(T0, commit(0)), (T0 + 1, commit(1))]}) == [
        commit(0),
        commit(1),
    ]
    assert rn.default_commits({"a": [(T0, commit(0))]}) == [commit(0)]
    assert rn.default_commits({}) == []


def test_overlapping_histories_share_their_commits() -> None:
    # "b" spans all nine commits, "a" the last three: each third of "b" already holds a commit
    # chosen for "a" only in its newest third, so "b" adds its oldest and its middle one.
    history = {
        "a": [(T0 + i, commit(i)) for i in range(6, 9)],
        "b": [(T0 + i, commit(i)) for i in range(9)],
    }
    assert rn.default_commits(history) == [commit(0), commit(4), commit(6), commit(7), commit(8)]
    # One history for both: three commits, not six.
    same = {"a": history["b"], "b": history["b"]}
    assert rn.default_commits(same) == [commit(0), commit(4), commit(8)]


def test_commits_hold_the_entries_at_their_current_version(stored: Path) -> None:
    # The ratio's first two readings were made with another version of its code.
    for i in (3, 4):
        path = next((stored / MACHINE).glob(f"{commit(i)[:8]}-*.json"))
        data = json.loads(path.read_text())
        data["results"][RATIO][2] = "registry-0"
        path.write_text(json.dumps(data))
    suite = suite_of(stored)
    entries = rn.selected_entries(suite, rn.default_pattern(suite))
    history = rn.histories(th.readings(stored, [MACHINE]), entries, rn.current_versions(suite))
    assert [c for _, c in history[f"{RATIO}({PAIRS[0]})"]] == [commit(5), commit(6)]
    assert [c for _, c in history[PEAK]] == [commit(i) for i in range(5)]
    commits = rn.default_commits(history)
    assert commits == [commit(0), commit(2), commit(4), commit(5), commit(6)]
    # Each commit runs the entries it holds a stored reading of, and nothing else.
    planned = dict((tuple(found), entries) for entries, found in rn.runs(history, commits))
    assert OVERHEAD in planned[(commit(0), commit(2), commit(4))]
    assert f"{RATIO}({PAIRS[0]})" not in planned[(commit(0), commit(2), commit(4))]
    assert set(planned[(commit(5), commit(6))]) == {
        OVERHEAD,
        f"{RATIO}({PAIRS[0]})",
        f"{RATIO}({PAIRS[1]})",
    }


# -- comparing ---------------------------------------------------------------------------------


def rerun_of(tmp_path: Path, rows_by_commit: dict[int, dict[str, list[Any]]]) -> Path:
    """A re-run's scratch results directory, as asv writes it."""
    results = tmp_path / "rerun"
    write_suite(results)
    for i, rows in rows_by_commit.items():
        write_result(results, i, rows)
    return results


def test_a_rerun_is_compared_with_the_stored_reading_of_its_commit(
    stored: Path, tmp_path: Path
) -> None:
    later = T0 + 30 * DAY
    again = rerun_of(
        tmp_path,
        {
            4: {
                RSS: track([181760.0, 512.0, 38144.0], RSS, later),  # one page more on graph
                PEAK: track([141285580.8], PEAK, later),  # +5%
                OVERHEAD: track([1.32 * 1.1], OVERHEAD, later),  # +10%
            },
            6: {RATIO: track([1.8, 1.1], RATIO, later), OVERHEAD: track([1.34], OVERHEAD, later)},
        },
    )
    suite = suite_of(stored)
    entries = rn.selected_entries(suite, rn.default_pattern(suite))
    found, skipped = rn.compare(
        th.readings(stored, [MACHINE]),
        th.readings(again, [MACHINE]),
        rn.current_versions(suite),
        entries,
    )
    assert skipped == []
    got = {(c.entry, c.commit): c for c in found}
    assert got[(f"{RSS}('graph')", commit(4))].difference == pytest.approx(1.0)
    assert got[(f"{RSS}('sqlite')", commit(4))].difference == 0.0
    assert got[(PEAK, commit(4))].difference == pytest.approx(0.05)
    assert got[(OVERHEAD, commit(4))].difference == pytest.approx(0.1)
    assert got[(OVERHEAD, commit(6))].difference == pytest.approx(0.0)
    # A drop counts as much as a rise: max(a / b, b / a) - 1.
    ratio = got[(f"{RATIO}({PAIRS[0]})", commit(6))]
    assert (ratio.stored, ratio.rerun) == (2.0, 1.8)
    assert ratio.difference == pytest.approx(2.0 / 1.8 - 1)
    assert ratio.stored_started == T0 + 6 * DAY
    # The wall-time benchmark was not selected: nothing of it is compared.
    assert all(c.entry != WALL for c in found)


def test_another_version_is_skipped_and_said_so(stored: Path, tmp_path: Path) -> None:
    path = next((stored / MACHINE).glob(f"{commit(4)[:8]}-*.json"))
    data = json.loads(path.read_text())
    data["results"][PEAK][2] = "older"
    path.write_text(json.dumps(data))
    later = T0 + 30 * DAY
    again = rerun_of(
        tmp_path,
        {
            4: {PEAK: track([2.0e8], PEAK, later), OVERHEAD: track([1.32], OVERHEAD, later)},
            # The benchmarks changed since results/benchmarks.json: the re-run is another version.
            5: {OVERHEAD: track([1.33], OVERHEAD, later, version="edited")},
            # A commit whose stored result lacks the entry.
            6: {PEAK: track([1.0e8], PEAK, later)},
        },
    )
    suite = suite_of(stored)
    found, skipped = rn.compare(
        th.readings(stored, [MACHINE]),
        th.readings(again, [MACHINE]),
        rn.current_versions(suite),
        rn.selected_entries(suite, rn.default_pattern(suite)),
    )
    assert [(c.entry, c.commit) for c in found] == [(OVERHEAD, commit(4))]
    reasons = {(s.entry, s.commit): s.reason for s in skipped}
    assert reasons == {
        (PEAK, commit(4)): f"stored version older, current {VERSIONS[PEAK]}",
        (OVERHEAD, commit(5)): f"re-run version edited, current {VERSIONS[OVERHEAD]}",
        (PEAK, commit(6)): "no stored result",
    }


# -- the record --------------------------------------------------------------------------------


def record(entry: str, values: list[tuple[float, float]], date: str = "2026-12-07T10:00:00Z"):
    return rn.EntryRerun(
        entry=entry,
        machine=MACHINE,
        date=date,
        command="tristore-bench rerun-noise",
        commits=[commit(i) for i in range(len(values))],
        stored=[a for a, _ in values],
        rerun=[b for _, b in values],
        stored_measured=["2026-12-06T15:22:18Z"] * len(values),
        version="v1",
    )


def test_the_record_round_trips_and_merges(tmp_path: Path) -> None:
    path = tmp_path / "rerun-noise.json"
    assert rn.load_records(path) == {} and rn.load_rerun(path) == {}
    first = {PEAK: record(PEAK, [(100.0, 103.0)]), OVERHEAD: record(OVERHEAD, [(1.0, 1.2)])}
    rn.write_records(first, path)
    assert rn.load_records(path) == first
    body = json.loads(path.read_text())
    assert body["entries"][OVERHEAD]["differences"] == [pytest.approx(0.2)]
    assert body["entries"][OVERHEAD]["max"] == pytest.approx(0.2)
    assert {"commits", "stored", "rerun", "date", "machine", "command"} <= set(
        body["entries"][PEAK]
    )
    # A new measurement of an entry replaces its old one; the others stay.
    newer = {OVERHEAD: record(OVERHEAD, [(1.0, 1.01), (1.1, 1.0)], date="2026-12-08T10:00:00Z")}
    rn.write_records(rn.merge(rn.load_records(path), newer), path)
    # The derivation reads the offset: one day's two readings, 1% and 10% off: their median.
    assert rn.load_rerun(path) == {PEAK: pytest.approx(0.03), OVERHEAD: pytest.approx(0.055)}
    assert rn.load_records(path)[OVERHEAD].date == "2026-12-08T10:00:00Z"


def test_the_offset_is_the_day_that_moved_most_and_not_a_lone_reading() -> None:
    one_off = record(OVERHEAD, [(1.0, 1.02), (1.0, 1.15), (1.0, 0.97)])
    assert one_off.max == pytest.approx(0.15)
    assert one_off.offset == pytest.approx(0.0309, abs=1e-4)  # the median: 1.0 / 0.97 - 1
    shifted_day = dataclasses.replace(
        record(OVERHEAD, [(1.0, 1.02), (1.0, 1.01), (1.0, 1.08)]),
        stored_measured=["2026-11-22T13:00:00Z", "2026-11-22T14:00:00Z", "2026-12-06T15:00:00Z"],
    )
    assert shifted_day.offset == pytest.approx(0.08)  # one day read 8% off: it counts as it is
    unknown = dataclasses.replace(one_off, stored_measured=[None, None, None])
    assert unknown.offset == one_off.offset


def test_an_unreadable_record_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "rerun-noise.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="rerun-noise"):
        rn.load_rerun(path)
    path.write_text(json.dumps({"entries": {PEAK: {"machine": MACHINE}}}))
    with pytest.raises(ValueError, match="rerun-noise"):
        rn.load_rerun(path)


def test_records_from_comparisons() -> None:
    found = [
        rn.Comparison(PEAK, commit(0), 100.0, 110.0, T0),
        rn.Comparison(PEAK, commit(2), 100.0, 95.0, None),
    ]
    made = rn.records_from(
        found,
        machine=MACHINE,
        date="2026-12-07T10:00:00Z",
        command="tristore-bench rerun-noise",
        versions=VERSIONS,
        entries={PEAK: PEAK},
    )
    assert made[PEAK].commits == [commit(0), commit(2)]
    assert made[PEAK].max == pytest.approx(0.1)
    assert made[PEAK].stored_measured == ["2026-11-18T11:06:40Z", None]
    assert made[PEAK].version == VERSIONS[PEAK]


# -- the derivation ------------------------------------------------------------------------------


def test_a_large_rerun_difference_lifts_the_threshold_and_makes_the_entry_context() -> None:
    quiet = th.Noise(benchmark=OVERHEAD, commits=20, ci=None, iqr=None, step=0.01)
    assert quiet.threshold() == th.FLOOR and th.gated(quiet, quiet.threshold())
    moved = th.Noise(benchmark=OVERHEAD, commits=20, ci=None, iqr=None, step=0.01, rerun=0.3)
    assert moved.threshold() >= th.K_RERUN * 0.3
    assert moved.threshold() == pytest.approx(0.45)
    assert moved.band == 0.3
    assert not th.gated(moved, moved.threshold())
    # Not capped below what was seen: a 40% re-run is held to 60%, above the 50% cap.
    wild = th.Noise(benchmark=OVERHEAD, commits=20, ci=None, iqr=None, step=0.5, rerun=0.4)
    assert wild.threshold() == pytest.approx(0.6)
    assert wild.threshold() > th.CAP
    # A small re-run difference changes nothing: the history's figure stands.
    small = th.Noise(benchmark=OVERHEAD, commits=20, ci=None, iqr=None, step=0.02, rerun=0.02)
    assert small.threshold() == pytest.approx(0.08) and th.gated(small, small.threshold())
    # The re-run term alone is a measured noise: no step yet, still a threshold.
    alone = th.Noise(benchmark=PEAK, commits=1, ci=None, iqr=None, step=None, rerun=0.03)
    assert alone.threshold() == pytest.approx(0.05) and alone.band == 0.03


def test_measure_noise_reads_the_rerun_record(stored: Path, tmp_path: Path) -> None:
    reruns = {OVERHEAD: 0.3, f"{RSS}('graph')": 0.02, WALL: 0.2}
    noise = {n.name: n for n in th.measure_noise(stored, records={}, reruns=reruns)}
    assert noise[OVERHEAD].rerun == 0.3 and noise[f"{RSS}('sqlite')"].rerun is None
    assert noise[OVERHEAD].threshold() == pytest.approx(0.45)
    block = th.publish_block({}, noise.values())
    assert th.effective_threshold(block, OVERHEAD) == pytest.approx(0.45)
    assert not th.gated(noise[OVERHEAD], th.effective_threshold(block, OVERHEAD))
    # Without the record the same history gates it.
    plain = {n.name: n for n in th.measure_noise(stored, records={}, reruns={})}
    assert th.gated(
        plain[OVERHEAD], th.effective_threshold(th.publish_block({}, plain.values()), OVERHEAD)
    )
    # The default record file is read when none is given.
    path = tmp_path / "rerun-noise.json"
    rn.write_records({OVERHEAD: record(OVERHEAD, [(1.0, 1.3)])}, path)
    assert rn.load_rerun(path) == {OVERHEAD: pytest.approx(0.3)}


def test_a_count_ignores_a_rerun_figure(tmp_path: Path) -> None:
    results = tmp_path / "results"
    write_suite(results)
    for i in range(3):
        write_result(results, i, {COUNT: track([1000.0 + i], COUNT, T0 + i * DAY)})
    (noise,) = th.measure_noise(results, records={}, reruns={COUNT: 0.5})
    assert noise.rerun is None and noise.threshold() < 0.05


# -- the command's plumbing, with asv replaced by a writer of its results ------------------------


def test_the_command_compares_records_and_prints_the_table(
    stored: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "asv.conf.json"
    config.write_text(json.dumps({"version": 1, "repo": ".", "results_dir": str(stored)}))
    before = {p: p.read_bytes() for p in stored.rglob("*") if p.is_file()}
    calls: list[tuple[list[str], str]] = []

    def fake_asv(paths: Any, commits: list[str], machine: str, pattern: str, where: Path) -> int:
        calls.append((commits, pattern))
        later = T0 + 30 * DAY
        for c in commits:
            i = int(c[:2])
            rows = {OVERHEAD: track([(1.28 + 0.01 * i) * 1.3], OVERHEAD, later)}  # +30%
            if i < 5:
                rows[PEAK] = track([134557696.0], PEAK, later)
            write_result(where, i, rows)
        write_suite(where)
        return 0

    monkeypatch.setattr(rn, "run_asv", fake_asv)
    path = tmp_path / "record.json"
    args = ["--asv-config", str(config), "--record", str(path), "--bench", f"{OVERHEAD}|{PEAK}"]
    done = CliRunner().invoke(rn.command, args)
    assert done.exit_code == 0, done.output
    # One third of each history each (the overhead's thirds already hold the memory's commits),
    # each commit run once; results/ untouched.
    assert sorted(c for commits, _ in calls for c in commits) == [commit(i) for i in (0, 2, 4)]
    assert {p: p.read_bytes() for p in stored.rglob("*") if p.is_file()} == before
    recorded = rn.load_records(path)
    assert recorded[OVERHEAD].max == pytest.approx(0.3)
    assert recorded[OVERHEAD].commits == [commit(i) for i in (0, 2, 4)]
    assert recorded[PEAK].max == 0.0
    assert "rerun-noise" in recorded[PEAK].command
    lines = {line.split()[0]: line for line in done.stdout.splitlines()[1:]}
    assert "EXCEEDS" in lines[OVERHEAD] and lines[OVERHEAD].rstrip().endswith("context")
    assert "EXCEEDS" not in lines[PEAK]


def test_the_command_refuses_to_keep_its_results_in_the_record(
    stored: Path, tmp_path: Path
) -> None:
    config = tmp_path / "asv.conf.json"
    config.write_text(json.dumps({"version": 1, "repo": ".", "results_dir": str(stored)}))
    done = CliRunner().invoke(
        rn.command, ["--asv-config", str(config), "--keep", str(stored / "scratch")]
    )
    assert done.exit_code != 0 and "inside" in done.output
    dry = CliRunner().invoke(rn.command, ["--asv-config", str(config), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "7 entries, 5 commits" in dry.stderr
