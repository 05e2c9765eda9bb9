"""``tristore-bench history`` and ``merge-results``: asv history measured in shards, then merged.

asv measures a range of commits one after another and has no way to merge results measured
elsewhere (asv issue #1362). Instruction counts do not depend on the host, so the commits of a
range can be split across runners and their results put together afterwards:

* ``history RANGE --shards N --shard K`` lists RANGE's commits as ``asv run`` does, drops those
  the record (the config's ``results_dir``) already holds for the machine, deals the rest out
  round-robin, and runs ``asv run --skip-existing-commits HASHFILE:<file>`` for shard K alone,
  into a results directory of its own (a scratch copy of the config names it; the committed
  ``asv.conf.json`` is never edited).
* ``merge-results SHARD_DIR... --into DIR`` puts the shard directories together. It copies asv's
  own JSON and never changes a value: a result file only one directory holds is copied byte for
  byte; a file two hold is merged benchmark by benchmark, refusing a benchmark measured twice
  with different values; machine.json and benchmarks.json must agree across the shards. Every
  check runs before the first write, so a refused merge leaves the target as it was.

Wall-time series cannot be measured this way: each runner is a different machine at a different
moment, and a wall-time series must come from one. Use the shards for the count machine.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from tristore_bench.asv import (
    AsvPaths,
    HarnessError,
    asv_command,
    asv_config_option,
    asv_paths,
    git,
)

__all__ = [
    "MachineMismatch",
    "MergeConflict",
    "MergeReport",
    "ResultConflict",
    "SuiteMismatch",
    "assign",
    "history",
    "merge_results",
    "range_commits",
]

BENCHMARKS_FILE = "benchmarks.json"
MACHINE_FILE = "machine.json"
#: Columns of a result row that describe the run, not the measurement: two shards that measured
#: one benchmark identically still started it at different times.
RUN_COLUMNS = frozenset({"started_at", "duration"})
#: Keys of a result file that must be equal for two shards' files of one name to be merged.
ENVELOPE_KEYS = (
    "commit_hash",
    "env_name",
    "date",
    "params",
    "python",
    "requirements",
    "env_vars",
    "result_columns",
    "version",
)


class MergeConflict(HarnessError):
    """Two result directories disagree; merging them would change or lose a value."""


class MachineMismatch(MergeConflict):
    """A machine's machine.json differs between the directories."""


class SuiteMismatch(MergeConflict):
    """The directories' benchmarks.json list different benchmarks or versions."""


class ResultConflict(MergeConflict):
    """One result file name holds different values (or a different environment) in two places."""


# --------------------------------------------------------------------------------------------
# Which commits, and which shard measures each


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise HarnessError(f"cannot read {path}: {exc}") from exc


def _result_files(machine_dir: Path) -> list[Path]:
    return sorted(p for p in machine_dir.glob("*.json") if p.name != MACHINE_FILE)


def _existing_hashes(results_dir: Path) -> set[str]:
    """Every commit with a result of any machine (asv's ``get_existing_hashes``)."""
    found: set[str] = set()
    if not results_dir.is_dir():
        return found
    for machine_dir in results_dir.iterdir():
        if machine_dir.is_dir() and (machine_dir / MACHINE_FILE).is_file():
            for path in _result_files(machine_dir):
                commit = _read_json(path).get("commit_hash")
                if isinstance(commit, str):
                    found.add(commit)
    return found


def _first_parent(repo: Path, spec: str) -> list[str]:
    """asv's git ``get_hashes_from_range``: ``rev-list --first-parent SPEC --``, newest first."""
    return git(repo, "rev-list", "--first-parent", *shlex.split(spec), "--").split()


