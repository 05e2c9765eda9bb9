"""``tristore-bench rerun-noise``: what the same commit reads in another run, recorded.

A gated entry's threshold comes from its history (:mod:`tristore_bench.thresholds`): the median
change between consecutive commits of one run, asv's confidence interval, a quantized measure's
resolution. None of them sees what the *same* commit reads on another day, or on another VM of
the same kind, and that is exactly what a new result is compared with when the history was
measured elsewhere. This command measures it: it runs a few commits again, into a scratch results
directory (``asv run --machine M --bench REGEX HASHFILE:...`` through a copy of the config, with
the real env_dir so that asv reuses its environments; ``results/`` is never written), and compares
each entry with the stored result of the same commit, machine and benchmark version:
max(a / b, b / a) - 1. An entry whose stored version differs from the current one
(``results/benchmarks.json``) was measured with other code, and is skipped (and said so).

**Which commits.** The ones given (``--commit``, every selected entry run at each), or by default
a few spread over each selected entry's history, the commits whose stored result holds it at its
current version: one in each third of it, its oldest, middle and newest commit unless a commit
chosen for another entry lies in that third (:func:`default_commits`, :data:`SPREAD`). Each
commit is then run for every selected entry it holds a stored reading of (:func:`runs`), so
entries whose histories overlap share their commits, and no time goes to readings that have
nothing to be compared with.

**Which benchmarks.** By default those of a gated kind that are not counts (``thresholds.kind``:
ratio and size): a count has its own repeat noise (``tristore-bench count-noise``), and wall time
is context, never flagged.

**The record.** Per entry, the commits, both readings of each, when the stored one was measured,
the differences, their maximum and the offset, with the date, the machine and the command, merged
into ``tools/bench/rerun-noise.json`` (:data:`RERUN_FILE`): a new measurement of an entry replaces
its old one. :func:`load_rerun` gives the derivation each entry's offset (:attr:`EntryRerun.offset`:
per day the stored readings were measured on, the median difference; the largest day); a ratio or
a size is then held to at least ``thresholds.K_RERUN`` x that figure.
"""

from __future__ import annotations

import itertools
import json
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from tristore_bench import thresholds as th
from tristore_bench.asv import (
    AsvPaths,
    HarnessError,
    asv_command,
    asv_config_option,
    asv_paths,
    command_line,
)
from tristore_bench.asv import git as run_git
from tristore_bench.shards import BENCHMARKS_FILE, shard_config

__all__ = [
    "RERUN_FILE",
    "SPREAD",
    "Comparison",
    "EntryRerun",
    "Skip",
    "compare",
    "current_versions",
    "default_commits",
    "default_pattern",
    "entries_pattern",
    "histories",
    "load_records",
    "load_rerun",
    "load_suite",
    "merge",
    "records_from",
    "runs",
    "selected_entries",
    "write_records",
]

#: The committed record of what re-runs of recorded commits read (``tristore-bench rerun-noise``).
RERUN_FILE = Path(__file__).resolve().parents[2] / "rerun-noise.json"
#: Commits re-run per entry by default: the oldest, the middle and the newest of its history.
SPREAD = 3
#: The kinds measured by default: gated, and not counts (their repeat noise is count-noise's).
KINDS = (th.Kind.RATIO, th.Kind.SIZE)


# -- what to run -----------------------------------------------------------------------------


Suite = Mapping[str, Mapping[str, Any]]


def load_suite(results_dir: Path) -> dict[str, dict[str, Any]]:
    """The benchmarks (name -> asv's description) the last ``asv run`` wrote to benchmarks.json."""
    path = results_dir / BENCHMARKS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise HarnessError(f"cannot read {path}: {exc}") from exc
    return {k: v for k, v in data.items() if isinstance(v, dict) and "version" in v}


def current_versions(suite: Suite) -> dict[str, str]:
    """benchmark name -> its current version."""
    return {name: str(spec["version"]) for name, spec in suite.items()}


def default_pattern(suite: Suite) -> str:
    """The ``--bench`` regex of the benchmarks of :data:`KINDS`, by name (``thresholds.kind``)."""
    names = sorted(b for b in suite if th.kind(b) in KINDS)
    if not names:
        raise HarnessError("no benchmark of kind ratio or size in benchmarks.json")
    # A parameterized benchmark is matched by asv as name(p1, p2): the name, then "(" or the end.
    return "^(" + "|".join(re.escape(n) for n in names) + r")(\(|$)"


