"""History in shards: which commits each shard measures, and merging the shards' asv results.

The result files are written by asv itself (``asv.results.Results.save``, ``asv.util.write_json``,
as ``asv run`` writes them), plus one committed file of results/, so the merge is checked against
asv's real format and bytes. No benchmark runs here: ``history`` is checked with a stand-in asv
that records what it was asked to run.
"""

from __future__ import annotations

import datetime
import json
import math
import stat
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from _asv_results import COUNT_MACHINE
from _git import git as _git
from asv.plugins.git import Git
from asv.results import Results
from asv.runner import BenchmarkResult
from asv.util import write_json
from click.testing import CliRunner

from tristore_bench import shards
from tristore_bench.asv import HarnessError, asv_paths
from tristore_bench.cli import main as cli

ROOT = Path(__file__).resolve().parents[3]
MACHINE = COUNT_MACHINE["machine"]
VERSION = "7d8d624120f93da9"
ENV = "virtualenv-py3.11-kuzu0.11.3"
POOL = "instructions.PoolCheckout.track_instructions"
SQLITE = "instructions.SQLiteWrite.track_instructions"
GRAPH = "instructions.GraphPointRead.track_instructions"
MACHINE_INFO: dict[str, Any] = dict(COUNT_MACHINE)
SUITE = {
    name: {
        "code": "def track_instructions(self) -> float: ...",
        "name": name,
        "param_names": [],
        "params": [],
        "timeout": 900,
        "type": "track",
        "unit": "instructions",
        "version": VERSION,
    }
    for name in (POOL, SQLITE, GRAPH)
}
START = datetime.datetime(2026, 12, 7, 9, 0, tzinfo=datetime.UTC)


def write_shard(
    root: Path,
    commits: dict[str, dict[str, float]],
    *,
    machine: dict[str, Any] | None = None,
    suite: dict[str, Any] | None = None,
    started: datetime.datetime = START,
    versions: dict[str, str] | None = None,
) -> Path:
    """An asv results dir as ``asv run`` leaves it: benchmarks.json, machine.json, one result
    file per commit (``{commit: {benchmark: count}}``), each written by asv's own code."""
    write_json(str(root / "benchmarks.json"), suite if suite is not None else SUITE, 2)
    info = machine if machine is not None else MACHINE_INFO
    write_json(str(root / MACHINE / "machine.json"), info, 1)
    for commit, values in commits.items():
        result = Results(
            {**info, "python": "3.11", "kuzu": "0.11.3"},
            {"kuzu": "0.11.3"},
            commit,
            1796196032000,
            "3.11",
            ENV,
            {},
        )
        for i, (name, value) in enumerate(values.items()):
            result.add_result(
                {"name": name, "version": (versions or {}).get(name, VERSION), "params": []},
                BenchmarkResult([value], [None], [None], 0, "", None),
                started_at=started + datetime.timedelta(seconds=10 * i),
                duration=8.25 + i,
            )
        result.save(str(root))
    return root


def result_file(root: Path, commit: str) -> Path:
    return root / MACHINE / f"{commit[:8]}-{ENV}.json"


def result_values(path: Path) -> dict[str, Any]:
    return {name: row[0] for name, row in json.loads(path.read_text())["results"].items()}


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


C1, C2, C3, C4 = ("1" * 40, "2" * 40, "3" * 40, "4" * 40)


# --------------------------------------------------------------------------------------------
# Commit assignment


@pytest.mark.parametrize("count", [0, 1, 5, 12, 31])
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_assign_is_balanced_deterministic_and_covers_every_commit_once(count: int, n: int) -> None:
    commits = [f"{i:040x}" for i in range(count)]
    dealt = shards.assign(commits, n)
    assert dealt == shards.assign(list(commits), n)
    assert len(dealt) == n
    flat = [c for shard in dealt for c in shard]
    assert sorted(flat) == sorted(commits) and len(flat) == len(set(flat))
    sizes = [len(s) for s in dealt]
    assert max(sizes) - min(sizes) <= 1
    for shard in dealt:  # each keeps the range's order
        assert shard == sorted(shard, key=commits.index)