def range_commits(paths: AsvPaths, range_spec: str) -> list[str]:
    """The commits ``asv run RANGE`` would measure, in asv's order (newest first).

    asv's forms: a git range (first-parent history), ``HEAD``, ``ALL`` and ``NEW`` (the commits of
    the config's branches newer than any commit with results, of any machine, in its
    ``results_dir``), and ``HASHFILE:path``.
    """
    branches = [str(b) for b in paths.raw.get("branches") or ["HEAD"]]
    if range_spec == "HEAD":
        return [git(paths.repo, "rev-parse", "HEAD^{commit}").strip()]
    if range_spec in ("ALL", "NEW"):
        existing = _existing_hashes(paths.results_dir) if range_spec == "NEW" else set()
        commits: list[str] = []
        for branch in branches:
            for commit in _first_parent(paths.repo, branch):
                if commit in existing:
                    break
                if commit not in commits:
                    commits.append(commit)
        return commits
    if range_spec.startswith("HASHFILE:"):
        hashfile = Path(range_spec[len("HASHFILE:") :])
        try:
            names = hashfile.read_text(encoding="utf-8").split()
        except OSError as exc:
            raise HarnessError(f"cannot read the hash file {hashfile}: {exc}") from exc
        return [git(paths.repo, "rev-parse", f"{name}^{{commit}}").strip() for name in names]
    if range_spec in ("EXISTING", "TAGS"):
        raise HarnessError(f"range {range_spec} is not supported by history; name the commits")
    return _first_parent(paths.repo, range_spec)


def measured(results_dir: Path, machine: str, commits: Iterable[str]) -> set[str]:
    """The commits with a result file for ``machine`` (what ``--skip-existing-commits`` skips)."""
    machine_dir = results_dir / machine
    return {c for c in commits if any(machine_dir.glob(f"{c[:8]}-*.json"))}


def assign(commits: Sequence[str], shards: int) -> list[list[str]]:
    """Deal ``commits`` round-robin into ``shards`` lists: balanced (sizes differ by at most one),
    every commit in exactly one, each keeping the range's order."""
    if shards < 1:
        raise HarnessError(f"--shards must be at least 1, not {shards}")
    return [list(commits[k::shards]) for k in range(shards)]


# --------------------------------------------------------------------------------------------
# One shard's asv run


@dataclass(frozen=True)
class ShardPlan:
    range_spec: str
    shards: int
    shard: int
    commits: list[str]  # this shard's, in asv's order
    total: int  # commits of the range left to measure
    already: int  # commits of the range the record already holds for the machine


def plan_shard(
    paths: AsvPaths,
    range_spec: str,
    shards: int,
    shard: int,
    machine: str,
    *,
    remeasure: bool = False,
) -> ShardPlan:
    """Shard ``shard`` of the range's commits, leaving out those the record holds for ``machine``
    unless ``remeasure`` (a benchmark whose version changed is measured again on all of them)."""
    if not 1 <= shard <= shards:
        raise HarnessError(f"--shard must be between 1 and {shards}, not {shard}")
    commits = range_commits(paths, range_spec)
    done = measured(paths.results_dir, machine, commits)
    todo = commits if remeasure else [c for c in commits if c not in done]
    return ShardPlan(
        range_spec, shards, shard, assign(todo, shards)[shard - 1], len(todo), len(done)
    )


def shard_config(paths: AsvPaths, results_dir: Path, env_dir: Path | None, target: Path) -> Path:
    """A copy of the config at ``target`` whose results go to ``results_dir``; every other path
    made absolute, so asv (run from the config's root) finds the same repo, suite and envs."""
    conf = dict(paths.raw)
    conf.update(
        repo=str(paths.repo),
        benchmark_dir=str(paths.benchmark_dir),
        html_dir=str(paths.html_dir),
        env_dir=str((env_dir or paths.root / str(paths.raw.get("env_dir", "env"))).resolve()),
        results_dir=str(results_dir),
    )
    target.write_text(json.dumps(conf, indent=4), encoding="utf-8")
    return target


def history(
    paths: AsvPaths,
    plan: ShardPlan,
    machine: str,
    bench: Sequence[str],
    results_dir: Path,
    env_dir: Path | None = None,
    *,
    remeasure: bool = False,
) -> int:
    """Run asv over the shard's commits into ``results_dir``; asv's exit code.

    ``remeasure``: without ``--skip-existing-commits``, which skips a commit that has a result file
    at all, also one holding only another version of the benchmarks.
    """
    results_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tristore-shard-") as tmp:
        hashfile = Path(tmp) / "commits.txt"
        hashfile.write_text("".join(f"{c}\n" for c in plan.commits), encoding="utf-8")
        config = shard_config(paths, results_dir.resolve(), env_dir, Path(tmp) / "asv.conf.json")
        argv = [*asv_command(), "run", "--config", str(config), "--machine", machine]
        for pattern in bench:
            argv += ["--bench", pattern]
        argv += ["--show-stderr", *([] if remeasure else ["--skip-existing-commits"])]
        argv.append(f"HASHFILE:{hashfile}")
        try:
            return subprocess.run(argv, cwd=paths.root, check=False).returncode
        except OSError as exc:
            raise HarnessError(f"cannot run asv ({argv[0]}): {exc}") from exc