def selected_entries(suite: Suite, pattern: str) -> dict[str, str]:
    """entry name -> benchmark, for the entries ``asv run --bench pattern`` runs.

    asv's rule (``asv.benchmarks.Benchmarks``): ``re.search`` on the name of a plain benchmark,
    on ``name(p1, p2)`` for each parameter combination of a parameterized one.
    """
    found: dict[str, str] = {}
    for name, spec in suite.items():
        params = spec.get("params") or []
        combos = [", ".join(c) for c in itertools.product(*params)] if params else [None]
        for combo in combos:
            entry = th.entry_name(name, combo)
            if re.search(pattern, entry):
                found[entry] = name
    return found


def histories(
    stored: Mapping[str, Sequence[Any]], entries: Mapping[str, str], versions: Mapping[str, str]
) -> dict[str, list[tuple[int, str]]]:
    """entry -> the (date, commit) of each stored reading at its current version, oldest first."""
    found: dict[str, list[tuple[int, str]]] = {}
    for entry, benchmark in entries.items():
        held = {p.commit: p.date for p in stored.get(entry, []) if p.version == versions[benchmark]}
        if held:
            found[entry] = sorted((date, commit) for commit, date in held.items())
    return found


def default_commits(
    history: Mapping[str, Sequence[tuple[int, str]]], spread: int = SPREAD
) -> list[str]:
    """The commits to run again, oldest first: for each entry, one commit in each of ``spread``
    equal parts of its history (its oldest, middle and newest commit), or one already chosen for
    another entry where one lies in that part, so that entries whose histories overlap share
    their commits. The entries with the shortest histories choose first.
    """
    chosen: dict[str, int] = {}
    for entry in sorted(history, key=lambda e: (len(history[e]), e)):
        ordered = list(history[entry])
        n = len(ordered)
        for k in range(spread):
            part = ordered[k * n // spread : (k + 1) * n // spread]
            if not part:
                continue  # fewer commits than parts: each commit is a part of its own
            if any(commit in chosen for _, commit in part):
                continue
            # The first part's oldest commit, the last part's newest, the middle of the others.
            date, commit = (
                part[0] if k == 0 else part[-1] if k == spread - 1 else part[len(part) // 2]
            )
            chosen[commit] = date
    return sorted(chosen, key=lambda c: (chosen[c], c))


def runs(
    history: Mapping[str, Sequence[tuple[int, str]]], commits: Sequence[str]
) -> list[tuple[list[str], list[str]]]:
    """The asv runs that measure each commit for the entries it can be compared in (a stored
    reading at the current version): (entries, commits), one run per set of entries."""
    at: dict[str, list[str]] = {c: [] for c in commits}
    for entry, held in sorted(history.items()):
        for _, commit in held:
            if commit in at:
                at[commit].append(entry)
    grouped: dict[tuple[str, ...], list[str]] = {}
    for commit in commits:
        if at[commit]:
            grouped.setdefault(tuple(at[commit]), []).append(commit)
    return [(list(entries), found) for entries, found in grouped.items()]


def entries_pattern(entries: Iterable[str]) -> str:
    """A ``--bench`` regex that selects exactly these entries (asv searches ``name(p1, p2)`` for
    each combination of a parameterized benchmark, the name of a plain one)."""
    return "^(" + "|".join(re.escape(e) for e in sorted(entries)) + ")$"


# -- comparing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """One entry at one commit: its stored reading and the re-run's."""

    entry: str
    commit: str
    stored: float
    rerun: float
    stored_started: int | None = None  # when the stored reading was measured (ms since epoch)

    @property
    def difference(self) -> float:
        """max(a / b, b / a) - 1: how far the two readings of one commit are apart."""
        return max(self.rerun / self.stored, self.stored / self.rerun) - 1


@dataclass(frozen=True)
class Skip:
    """An entry at a commit the re-run measured but that cannot be compared, and why."""

    entry: str
    commit: str
    reason: str


def compare(
    stored: Mapping[str, Sequence[Any]],
    rerun: Mapping[str, Sequence[Any]],
    versions: Mapping[str, str],
    entries: Mapping[str, str],
) -> tuple[list[Comparison], list[Skip]]:
    """Each re-run reading against the stored reading of the same commit and benchmark version.

    ``stored`` and ``rerun``: :func:`tristore_bench.thresholds.readings` of one machine's record
    and of the re-run; ``versions``: benchmark -> current version; ``entries``: the selected
    entry names -> benchmark. A reading measured with another version than the current one, on
    either side, is skipped; so is a commit with no stored reading of the entry.
    """
    found: list[Comparison] = []
    skipped: list[Skip] = []
    for entry in sorted(set(rerun) & set(entries)):
        current = versions.get(entries[entry])
        for again in sorted(rerun[entry], key=lambda p: (p.date, p.commit)):
            if again.version != current:
                skipped.append(
                    Skip(entry, again.commit, f"re-run version {again.version}, current {current}")
                )
                continue
            same = [p for p in stored.get(entry, []) if p.commit == again.commit]
            if not same:
                skipped.append(Skip(entry, again.commit, "no stored result"))
                continue
            held = [p for p in same if p.version == current]
            if not held:
                versions_seen = ", ".join(sorted({p.version for p in same}))
                skipped.append(
                    Skip(entry, again.commit, f"stored version {versions_seen}, current {current}")
                )
                continue
            # Several stored readings of one commit (environments): the furthest one counts.
            pairs = [Comparison(entry, again.commit, p.value, again.value, p.started) for p in held]
            found.append(max(pairs, key=lambda c: c.difference))
    return found, skipped


# -- the record ------------------------------------------------------------------------------


@dataclass(frozen=True)
class EntryRerun:
    """What re-runs of some recorded commits read for one entry."""

    entry: str
    machine: str
    date: str  # when the re-run was made (UTC, ISO 8601)
    command: str
    commits: list[str]
    stored: list[float]
    rerun: list[float]
    stored_measured: list[str | None]  # when each stored reading was measured (asv's started_at)
    version: str

    @property
    def differences(self) -> list[float]:
        return [max(a / b, b / a) - 1 for a, b in zip(self.rerun, self.stored, strict=True)]

    @property
    def max(self) -> float:
        return max(self.differences)

    @property
    def offset(self) -> float:
        """How far another session reads: per day the stored readings were measured on, the
        median of that day's differences; the largest over the days.

        A day's readings shifted together (another VM, another machine state) shift every
        difference of that day, and the median keeps it; one stored reading that was off alone
        moves only its own difference, and the median leaves it out. Such a lone reading cannot
        be flagged anyway: a ratio or size series steps only over MIN_SEGMENT commits. A day
        with a single reading counts as it is.
        """
        days: dict[str | None, list[float]] = {}
        for measured, difference in zip(self.stored_measured, self.differences, strict=True):
            days.setdefault(measured[:10] if measured else None, []).append(difference)
        return max(statistics.median(values) for values in days.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "differences": self.differences,
            "max": self.max,
            "offset": self.offset,
        }


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def records_from(
    comparisons: Iterable[Comparison],
    *,
    machine: str,
    date: str,
    command: str,
    versions: Mapping[str, str],
    entries: Mapping[str, str],
) -> dict[str, EntryRerun]:
    """One :class:`EntryRerun` per entry compared at least once."""
    by_entry: dict[str, list[Comparison]] = {}
    for c in comparisons:
        by_entry.setdefault(c.entry, []).append(c)
    return {
        entry: EntryRerun(
            entry=entry,
            machine=machine,
            date=date,
            command=command,
            commits=[c.commit for c in found],
            stored=[c.stored for c in found],
            rerun=[c.rerun for c in found],
            stored_measured=[_iso(c.stored_started) for c in found],
            version=versions[entries[entry]],
        )
        for entry, found in sorted(by_entry.items())
    }


def load_records(path: Path | None = None) -> dict[str, EntryRerun]:
    """entry -> its recorded re-runs; {} when the file does not exist."""
    target = path or RERUN_FILE
    try:
        data = json.loads(target.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ValueError(f"{target} is not a readable rerun-noise file: {exc}") from exc
    found: dict[str, EntryRerun] = {}
    try:
        for name, entry in data.get("entries", {}).items():
            found[name] = EntryRerun(
                entry=name,
                machine=str(entry["machine"]),
                date=str(entry["date"]),
                command=str(entry.get("command", "")),
                commits=[str(c) for c in entry["commits"]],
                stored=[float(x) for x in entry["stored"]],
                rerun=[float(x) for x in entry["rerun"]],
                stored_measured=list(entry.get("stored_measured") or [None] * len(entry["stored"])),
                version=str(entry.get("version", "")),
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{target} is not a readable rerun-noise file: {exc}") from exc
    return found


def load_rerun(path: Path | None = None) -> dict[str, float]:
    """entry name -> how far another session reads it (:attr:`EntryRerun.offset`), what the
    derivation uses."""
    return {name: record.offset for name, record in load_records(path).items() if record.stored}


def merge(old: Mapping[str, EntryRerun], new: Mapping[str, EntryRerun]) -> dict[str, EntryRerun]:
    """The record with ``new``'s entries: a new measurement of an entry replaces its old one."""
    return {**old, **new}


def write_records(records: Mapping[str, EntryRerun], path: Path | None = None) -> Path:
    target = path or RERUN_FILE
    body = {
        "about": (
            "What the same commit reads in another run: per entry, recorded commits measured "
            "again (re-run) against their stored results of the same machine and benchmark "
            "version; difference = max(a / b, b / a) - 1. The derivation (tristore-bench "
            f"thresholds) holds a ratio or a size to at least {th.K_RERUN:g} x the offset: per "
            "day the stored readings were measured on, the median difference; the largest day. "
            "Re-measure with the command recorded per entry."
        ),
        "entries": {name: records[name].as_dict() for name in sorted(records)},
    }
    target.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    return target


# -- running asv -----------------------------------------------------------------------------


def run_asv(
    paths: AsvPaths, commits: Sequence[str], machine: str, pattern: str, results_dir: Path
) -> int:
    """``asv run`` of ``commits`` into ``results_dir`` (a scratch copy of the config names it;
    the config's env_dir is kept, so asv reuses its environments); asv's exit code.

    asv's output goes to stderr: stdout is the command's table.
    """
    results_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tristore-rerun-") as tmp:
        hashfile = Path(tmp) / "commits.txt"
        hashfile.write_text("".join(f"{c}\n" for c in commits), encoding="utf-8")
        config = shard_config(paths, results_dir.resolve(), None, Path(tmp) / "asv.conf.json")
        argv = [*asv_command(), "run", "--config", str(config), "--machine", machine]
        argv += ["--bench", pattern, "--show-stderr", f"HASHFILE:{hashfile}"]
        try:
            # File descriptor 2: asv's log beside the command's own messages, never in its table.
            return subprocess.run(argv, cwd=paths.root, stdout=2, check=False).returncode
        except OSError as exc:
            raise HarnessError(f"cannot run asv ({argv[0]}): {exc}") from exc


def _inside(path: Path, parent: Path) -> bool:
    path, parent = path.resolve(), parent.resolve()
    return path == parent or parent in path.parents


@click.command("rerun-noise")
@click.option(
    "--commit", "refs", multiple=True, metavar="REF", help="A commit to run again (repeatable)."
)
@click.option("--bench", "pattern", metavar="REGEX", help="Benchmarks (default: ratios, sizes).")
@click.option("--machine", default="tristore-2core", show_default=True, help="asv machine.")
@click.option(
    "--record",
    "path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"Record to merge into (default: {RERUN_FILE.name} in tools/bench).",
)
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the re-run's asv results in DIR (default: a temporary directory).",
)
@click.option("--dry-run", is_flag=True, help="Print the commits and the regex; run nothing.")
@asv_config_option("asv config: the suite, the record (results_dir) and the policy.")
def command(
    refs: tuple[str, ...],
    pattern: str | None,
    machine: str,
    path: Path | None,
    keep: Path | None,
    dry_run: bool,
    config: Path,
) -> None:
    """Run recorded commits again and record how far each entry reads from its stored result."""
    try:
        paths = asv_paths(config)
        if keep is not None and _inside(keep, paths.results_dir):
            raise HarnessError(f"--keep {keep} is inside {paths.results_dir}: asv's record")
        suite = load_suite(paths.results_dir)
        versions = current_versions(suite)
        pattern = pattern or default_pattern(suite)
        entries = selected_entries(suite, pattern)
        if not entries:
            raise HarnessError(f"no benchmark in benchmarks.json matches {pattern!r}")
        stored = th.readings(paths.results_dir, [machine])
        history = histories(stored, entries, versions)
        if refs:
            commits = [run_git(paths.repo, "rev-parse", f"{r}^{{commit}}").strip() for r in refs]
            planned = [(pattern, commits)]
        else:
            commits = default_commits(history)
            planned = [(entries_pattern(names), found) for names, found in runs(history, commits)]
        if not commits:
            raise HarnessError(
                f"no stored result of {machine} holds the selected entries at their current "
                "version: name the commits with --commit"
            )
        target = path or RERUN_FILE
        records = load_records(target)
    except (HarnessError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    line = command_line("rerun-noise")
    click.echo(f"rerun-noise: {len(entries)} entries, {len(commits)} commits", err=True)
    for bench, found in planned:
        click.echo(
            f"asv run --bench {shlex.quote(bench)} at {' '.join(c[:8] for c in found)}", err=True
        )
    if dry_run:
        return
    with tempfile.TemporaryDirectory(prefix="tristore-rerun-results-") as scratch:
        where = keep if keep is not None else Path(scratch)
        try:
            codes = [run_asv(paths, found, machine, bench, where) for bench, found in planned]
            again = th.readings(where, [machine]) if where.is_dir() else {}
        except HarnessError as exc:
            raise click.ClickException(str(exc)) from exc
    code = next((c for c in codes if c != 0), 0)
    found, skipped = compare(stored, again, versions, entries)
    reasons: dict[tuple[str, str], list[str]] = {}
    for skip in skipped:
        reasons.setdefault((skip.entry, skip.reason), []).append(skip.commit[:8])
    for (entry, reason), at in sorted(reasons.items()):
        click.echo(f"skipped {entry} at {', '.join(at)}: {reason}", err=True)
    if not found:
        raise click.ClickException(f"asv exited {code}; no entry could be compared")
    date = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    new = records_from(
        found, machine=machine, date=date, command=line, versions=versions, entries=entries
    )
    merged = merge(records, new)
    write_records(merged, target)
    try:
        print_table(new, merged, paths)
    except (HarnessError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"written to {target}", err=True)
    if code != 0:
        click.echo(f"asv exited {code}: some benchmark failed (see its output)", err=True)
        sys.exit(code)


def print_table(
    new: Mapping[str, EntryRerun], record: Mapping[str, EntryRerun], paths: AsvPaths
) -> None:
    """Each measured entry: its commits, the largest difference and the offset, the threshold its
    history alone
    gives (EXCEEDS: the re-run moved it by more) and the one with the re-run term (``record``,
    as now written), gated or context."""
    policy = th.load_policy(paths.config)
    history = th.measure_noise(paths.results_dir, reruns={})
    before = th.publish_block(policy, history)
    reruns = {n: r.offset for n, r in record.items() if r.stored}
    after_noise = th.measure_noise(paths.results_dir, reruns=reruns)
    after = th.publish_block(policy, after_noise)
    by_name = {n.name: n for n in after_noise}
    width = max(56, *(len(n) for n in new))
    click.echo(
        f"{'entry':<{width}} {'commits':>7} {'max diff':>8} {'offset':>7} {'threshold':>9} {'':<7} "
        f"{'with re-run':>11} gated"
    )
    for name, record in sorted(new.items()):
        was = th.effective_threshold(before, name)
        now = th.effective_threshold(after, name)
        noise = by_name.get(name)
        held = "gated" if noise is not None and th.gated(noise, now) else "context"
        flag = "EXCEEDS" if record.offset > was + 1e-9 else ""
        click.echo(
            f"{name:<{width}} {len(record.commits):>7} {record.max:>8.1%} {record.offset:>7.1%} "
            f"{was:>9.0%} "
            f"{flag:<7} {now:>11.0%} {held}"
        )


def main(argv: Sequence[str] | None = None) -> None:  # pragma: no cover
    command.main(args=list(argv) if argv is not None else None)