def test_assign_round_robin_and_refuses_no_shards() -> None:
    assert shards.assign(["a", "b", "c", "d", "e"], 2) == [["a", "c", "e"], ["b", "d"]]
    with pytest.raises(HarnessError, match="at least 1"):
        shards.assign(["a"], 0)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A repo whose main has 6 first-parent commits and a merged side branch, and its config."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    for i in range(3):
        _git(repo, "commit", "-q", "--allow-empty", "-m", f"m{i}")
    _git(repo, "checkout", "-q", "-b", "side")
    _git(repo, "commit", "-q", "--allow-empty", "-m", "side")
    _git(repo, "checkout", "-q", "main")
    _git(repo, "commit", "-q", "--allow-empty", "-m", "m3")
    _git(repo, "merge", "-q", "--no-ff", "-m", "merge side", "side")
    _git(repo, "commit", "-q", "--allow-empty", "-m", "m5")
    (tmp_path / "asv.conf.json").write_text(
        json.dumps({"version": 1, "repo": "repo", "branches": ["main"], "results_dir": "results"})
    )
    return tmp_path


def test_range_commits_are_asvs(project: Path) -> None:
    paths = asv_paths(project / "asv.conf.json")
    asv_git = Git(str(paths.repo), str(project / "mirror"))
    for spec in ("HEAD~4..HEAD", "main", "HEAD~1..HEAD HEAD~3"):
        assert shards.range_commits(paths, spec) == asv_git.get_hashes_from_range(spec)
    main = asv_git.get_branch_commits("main")
    assert len(main) == 6  # first parents only: the side branch's commit is not measured
    assert shards.range_commits(paths, "ALL") == main
    assert shards.range_commits(paths, "HEAD") == main[:1]
    hashfile = project / "hashes.txt"
    hashfile.write_text(f"{main[2][:10]}\n\n{main[0]}\n")
    assert shards.range_commits(paths, f"HASHFILE:{hashfile}") == [main[2], main[0]]
    with pytest.raises(HarnessError, match="hash file"):
        shards.range_commits(paths, f"HASHFILE:{project / 'missing.txt'}")


def test_new_is_what_asv_calls_new(project: Path) -> None:
    """NEW: the branch's commits newer than any commit with results, whatever the machine."""
    paths = asv_paths(project / "asv.conf.json")
    main = shards.range_commits(paths, "ALL")
    write_shard(project / "results", {main[3]: {POOL: 1.0}}, machine={**MACHINE_INFO})
    assert shards.range_commits(paths, "NEW") == main[:3]


def test_plan_leaves_out_what_the_record_holds_then_deals(project: Path) -> None:
    paths = asv_paths(project / "asv.conf.json")
    main = shards.range_commits(paths, "ALL")
    write_shard(project / "results", {main[1]: {POOL: 1.0}})
    plans = [shards.plan_shard(paths, "ALL", 2, k, MACHINE) for k in (1, 2)]
    assert [p.commits for p in plans] == [main[0:1] + main[3:6:2], [main[2], main[4]]]
    assert all(p.already == 1 and p.total == 5 for p in plans)
    # Another machine's results do not count as measured.
    assert shards.plan_shard(paths, "ALL", 1, 1, "tristore-2core").total == 6
    # --remeasure: every commit of the range, the measured one too (a benchmark's version changed).
    again = shards.plan_shard(paths, "ALL", 1, 1, MACHINE, remeasure=True)
    assert again.commits == main and again.already == 1
    with pytest.raises(HarnessError, match="between 1 and 2"):
        shards.plan_shard(paths, "ALL", 2, 3, MACHINE)