@click.command("history")
@click.argument("range_spec", metavar="RANGE")
@click.option("--shards", type=int, default=1, show_default=True, help="Number of shards.")
@click.option("--shard", type=int, default=1, show_default=True, help="This shard (1..N).")
@click.option("--machine", required=True, help="asv machine name (tristore-callgrind).")
@click.option("--bench", multiple=True, metavar="REGEX", help="Only matching benchmarks.")
@click.option(
    "--results-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="This shard's results (default: .asv/shards/<K>-of-<N> beside the config).",
)
@click.option(
    "--env-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="asv env dir (default: the config's); give shards run side by side one each.",
)
@click.option(
    "--remeasure",
    is_flag=True,
    help="Also the commits the record already holds: after a benchmark's version changed "
    "(merge-results --replace-metadata then replaces their older values).",
)
@click.option("--dry-run", is_flag=True, help="Print the shard's commits; run nothing.")
@asv_config_option("asv config of the suite and of the record (results_dir) to complete.")
def history_command(
    range_spec: str,
    shards: int,
    shard: int,
    machine: str,
    bench: Sequence[str],
    results_dir: Path | None,
    env_dir: Path | None,
    remeasure: bool,
    dry_run: bool,
    config: Path,
) -> None:
    """Measure shard K of N of RANGE's commits (asv's range forms) into a results dir of its own.

    Commits that the config's results_dir already holds for MACHINE are left out (unless
    --remeasure) before the commits are dealt round-robin, so every shard of one checkout gets
    the same plan.
    """
    try:
        paths = asv_paths(config)
        plan = plan_shard(paths, range_spec, shards, shard, machine, remeasure=remeasure)
        target = results_dir or paths.root / ".asv" / "shards" / f"{shard}-of-{shards}"
        click.echo(
            f"{range_spec}: {plan.total + plan.already} commits, {plan.already} already in "
            f"{paths.results_dir} for {machine}; shard {shard}/{shards} gets {len(plan.commits)}:"
        )
        for commit in plan.commits:
            click.echo(f"  {commit}")
        if dry_run or not plan.commits:
            if not plan.commits:
                target.mkdir(parents=True, exist_ok=True)
            return
        code = history(paths, plan, machine, bench, target, env_dir, remeasure=remeasure)
    except HarnessError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    click.echo(f"shard {shard}/{shards}: asv exited {code}; results in {target}")
    sys.exit(code)


# --------------------------------------------------------------------------------------------
# Merging result directories


def _canon(value: Any) -> str:
    """A comparable form of a JSON value (NaN, asv's mark of a skipped benchmark, equals itself)."""
    return json.dumps(value, sort_keys=True)


Differ = Callable[[Path, Path], list[str]]


def _suite_difference(a: Path, b: Path) -> list[str]:
    """How two benchmarks.json differ in the benchmarks they list and their versions."""

    def suite(path: Path) -> dict[str, Any]:
        return {k: v.get("version") for k, v in _read_json(path).items() if isinstance(v, dict)}

    x, y = suite(a), suite(b)
    lines = [f"{n} only in {a}" for n in sorted(x.keys() - y.keys())]
    lines += [f"{n} only in {b}" for n in sorted(y.keys() - x.keys())]
    lines += [
        f"{n} is version {x[n]} in {a}, {y[n]} in {b}"
        for n in sorted(x.keys() & y.keys())
        if x[n] != y[n]
    ]
    return lines


def _machine_difference(a: Path, b: Path) -> list[str]:
    """The keys whose values differ between two machine.json files."""
    x, y = _read_json(a), _read_json(b)
    return [
        f"key {k}: {x.get(k)!r} in {a}, {y.get(k)!r} in {b}"
        for k in sorted(x.keys() | y.keys())
        if _canon(x.get(k)) != _canon(y.get(k))
    ]


def _metadata(
    target: Path, sources: list[Path], differ: Differ, error: type[MergeConflict], replace: bool
) -> bytes | None:
    """The bytes to write at ``target`` (the first source's), or None when it already holds them.

    Every source must agree with the first; so must an existing target, unless ``replace``.
    """
    first = sources[0]
    for other in sources[1:]:
        if lines := differ(first, other):
            raise error("the shards disagree: " + "; ".join(lines))
    if target.is_file():
        if target.read_bytes() == first.read_bytes():
            return None
        if (lines := differ(target, first)) and not replace:
            raise error(
                "the target disagrees with the shards: "
                + "; ".join(lines)
                + " (--replace-metadata writes the shards' file, as asv run would)"
            )
    return first.read_bytes()


def _merge_result(
    name: str, base: dict[str, Any], base_path: Path, other: dict[str, Any], other_path: Path
) -> bool:
    """Add ``other``'s benchmarks to ``base`` (in place); True if anything was added.

    A benchmark both hold must have been measured identically (every column but the run's own
    start time and duration): the first is kept, the duplicate dropped.
    """
    for key in ENVELOPE_KEYS:
        if _canon(base.get(key)) != _canon(other.get(key)):
            raise ResultConflict(
                f"{name}: '{key}' is {_canon(base.get(key))[:200]} in {base_path} and "
                f"{_canon(other.get(key))[:200]} in {other_path}: not results of one commit, "
                "environment and machine"
            )
    columns: list[str] = list(base.get("result_columns") or [])
    width = len(columns)
    added = False
    for benchmark, row in other.get("results", {}).items():
        mine = base["results"].get(benchmark)
        if mine is None:
            base["results"][benchmark] = row
            added = True
            continue
        a = list(mine) + [None] * (width - len(mine))
        b = list(row) + [None] * (width - len(row))
        for i, column in enumerate(columns):
            if column not in RUN_COLUMNS and _canon(a[i]) != _canon(b[i]):
                raise ResultConflict(
                    f"{name}: benchmark {benchmark} has {column} {_canon(a[i])} in {base_path} "
                    f"and {_canon(b[i])} in {other_path}; refusing to choose one"
                )
    durations = base.setdefault("durations", {})
    for key, value in other.get("durations", {}).items():
        if key not in durations:  # the run's own timings (build, setup_cache): the first kept
            durations[key] = value
            added = True
    return added


def _drop_superseded(target: dict[str, Any], shards: Sequence[dict[str, Any]]) -> list[str]:
    """Remove from ``target`` (the record's file) the benchmarks a shard measured under another
    version: asv run replaces a result of an older version of the benchmark, and so does the
    merge. Returns their names. A value of one version is never replaced (that is a conflict)."""
    columns: list[str] = list(target.get("result_columns") or [])
    if "version" not in columns:
        return []
    at = columns.index("version")
    dropped = []
    for benchmark, row in list(target.get("results", {}).items()):
        theirs = [s["results"][benchmark] for s in shards if benchmark in s.get("results", {})]
        if any(len(r) > at and len(row) > at and r[at] != row[at] for r in theirs):
            del target["results"][benchmark]
            dropped.append(benchmark)
    return dropped


@dataclass
class MergeReport:
    into: Path
    copied: list[Path] = field(default_factory=list)  # result files new to the target
    merged: list[Path] = field(default_factory=list)  # files whose benchmarks came from several
    unchanged: list[Path] = field(default_factory=list)  # already in the target, nothing new
    written: list[Path] = field(default_factory=list)  # machine.json / benchmarks.json written
    # (file, benchmark): values of an older benchmark version in the target, replaced
    replaced: list[tuple[Path, str]] = field(default_factory=list)


def _check_layout(directory: Path) -> list[Path]:
    """The machine directories of an asv results dir; anything asv does not write is an error."""
    if not directory.is_dir():
        raise HarnessError(f"{directory} is not a directory of asv results")
    machines = []
    for entry in sorted(directory.iterdir()):
        if entry.is_dir():
            stray = [p.name for p in entry.iterdir() if not (p.is_file() and p.suffix == ".json")]
            if stray:
                raise HarnessError(f"{entry}: not asv results ({', '.join(sorted(stray))})")
            if any(entry.iterdir()) and not (entry / MACHINE_FILE).is_file():
                raise HarnessError(f"{entry} has results but no {MACHINE_FILE}")
            machines.append(entry)
        elif entry.name != BENCHMARKS_FILE:
            raise HarnessError(f"{entry}: not a file asv writes in a results directory")
    return machines


def merge_results(
    shard_dirs: Sequence[Path], into: Path, *, replace_metadata: bool = False
) -> MergeReport:
    """Merge asv results directories ``shard_dirs`` into ``into`` (created if missing).

    ``machine.json`` and ``benchmarks.json`` describe a run; asv rewrites them on every run. The
    shards' must agree with each other; a target whose own differ is refused unless
    ``replace_metadata`` (then the shards' are written, as a serial ``asv run`` would).
    """
    shard_dirs = [Path(d) for d in shard_dirs]
    into = Path(into)
    if not shard_dirs:
        raise HarnessError("no shard directories to merge")
    if any(d.resolve() == into.resolve() for d in shard_dirs):
        raise HarnessError(f"{into} is both a shard and the target")
    if into.exists():
        _check_layout(into)
    layouts = {d: _check_layout(d) for d in shard_dirs}
    writes: dict[Path, bytes] = {}  # target path -> bytes, all decided before the first write
    report = MergeReport(into)

    def metadata(
        target: Path, sources: list[Path], differ: Differ, error: type[MergeConflict]
    ) -> None:
        data = _metadata(target, sources, differ, error, replace_metadata)
        if data is not None:
            writes[target] = data
            report.written.append(target)

    # benchmarks.json: the same benchmarks and versions.
    suites = [d / BENCHMARKS_FILE for d in shard_dirs if (d / BENCHMARKS_FILE).is_file()]
    if suites:
        metadata(into / BENCHMARKS_FILE, suites, _suite_difference, SuiteMismatch)

    # Per machine: machine.json equal everywhere, then each result file.
    names = sorted({m.name for dirs in layouts.values() for m in dirs})
    for machine in names:
        sources = [d / machine for d in shard_dirs if (d / machine).is_dir()]
        machine_files = [s / MACHINE_FILE for s in sources if (s / MACHINE_FILE).is_file()]
        if machine_files:
            metadata(
                into / machine / MACHINE_FILE, machine_files, _machine_difference, MachineMismatch
            )
        files: dict[str, list[Path]] = {}
        for source in sources:
            for path in _result_files(source):
                files.setdefault(path.name, []).append(path)
        for name, paths in sorted(files.items()):
            target = into / machine / name
            holders = ([target] if target.is_file() else []) + paths
            if len(holders) == 1:
                writes[target] = paths[0].read_bytes()
                report.copied.append(target)
                continue
            datas = [_read_json(h) for h in holders]
            base = datas[0]
            replaced = _drop_superseded(base, datas[1:]) if target.is_file() else []
            report.replaced += [(target, benchmark) for benchmark in replaced]
            added = bool(replaced)
            for other, data in zip(holders[1:], datas[1:], strict=True):
                added = _merge_result(name, base, holders[0], data, other) or added
            if not added and target.is_file():
                report.unchanged.append(target)
                continue
            if not added:  # identical duplicates in the shards: the first one's bytes
                writes[target] = holders[0].read_bytes()
                report.copied.append(target)
                continue
            writes[target] = _asv_json(base)
            report.merged.append(target)

    for target, data in writes.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.merge")
        tmp.write_bytes(data)
        os.replace(tmp, target)
    return report


def _asv_json(data: dict[str, Any]) -> bytes:
    """A result file as asv writes it (``asv.util.write_json(..., compact=True)``)."""
    from asv.util import write_json

    with tempfile.TemporaryDirectory(prefix="tristore-merge-") as tmp:
        path = Path(tmp) / "result.json"
        write_json(str(path), data, data.get("version"), compact=True)
        return path.read_bytes()


@click.command("merge-results")
@click.argument(
    "shard_dirs", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path)
)
@click.option(
    "--into",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Target results directory (default: the config's results_dir).",
)
@click.option(
    "--replace-metadata",
    is_flag=True,
    help="Write the shards' machine.json / benchmarks.json over differing ones in the target.",
)
@asv_config_option("asv config whose results_dir is the default target.")
def merge_command(
    shard_dirs: Sequence[Path], into: Path | None, replace_metadata: bool, config: Path
) -> None:
    """Merge asv results directories measured in shards into one (exit 2 on any conflict)."""
    try:
        target = into if into is not None else asv_paths(config).results_dir
        report = merge_results(shard_dirs, target, replace_metadata=replace_metadata)
    except HarnessError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    for path in report.written:
        click.echo(f"wrote     {path}")
    for path in report.merged:
        click.echo(f"merged    {path}")
    for path, benchmark in report.replaced:
        click.echo(f"replaced  {path}: {benchmark} (an older version of the benchmark)")
    click.echo(
        f"{len(report.copied)} result files copied, {len(report.merged)} merged, "
        f"{len(report.unchanged)} already present into {report.into}"
    )
