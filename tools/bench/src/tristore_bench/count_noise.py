"""``tristore-bench count-noise --repeat N [--bench REGEX] [--commit REF]``: repeat one commit.

Counts each selected instruction-count workload ``N`` times on one commit's library, each time
from a fresh ``git archive`` of its ``src/`` (so a working tree that changes meanwhile does not
matter) and with an environment variable of another length (:data:`LAYOUT_ENV`: 0, 1000, 2000,
... characters). Repeats that shared one process layout would agree to the instruction and still
understate the noise: what a process allocates before the counted region places the heap, and
objects hashed by address (tasks, futures, handles in sets and dicts) then collide differently,
so a count moves when an unrelated path, file or variable does. Otherwise each workload is
counted as the asv suite counts it (:func:`tristore_bench.instructions.measure`: N and 2N
operations in two valgrind processes), one count after another.

The spread of those counts is the workload's noise; it is merged into
``tools/bench/count-noise.json`` (:data:`tristore_bench.counts.NOISE_FILE`) with the command,
the commit, valgrind's and Python's versions, and every count, so that anyone can measure it
again. The change points of the published history hold a count step to
max(1%, 3 x that spread) (:mod:`tristore_bench.changepoints`).
"""

from __future__ import annotations

import contextlib
import platform
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import click

from tristore_bench import counts
from tristore_bench import instructions as callgrind
from tristore_bench.asv import command_line

Measure = Callable[..., callgrind.Count]


def selected(pattern: str | None) -> list[str]:
    """Count workloads whose asv entry (``instructions.SQLiteWrite``) or name matches."""
    found = []
    for benchmark, workload in counts.COUNT_BENCHMARKS.items():
        if pattern is None or re.search(pattern, benchmark) or re.search(pattern, workload):
            found.append(workload)
    return found


Sources = Callable[[], contextlib.AbstractContextManager[Path]]
#: A variable whose length differs per repeat; nothing reads it (see the module docstring).
LAYOUT_ENV = "TRISTORE_BENCH_LAYOUT"
LAYOUT_STEP = 1000


def layout_env(repeat_index: int) -> dict[str, str]:
    """The padding of repeat ``repeat_index`` (0: none, as asv runs it)."""
    return {LAYOUT_ENV: "." * (LAYOUT_STEP * repeat_index)} if repeat_index else {}


def repeat_counts(
    workload: str,
    repeat: int,
    library: Sources,
    *,
    commit: str,
    command: str,
    measure: Measure = callgrind.measure,
    progress: Callable[[str], None] = lambda _m: None,
) -> counts.WorkloadNoise:
    """``repeat`` counts of ``workload``, one after another, each on a fresh ``library()``."""
    values: list[float] = []
    n = 0
    valgrind: str | None = None
    for i in range(repeat):
        with library() as src:
            result = measure(workload, library=src, env=layout_env(i) or None)
        n, valgrind = result.n, result.valgrind
        values.append(result.per_op)
        progress(
            f"{workload} {i + 1}/{repeat}: {result.per_op:.1f} instructions/op "
            f"({result.small.seconds:.0f} s / {result.large.seconds:.0f} s)"
        )
    benchmark = next(b for b, w in counts.COUNT_BENCHMARKS.items() if w == workload)
    return counts.WorkloadNoise(
        workload=workload,
        benchmark=benchmark,
        commit=commit,
        n=n,
        per_op=values,
        valgrind=valgrind,
        python=platform.python_version(),
        command=command,
        layouts=[len(layout_env(i).get(LAYOUT_ENV, "")) for i in range(repeat)],
    )


@click.command("count-noise")
@click.option("--repeat", type=click.IntRange(2, 50), default=3, show_default=True)
@click.option("--bench", "pattern", metavar="REGEX", help="Only entries/workloads matching.")
@click.option("--commit", "ref", default="HEAD", show_default=True, help="The commit counted.")
@click.option(
    "--file",
    "path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"Noise file to merge into (default: {counts.NOISE_FILE.name} in tools/bench).",
)
def command(repeat: int, pattern: str | None, ref: str, path: Path | None) -> None:
    """Measure each count workload's noise by repeating one commit; record it."""
    from tristore_bench.gate.run import GateError, checkout_src, describe, repo_root

    reason = callgrind.available()
    if reason is not None:
        raise click.ClickException(reason)
    workloads = selected(pattern)
    if not workloads:
        raise click.ClickException(f"no count workload matches {pattern!r}")
    target = path or counts.NOISE_FILE
    try:
        records = counts.load_noise(target)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    line = command_line("count-noise")
    try:
        root = repo_root()
        sha = describe(ref, root).split("(")[-1].rstrip(")")
        full = _full_hash(ref, root)
        click.echo(f"count-noise: {', '.join(workloads)} x{repeat} at {sha}", err=True)
        for workload in workloads:
            record = repeat_counts(
                workload, repeat, lambda: checkout_src(full, root), commit=full, command=line,
                progress=lambda m: click.echo(m, err=True),
            )  # fmt: skip
            records[workload] = record
            counts.write_noise(records, target)  # after each workload: resumable
    except GateError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{'workload':<18} {'n':>5} {'repeats':>7} {'min/op':>12} {'spread':>8}  flag at")
    for workload in workloads:
        r = records[workload]
        click.echo(
            f"{workload:<18} {r.n:>5} {len(r.per_op):>7} {min(r.per_op):>12.1f} "
            f"{r.spread:>8.3%}  {counts.flag_tolerance(r.spread):.2%}"
        )
    click.echo(f"written to {target}")


def _full_hash(ref: str, root: Path) -> str:
    from tristore_bench.asv import git

    return git(root, "rev-parse", f"{ref}^{{commit}}").strip()


def main(argv: Sequence[str] | None = None) -> None:  # pragma: no cover
    command.main(args=list(argv) if argv is not None else None)
