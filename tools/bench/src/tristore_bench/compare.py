"""``tristore-bench compare``: tristore's hot paths next to the raw drivers, with pyperf.

Seeds a small graph, starts a throwaway redis-server (unless ``TRISTORE_REDIS_URL`` names one),
and runs :mod:`tristore_bench.compare_bench` under pyperf: every benchmark in fresh worker
processes, calibrated loops, warm-ups. It then prints, per pair, the time ratio tristore/reference
with a two-sided Mann-Whitney U p-value and the target from the performance issue.

Method, and why (the same lessons as the PR gate's, see :mod:`tristore_bench.gate.stats`):

* **Interleaved passes.** pyperf runs all the processes of one benchmark, then the next; on a
  shared machine the load drifts between those windows, and a first run here made tristore's
  Redis pipeline look 1.55x slower than raw redis-py for no other reason. So the suite runs in
  several passes (default 5 x 4 processes per benchmark), alternately in forward and reverse
  order, appended into one pyperf file: every pair is measured across the same time span.
* **Per-process floor.** Each value is a short batch (``--min-time 0.02``); each worker process
  is summarised by its fastest value, and the ratio is the Hodges-Lehmann estimate over those
  per-process floors (median of all pairwise ratios). On a loaded machine a mean mostly
  measures the wait for a core, which hits a two-thread path (tristore's SQLite writer lane,
  aiosqlite) harder than a one-thread one (raw sqlite3); the floor is the cost of the work.
  ``tristore_s`` / ``reference_s`` are medians of the per-process floors.
* **Significance**: two-sided Mann-Whitney U on the per-process floors (values within one
  process share its memory layout and hash seed, so processes are the unit).

Files (in ``--output-dir``, default ``.tristore/compare``):

* ``compare.json``: the pyperf suite as run (all passes), names like
  ``sqlite_write[aiosqlite]``;
* ``tristore.json``, ``reference.json`` (async peers), ``reference-sync.json`` (blocking calls)
  and ``reference-unprepared.json`` (kuzu's plain ``execute(text, params)``): the same runs
  split by implementation and renamed to the bare operation, so that
  ``python -m pyperf compare_to reference.json tristore.json`` lines them up;
* ``--json FILE``: a list of ``{name, tristore_s, reference, reference_s, ratio, p_value,
  target, meets_target}``.
"""

from __future__ import annotations

import contextlib
import json
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

from tristore_bench.compare_bench import CASES, ENV_REDIS_URL
from tristore_bench.gate.stats import hodges_lehmann_ratio, json_safe, mann_whitney

#: (operation, reference) -> the target for time ratio tristore/reference, from the speed issue
#: ("the data layer at the raw drivers' speed"; it tightened the first issue's 0.5, 1.05, 1.11).
TARGETS: dict[tuple[str, str], float] = {
    ("pool_checkout", "asyncio.Queue"): 1.3,  # within 1.3x the floor
    ("sqlite_write", "aiosqlite"): 0.33,  # >= 3x faster than aiosqlite execute+commit
    ("sqlite_write", "sqlite3"): 2.0,  # >= 0.5x raw sqlite3's speed
    ("redis_single", "redis.asyncio"): 1.03,  # within 3% of raw
    ("redis_pipeline_100", "redis.asyncio"): 1.03,
    ("kuzu_read", "kuzu executor"): 1.05,  # same async way, prepared alike
}

FAST_ARGS = ("--processes", "2", "--values", "2", "--warmups", "1", "--min-time", "0.01")
PASS_ARGS = ("--values", "5", "--warmups", "1", "--min-time", "0.02")
PASSES = 5
PROCESSES_PER_PASS = 4


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


def _per_process_floors(bench: pyperf.Benchmark) -> list[float]:
    return [min(run.values) for run in bench.get_runs() if run.values]