def test_history_runs_asv_on_its_shard_into_its_own_results(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in asv records its argv, the config it was given and the hash file's commits."""
    record = tmp_path / "asv-call.json"
    fake = tmp_path / "fake-asv"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "argv = sys.argv[1:]\n"
        "conf = json.load(open(argv[argv.index('--config') + 1]))\n"
        "hashes = open(argv[-1].split(':', 1)[1]).read().split()\n"
        f"json.dump({{'argv': argv, 'conf': conf, 'hashes': hashes, 'cwd': os.getcwd()}},"
        f" open({str(record)!r}, 'w'))\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(shards, "asv_command", lambda: [str(fake)])
    config = project / "asv.conf.json"
    main = shards.range_commits(asv_paths(config), "ALL")
    before = config.read_bytes()
    out = project / "shard-2"
    args = ["history", "ALL", "--shards", "2", "--shard", "2", "--machine", MACHINE]
    args += ["--bench", r"^instructions\.", "--results-dir", str(out), "--asv-config", str(config)]
    done = CliRunner().invoke(cli, args)
    assert done.exit_code == 0, done.output
    call = json.loads(record.read_text())
    assert call["hashes"] == main[1::2]
    assert call["conf"]["results_dir"] == str(out.resolve())
    assert call["conf"]["repo"] == str(project / "repo")
    assert call["conf"]["env_dir"] == str(project / "env")  # asv's default, made absolute
    assert call["cwd"] == str(project)
    assert call["argv"][-2:] == ["--skip-existing-commits", call["argv"][-1]]
    assert call["argv"][-1].startswith("HASHFILE:")
    assert call["argv"][3:5] == ["--machine", MACHINE]
    assert all(c in done.output for c in main[1::2])
    assert config.read_bytes() == before  # the committed config is never edited
    # --dry-run prints the plan and runs nothing.
    record.unlink()
    done = CliRunner().invoke(cli, [*args, "--dry-run"])
    assert done.exit_code == 0 and not record.exists()
    assert "shard 2/2 gets 3" in done.output
    # --remeasure: asv must not skip a commit that has a result file (of an older version).
    done = CliRunner().invoke(cli, [*args, "--remeasure"])
    assert done.exit_code == 0, done.output
    call = json.loads(record.read_text())
    assert "--skip-existing-commits" not in call["argv"] and call["hashes"] == main[1::2]


# --------------------------------------------------------------------------------------------
# Merging


def test_disjoint_shards_merge_to_copies_of_their_files(tmp_path: Path) -> None:
    a = write_shard(tmp_path / "a", {C1: {POOL: 11858.5835, SQLITE: 206506.41}})
    b = write_shard(tmp_path / "b", {C2: {POOL: 11860.0, SQLITE: 206510.0}, C3: {POOL: 1.5}})
    report = shards.merge_results([a, b], tmp_path / "into")
    merged = tree(tmp_path / "into")
    assert merged == {**tree(a), **tree(b)}  # every file byte-identical to its shard's
    assert len(report.copied) == 3 and not report.merged
    assert result_values(result_file(tmp_path / "into", C2)) == {
        POOL: [11860.0],
        SQLITE: [206510.0],
    }


def test_one_commit_split_across_shards_merges_to_the_file_asv_writes(tmp_path: Path) -> None:
    """asv writing all three benchmarks of a commit, and asv writing them in two shards: the
    merge of the shards is byte for byte the first."""
    values = {POOL: 11858.5835, SQLITE: 206506.41, GRAPH: float("nan")}  # NaN: skipped
    whole = write_shard(tmp_path / "whole", {C1: values})
    names = list(values)
    # Each shard's benchmarks start when they would have in the one run.
    a = write_shard(tmp_path / "a", {C1: {n: values[n] for n in names[:2]}})
    b = tmp_path / "b"
    write_shard(b, {})
    part = Results(
        {**MACHINE_INFO, "python": "3.11", "kuzu": "0.11.3"},
        {"kuzu": "0.11.3"},
        C1,
        1796196032000,
        "3.11",
        ENV,
        {},
    )
    part.add_result(
        {"name": GRAPH, "version": VERSION, "params": []},
        BenchmarkResult([values[GRAPH]], [None], [None], 0, "", None),
        started_at=START + datetime.timedelta(seconds=20),
        duration=10.25,
    )
    part.save(str(b))
    report = shards.merge_results([a, b], tmp_path / "into")
    assert report.merged == [result_file(tmp_path / "into", C1)]
    assert tree(tmp_path / "into") == tree(whole)


def test_a_committed_result_file_split_and_merged_is_byte_identical(tmp_path: Path) -> None:
    """The same on a file asv wrote in results/ (read only; split with asv's own writer)."""
    source = next(
        p
        for p in sorted((ROOT / "results" / MACHINE).glob("*.json"))
        if p.name != "machine.json" and len(json.loads(p.read_text())["results"]) >= 2
    )
    data = json.loads(source.read_text())
    names = list(data["results"])
    for shard, chosen in (("a", names[:1]), ("b", names[1:])):
        part = {**data, "results": {n: data["results"][n] for n in chosen}}
        write_json(str(tmp_path / shard / MACHINE / source.name), part, 2, compact=True)
        write_json(str(tmp_path / shard / MACHINE / "machine.json"), MACHINE_INFO, 1)
    shards.merge_results([tmp_path / "a", tmp_path / "b"], tmp_path / "into")
    assert (tmp_path / "into" / MACHINE / source.name).read_bytes() == source.read_bytes()


def test_identical_duplicates_are_kept_once(tmp_path: Path) -> None:
    """The same counts measured on two shards (at different times) are one result."""
    values = {POOL: 11858.5835, GRAPH: float("nan")}
    a = write_shard(tmp_path / "a", {C1: values})
    later = START + datetime.timedelta(hours=1)
    b = write_shard(tmp_path / "b", {C1: values, C2: {POOL: 2.0}}, started=later)
    report = shards.merge_results([a, b], tmp_path / "into")
    assert result_file(tmp_path / "into", C1).read_bytes() == result_file(a, C1).read_bytes()
    assert len(report.copied) == 2 and not report.merged
    got = result_values(result_file(tmp_path / "into", C1))
    assert got[POOL] == [11858.5835] and math.isnan(got[GRAPH][0])


@pytest.mark.parametrize(
    ("first", "second"), [(11858.5835, 11858.5836), (11858.5835, float("nan")), (1.0, None)]
)
def test_a_conflicting_value_is_refused_and_nothing_is_written(
    tmp_path: Path, first: float, second: float | None
) -> None:
    a = write_shard(tmp_path / "a", {C1: {POOL: first}, C2: {POOL: 3.0}})
    b = write_shard(tmp_path / "b", {C1: {POOL: second}})  # type: ignore[dict-item]
    into = write_shard(tmp_path / "into", {C3: {POOL: 7.0}})
    before = tree(into)
    with pytest.raises(shards.ResultConflict) as caught:
        shards.merge_results([a, b], into)
    message = str(caught.value)
    assert result_file(a, C1).name in message and POOL in message and "result" in message
    assert tree(into) == before  # refused before the first write


def test_results_of_another_environment_under_one_name_are_refused(tmp_path: Path) -> None:
    a = write_shard(tmp_path / "a", {C1: {POOL: 1.0}})
    b = write_shard(tmp_path / "b", {C1: {SQLITE: 2.0}})
    path = result_file(b, C1)
    data = json.loads(path.read_text())
    data["params"]["valgrind"] = "3.22.0"
    write_json(str(path), data, 2, compact=True)
    with pytest.raises(shards.ResultConflict, match="'params'"):
        shards.merge_results([a, b], tmp_path / "into")


def test_differing_machine_json_is_refused_naming_the_keys(tmp_path: Path) -> None:
    a = write_shard(tmp_path / "a", {C1: {POOL: 1.0}})
    other = {**MACHINE_INFO, "valgrind": "3.22.0", "cpu": "Intel Xeon"}
    b = write_shard(tmp_path / "b", {C2: {POOL: 1.0}}, machine=other)
    with pytest.raises(shards.MachineMismatch) as caught:
        shards.merge_results([a, b], tmp_path / "into")
    message = str(caught.value)
    assert "key cpu" in message and "key valgrind" in message and "key arch" not in message
    assert "machine.json" in message
    assert not (tmp_path / "into").exists()


def test_differing_benchmarks_json_is_refused(tmp_path: Path) -> None:
    a = write_shard(tmp_path / "a", {C1: {POOL: 1.0}})
    suite = {k: v for k, v in SUITE.items() if k != GRAPH}
    suite[POOL] = {**suite[POOL], "version": "0000"}
    b = write_shard(tmp_path / "b", {C2: {POOL: 1.0}}, suite=suite)
    with pytest.raises(shards.SuiteMismatch) as caught:
        shards.merge_results([a, b], tmp_path / "into")
    message = str(caught.value)
    assert f"{GRAPH} only in" in message and f"{POOL} is version {VERSION}" in message
    assert "benchmarks.json" in message


def test_merging_into_a_record_keeps_it_and_refuses_to_overwrite(tmp_path: Path) -> None:
    record = write_shard(tmp_path / "results", {C1: {POOL: 1.0}, C2: {POOL: 2.0}})
    kept = tree(record)
    a = write_shard(tmp_path / "a", {C1: {SQLITE: 10.0}, C3: {POOL: 3.0}})
    b = write_shard(tmp_path / "b", {C2: {POOL: 2.0}, C4: {POOL: 4.0}})
    report = shards.merge_results([a, b], record)
    after = tree(record)
    for name, data in kept.items():  # every file kept; C1 gained a benchmark, the rest as they were
        if name != str(result_file(record, C1).relative_to(record)):
            assert after[name] == data
    assert result_values(result_file(record, C1)) == {POOL: [1.0], SQLITE: [10.0]}
    assert report.unchanged == [result_file(record, C2)]
    assert report.merged == [result_file(record, C1)]
    assert result_file(record, C3).read_bytes() == result_file(a, C3).read_bytes()
    # A shard whose value for a recorded benchmark differs is refused.
    c = write_shard(tmp_path / "c", {C2: {POOL: 2.5}})
    with pytest.raises(shards.ResultConflict, match=POOL):
        shards.merge_results([c], record)


def test_a_record_with_other_metadata_needs_replace_metadata(tmp_path: Path) -> None:
    record = write_shard(tmp_path / "results", {C1: {POOL: 1.0}})
    newer = {**MACHINE_INFO, "valgrind": "3.22.0"}
    a = write_shard(tmp_path / "a", {C2: {POOL: 2.0}}, machine=newer)
    with pytest.raises(shards.MachineMismatch, match="replace-metadata"):
        shards.merge_results([a], record)
    shards.merge_results([a], record, replace_metadata=True)
    assert (record / MACHINE / "machine.json").read_bytes() == (
        a / MACHINE / "machine.json"
    ).read_bytes()
    assert result_file(record, C1).is_file()


def test_a_remeasured_commit_replaces_only_the_values_of_an_older_version(tmp_path: Path) -> None:
    """After a benchmark's version changed, shards measure commits the record holds again
    (history --remeasure); their values replace the older version's, as asv run replaces them,
    and every other value of the file stays."""
    record = write_shard(tmp_path / "record", {C1: {POOL: 11858.5835, SQLITE: 206506.41}})
    newer = {**SUITE, POOL: {**SUITE[POOL], "version": "new"}}
    shard = write_shard(tmp_path / "s", {C1: {POOL: 11869.58}}, suite=newer, versions={POOL: "new"})
    before = tree(record)
    with pytest.raises(shards.SuiteMismatch, match="--replace-metadata"):
        shards.merge_results([shard], record)
    assert tree(record) == before
    report = shards.merge_results([shard], record, replace_metadata=True)
    assert report.replaced == [(result_file(record, C1), POOL)]
    data = json.loads(result_file(record, C1).read_text())
    at = data["result_columns"].index("version")
    assert {n: (row[0], row[at]) for n, row in data["results"].items()} == {
        POOL: ([11869.58], "new"),
        SQLITE: ([206506.41], VERSION),
    }
    # Merged again: nothing left to replace, nothing changes.
    again = shards.merge_results([shard], record, replace_metadata=True)
    assert not again.replaced and again.unchanged == [result_file(record, C1)]


def test_stray_files_and_self_merges_are_refused(tmp_path: Path) -> None:
    a = write_shard(tmp_path / "a", {C1: {POOL: 1.0}})
    with pytest.raises(HarnessError, match="both a shard and the target"):
        shards.merge_results([a], a)
    (a / MACHINE / "notes.txt").write_text("x")
    with pytest.raises(HarnessError, match="notes.txt"):
        shards.merge_results([a], tmp_path / "into")


def _cli(args: Sequence[str]) -> Any:
    return CliRunner().invoke(cli, list(args))


def test_merge_command_exit_codes(tmp_path: Path) -> None:
    a = write_shard(tmp_path / "a", {C1: {POOL: 1.0}})
    b = write_shard(tmp_path / "b", {C1: {POOL: 2.0}})
    done = _cli(["merge-results", str(a), str(b), "--into", str(tmp_path / "x")])
    assert done.exit_code == 2 and POOL in done.output and "Error:" in done.output
    done = _cli(["merge-results", str(a), "--into", str(tmp_path / "y")])
    assert done.exit_code == 0, done.output
    assert "1 result files copied" in done.output


def test_a_shard_with_no_commit_runs_nothing_and_leaves_an_empty_results_dir(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_asv() -> list[str]:
        raise AssertionError("asv must not run")

    monkeypatch.setattr(shards, "asv_command", no_asv)
    out = project / "shard-9"
    config = project / "asv.conf.json"
    args = ["history", "HEAD", "--shards", "2", "--shard", "2", "--machine", MACHINE]
    done = CliRunner().invoke(cli, [*args, "--results-dir", str(out), "--asv-config", str(config)])
    assert done.exit_code == 0, done.output
    assert "shard 2/2 gets 0" in done.output
    assert out.is_dir() and not any(out.iterdir())
