"""``tristore compare``: tristore's hot paths next to the raw drivers, with pyperf.

Seeds a small graph, starts a throwaway redis-server (unless ``TRISTORE_REDIS_URL`` names one),
and runs :mod:`tristore.harness.compare_bench` under pyperf: every benchmark in fresh worker
processes, calibrated loops, warm-ups. It then prints, per pair, the time ratio tristore/reference
with a two-sided Mann-Whitney U p-value and the target from the performance issue.

Statistics: pyperf's values within one worker process share that process's memory layout and
hash seed, so the unit compared is the **per-process mean** (20 processes per benchmark by
default); the ratio is the Hodges-Lehmann estimate over those (median of all pairwise ratios),
and ``tristore_s`` / ``reference_s`` are medians of all values.

Files (in ``--output-dir``, default ``.tristore/compare``):

* ``compare.json``: the pyperf suite as run, names like ``sqlite_write[aiosqlite]``;
* ``tristore.json``, ``reference.json`` (async peers) and ``reference-sync.json`` (blocking
  calls): the same runs split by implementation and renamed to the bare operation, so that
  ``python -m pyperf compare_to reference.json tristore.json`` lines them up;
* ``--json FILE``: a list of ``{name, tristore_s, reference, reference_s, ratio, p_value,
  target, meets_target}``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click
import pyperf

from tristore.harness.compare_bench import CASES, ENV_REDIS_URL
from tristore.harness.gate_stats import hodges_lehmann_ratio, json_safe

#: (operation, reference) -> the issue's target for time ratio tristore/reference.
TARGETS: dict[tuple[str, str], float] = {
    ("pool_checkout", "asyncio.Queue"): 1.3,  # within 1.3x the floor
    ("sqlite_write", "aiosqlite"): 0.5,  # >= 2x faster than aiosqlite execute+commit
    ("sqlite_write", "sqlite3"): 2.0,  # >= 0.5x raw sqlite3's speed
    ("redis_single", "redis.asyncio"): 1.05,  # >= 0.95x raw
    ("redis_pipeline_100", "redis.asyncio"): 1.05,
    ("kuzu_read", "kuzu executor"): 1.11,  # >= 0.9x raw, called the same async way
}

FAST_ARGS = ("--processes", "2", "--values", "2", "--warmups", "1", "--min-time", "0.01")


@dataclass
class Row:
    name: str
    tristore_s: float
    reference: str
    reference_s: float
    ratio: float
    p_value: float
    target: float | None
    meets_target: bool | None
    processes: tuple[int, int]


def _per_process_means(bench: pyperf.Benchmark) -> list[float]:
    return [statistics.fmean(run.values) for run in bench.get_runs() if run.values]


def _mann_whitney(a: Sequence[float], b: Sequence[float]) -> float:
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return math.nan
    return float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)


def rows_from_suite(suite: pyperf.BenchmarkSuite) -> list[Row]:
    by_name = {bench.get_name(): bench for bench in suite.get_benchmarks()}
    rows = []
    for case in CASES:
        if case.role != "tristore" or case.name not in by_name:
            continue
        ours = by_name[case.name]
        ours_means = _per_process_means(ours)
        for ref in CASES:
            if ref.op != case.op or ref.role == "tristore" or ref.name not in by_name:
                continue
            theirs = by_name[ref.name]
            theirs_means = _per_process_means(theirs)
            target = TARGETS.get((case.op, ref.impl))
            ratio = hodges_lehmann_ratio(theirs_means, ours_means)
            rows.append(
                Row(
                    name=case.op,
                    tristore_s=ours.median(),
                    reference=ref.impl,
                    reference_s=theirs.median(),
                    ratio=ratio,
                    p_value=_mann_whitney(ours_means, theirs_means),
                    target=target,
                    meets_target=None if target is None else ratio <= target,
                    processes=(len(ours_means), len(theirs_means)),
                )
            )
    return rows


def split_suite(combined: Path, out_dir: Path) -> dict[str, Path]:
    """Per-implementation pyperf files, benchmarks renamed to the bare operation."""
    doc = json.loads(combined.read_text())
    roles = {case.name: case for case in CASES}
    files: dict[str, dict[str, Any]] = {}
    for bench in doc["benchmarks"]:
        name = _bench_name(bench)
        case = roles.get(name)
        if case is None:
            continue
        target = files.setdefault(case.role, {**doc, "benchmarks": []})
        renamed = json.loads(json.dumps(bench))
        _set_bench_name(renamed, case.op)
        target["benchmarks"].append(renamed)
    paths = {}
    for role, content in files.items():
        path = out_dir / f"{role}.json"
        path.write_text(json.dumps(content))
        pyperf.BenchmarkSuite.load(str(path))  # validate: compare_to must be able to read it
        paths[role] = path
    return paths


def _bench_name(bench: dict[str, Any]) -> str:
    name = bench.get("metadata", {}).get("name")
    if name is None:
        for run in bench.get("runs", []):
            name = run.get("metadata", {}).get("name", name)
    return str(name)


def _set_bench_name(bench: dict[str, Any], name: str) -> None:
    if "name" in bench.get("metadata", {}):
        bench["metadata"]["name"] = name
    for run in bench.get("runs", []):
        if "name" in run.get("metadata", {}):
            run["metadata"]["name"] = name


def format_table(rows: Sequence[Row]) -> str:
    def t(seconds: float) -> str:
        for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
            if seconds >= scale:
                return f"{seconds / scale:.3g} {unit}"
        return f"{seconds * 1e9:.3g} ns"

    header = (
        f"{'operation':<20} {'tristore':>10} {'reference':<15} {'ref time':>10} "
        f"{'ratio':>7} {'p-value':>9} {'target':>8}  verdict"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        if r.target is None:
            verdict = "(no target: reference only)"
        else:
            verdict = "meets target" if r.meets_target else "MISSES target"
        lines.append(
            f"{r.name:<20} {t(r.tristore_s):>10} {r.reference:<15} {t(r.reference_s):>10} "
            f"{r.ratio:>7.3f} {r.p_value:>9.2g} {'' if r.target is None else f'<= {r.target:g}':>8}"
            f"  {verdict}"
        )
    lines.append("")
    lines.append(
        "ratio = time tristore / time reference (Hodges-Lehmann over per-process means); "
        "p-value: two-sided Mann-Whitney U on those means."
    )
    return "\n".join(lines)


@contextlib.contextmanager
def _redis_url() -> Iterator[str]:
    url = os.environ.get(ENV_REDIS_URL, "")
    if url:
        yield url
        return
    from tristore.services import RedisServer

    server = RedisServer()
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def run_compare(
    out_dir: Path,
    *,
    fast: bool = False,
    rigorous: bool = False,
    processes: int | None = None,
    only: Sequence[str] = (),
    quiet: bool = False,
) -> tuple[list[Row], dict[str, Path]]:
    """Run the pyperf suite; return the rows and the pyperf files written."""
    from tristore.testing.setup import seed_files

    out_dir.mkdir(parents=True, exist_ok=True)
    combined = out_dir / "compare.json"
    combined.unlink(missing_ok=True)  # pyperf -o refuses to overwrite
    with tempfile.TemporaryDirectory(prefix="tristore-compare-") as tmp, _redis_url() as url:
        data_dir = Path(tmp)
        seed_files(data_dir / "seeded", "small", seed=7)
        cmd = [
            sys.executable,
            "-m",
            "tristore.harness.compare_bench",
            "--data-dir",
            str(data_dir),
            "-o",
            str(combined),
            f"--inherit-environ={ENV_REDIS_URL},PATH,TRISTORE_REDIS_BINARY",
        ]
        if fast:
            cmd += FAST_ARGS
        elif rigorous:
            cmd.append("--rigorous")
        if processes:
            cmd += ["--processes", str(processes)]
        if quiet:
            cmd.append("--quiet")
        for name in only:
            cmd += ["--only", name]
        env = {**os.environ, ENV_REDIS_URL: url}
        proc = subprocess.run(cmd, env=env, check=False)
        if proc.returncode != 0:
            raise click.ClickException(f"pyperf run failed (exit {proc.returncode})")
    suite = pyperf.BenchmarkSuite.load(str(combined))
    files = {"compare": combined, **split_suite(combined, out_dir)}
    return rows_from_suite(suite), files


@click.command("compare")
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Rows as JSON."
)
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".tristore/compare"),
    show_default=True,
    help="Where the pyperf JSON files go.",
)
@click.option("--fast", is_flag=True, help="2 processes x 2 values: rough, for tests.")
@click.option("--rigorous", is_flag=True, help="pyperf --rigorous (twice the processes).")
@click.option("--processes", type=int, help="pyperf worker processes per benchmark.")
@click.option("--only", multiple=True, metavar="OP", help="Only this operation (repeatable).")
@click.option("--check", is_flag=True, help="Exit 1 if a ratio misses its target.")
def command(
    json_path: Path | None,
    output_dir: Path,
    fast: bool,
    rigorous: bool,
    processes: int | None,
    only: Sequence[str],
    check: bool,
) -> None:
    """Run tristore's hot paths and the raw drivers under pyperf; print the ratios."""
    known = {case.op for case in CASES}
    unknown = sorted(set(only) - known)
    if unknown:
        raise click.UsageError(f"unknown operation(s) {unknown}; known: {sorted(known)}")
    rows, files = run_compare(
        output_dir, fast=fast, rigorous=rigorous, processes=processes, only=only
    )
    click.echo("")
    click.echo(format_table(rows))
    click.echo("")
    for role, path in files.items():
        click.echo(f"pyperf {role}: {path}")
    if {"tristore", "reference"} <= files.keys():
        click.echo(
            f"  python -m pyperf compare_to {files['reference']} {files['tristore']} --table"
        )
    if json_path is not None:
        json_path.write_text(json.dumps(json_safe([asdict(r) for r in rows]), indent=1))
    if check and any(r.meets_target is False for r in rows):
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover - `python -m tristore.harness.compare`
    command()