def rows_from_suite(suite: pyperf.BenchmarkSuite) -> list[Row]:
    by_name = {bench.get_name(): bench for bench in suite.get_benchmarks()}
    rows = []
    for case in CASES:
        if case.role != "tristore" or case.name not in by_name:
            continue
        ours = _per_process_floors(by_name[case.name])
        for ref in CASES:
            if ref.op != case.op or ref.role == "tristore" or ref.name not in by_name:
                continue
            theirs = _per_process_floors(by_name[ref.name])
            target = TARGETS.get((case.op, ref.impl))
            ratio = hodges_lehmann_ratio(theirs, ours)
            rows.append(
                Row(
                    name=case.op,
                    tristore_s=statistics.median(ours),
                    reference=ref.impl,
                    reference_s=statistics.median(theirs),
                    ratio=ratio,
                    p_value=mann_whitney(theirs, ours, "two-sided"),
                    target=target,
                    meets_target=None if target is None else ratio <= target,
                    processes=(len(ours), len(theirs)),
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
        "times: median of per-process floors; ratio = time tristore / time reference "
        "(Hodges-Lehmann over per-process floors); p-value: two-sided Mann-Whitney U on them."
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
    passes: int = PASSES,
    only: Sequence[str] = (),
    quiet: bool = False,
) -> tuple[list[Row], dict[str, Path]]:
    """Run the pyperf suite; return the rows and the pyperf files written."""
    from tristore.testing.setup import seed_files

    out_dir.mkdir(parents=True, exist_ok=True)
    combined = out_dir / "compare.json"
    combined.unlink(missing_ok=True)  # every pass appends to it
    with tempfile.TemporaryDirectory(prefix="tristore-compare-") as tmp, _redis_url() as url:
        data_dir = Path(tmp)
        seed_files(data_dir / "seeded", "small", seed=7)
        base_cmd = [
            sys.executable,
            "-m",
            "tristore_bench.compare_bench",
            "--data-dir",
            str(data_dir),
            "--append",
            str(combined),
            f"--inherit-environ={ENV_REDIS_URL},PATH,TRISTORE_REDIS_BINARY",
        ]
        if quiet:
            base_cmd.append("--quiet")
        for name in only:
            base_cmd += ["--only", name]
        if fast:
            plans = [list(FAST_ARGS)]
        else:
            total = processes or PASSES * PROCESSES_PER_PASS * (2 if rigorous else 1)
            passes = max(1, min(passes, total))
            per_pass = max(1, round(total / passes))
            plans = [
                [*PASS_ARGS, "--processes", str(per_pass), *(["--reverse"] if i % 2 else [])]
                for i in range(passes)
            ]
        env = {**os.environ, ENV_REDIS_URL: url}
        for i, plan in enumerate(plans):
            if len(plans) > 1:
                click.echo(f"compare: pass {i + 1}/{len(plans)}", err=True)
            proc = subprocess.run([*base_cmd, *plan], env=env, check=False)
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
@click.option("--fast", is_flag=True, help="One pass, 2 processes x 2 values: for tests.")
@click.option("--rigorous", is_flag=True, help="Twice the processes.")
@click.option("--processes", type=int, help="Worker processes per benchmark, all passes.")
@click.option("--passes", default=PASSES, show_default=True, help="Interleaved passes.")
@click.option("--only", multiple=True, metavar="OP", help="Only this operation (repeatable).")
@click.option("--check", is_flag=True, help="Exit 1 if a ratio misses its target.")
def command(
    json_path: Path | None,
    output_dir: Path,
    fast: bool,
    rigorous: bool,
    processes: int | None,
    passes: int,
    only: Sequence[str],
    check: bool,
) -> None:
    """Run tristore's hot paths and the raw drivers under pyperf; print the ratios."""
    known = {case.op for case in CASES}
    unknown = sorted(set(only) - known)
    if unknown:
        raise click.UsageError(f"unknown operation(s) {unknown}; known: {sorted(known)}")
    rows, files = run_compare(
        output_dir, fast=fast, rigorous=rigorous, processes=processes, passes=passes, only=only
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


if __name__ == "__main__":  # pragma: no cover - `python -m tristore_bench.compare`
    command()
