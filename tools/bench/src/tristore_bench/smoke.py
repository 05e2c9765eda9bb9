"""``tristore-bench bench-smoke``: every asv benchmark once on the working tree, not in results/.

``asv run --dry-run`` still rewrites ``results/benchmarks.json`` and the machine's
``machine.json``, and ``--quick`` results must never reach ``results/`` (one sample per benchmark
would pass for history). So the smoke run gets its own copy of ``asv.conf.json`` whose results,
html and env directories live in a scratch directory, its own machine file (``HOME`` points
there), and ``--python=same --quick``: the installed (editable) tristore, one sample each.

It answers one question: does every benchmark run at HEAD? At HEAD nothing may fail and nothing
may skip (a skip means "this commit lacks the API", which the newest commit never does).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import click

from tristore_bench.asv import HarnessError, asv_command, asv_config_option, asv_paths, git
from tristore_bench.fingerprint import save_machine

MACHINE = "smoke"
TIMEOUT_S = 900


@dataclass(frozen=True)
class SmokeReport:
    commit: str
    ran: list[str]
    failed: list[str]  # asv stored null: the benchmark raised
    skipped: list[str]  # asv stored NaN: setup raised NotImplementedError
    output: str

    @property
    def ok(self) -> bool:
        return bool(self.ran) and not self.failed and not self.skipped


def _scratch_config(config: Path, workdir: Path) -> Path:
    paths = asv_paths(config)
    conf = dict(paths.raw)
    conf.update(
        repo=str(paths.repo),
        benchmark_dir=str(paths.benchmark_dir),
        results_dir=str(workdir / "results"),
        html_dir=str(workdir / "html"),
        env_dir=str(workdir / "env"),
    )
    target = workdir / "asv.conf.json"
    target.write_text(json.dumps(conf, indent=2))
    return target


def _classify(results_file: Path) -> tuple[list[str], list[str], list[str]]:
    data = json.loads(results_file.read_text())
    at = data["result_columns"].index("result")
    ran, failed, skipped = [], [], []
    for name, row in sorted(data["results"].items()):
        values = row[at] if len(row) > at else None
        values = values if isinstance(values, list) else [values]
        if any(v is None for v in values):
            failed.append(name)
        elif any(isinstance(v, float) and math.isnan(v) for v in values):
            skipped.append(name)
        else:
            ran.append(name)
    return ran, failed, skipped


def run_smoke(
    config: Path, workdir: Path, bench: Sequence[str] = (), timeout_s: float = TIMEOUT_S
) -> SmokeReport:
    workdir.mkdir(parents=True, exist_ok=True)
    paths = asv_paths(config)
    commit = git(paths.repo, "rev-parse", "HEAD").strip()
    scratch = _scratch_config(config, workdir)
    home = workdir / "home"
    home.mkdir(exist_ok=True)
    save_machine(MACHINE, home / ".asv-machine.json")
    argv = [
        *asv_command(),
        "run",
        "--config",
        str(scratch),
        "--python=same",
        "--quick",
        "--machine",
        MACHINE,
        "--set-commit-hash",
        commit,
        "--show-stderr",
    ]
    for pattern in bench:
        argv += ["--bench", pattern]
    try:
        done = subprocess.run(
            argv,
            cwd=paths.root,
            env={**os.environ, "HOME": str(home)},
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise HarnessError(f"the smoke run took over {timeout_s:.0f} s") from exc
    output = done.stdout + done.stderr
    found = sorted((workdir / "results" / MACHINE).glob(f"{commit[:8]}-*.json"))
    if not found:
        raise HarnessError(f"asv wrote no results (exit {done.returncode}):\n{output[-3000:]}")
    ran, failed, skipped = _classify(found[0])
    return SmokeReport(commit, ran, failed, skipped, output)


@click.command("bench-smoke")
@asv_config_option("asv config whose suite to run.")
@click.option("--bench", multiple=True, metavar="REGEX", help="Only matching benchmarks.")
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Scratch directory (default: a temp dir, removed afterwards).",
)
def command(config: Path, bench: Sequence[str], workdir: Path | None) -> None:
    """Run every benchmark once at HEAD (asv --quick, scratch results); exit 1 on any failure."""
    try:
        if workdir is None:
            with tempfile.TemporaryDirectory(prefix="tristore-smoke-") as tmp:
                report = run_smoke(config, Path(tmp), bench)
        else:
            report = run_smoke(config, workdir, bench)
    except HarnessError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    for name in report.failed:
        click.echo(f"FAILED   {name}")
    for name in report.skipped:
        click.echo(f"SKIPPED  {name}")
    click.echo(
        f"{len(report.ran)} ran, {len(report.failed)} failed, {len(report.skipped)} skipped "
        f"at {report.commit[:8]}"
    )
    if not report.ok:
        if report.failed:
            click.echo(report.output[-6000:], err=True)
        sys.exit(1)
