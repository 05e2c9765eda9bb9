"""Deterministic instruction counts of tristore's CPU-bound hot paths, with callgrind.

Wall time on the shared 2-core VM jumps between machine states by 15% or more per process; an
instruction count does not depend on the machine's load or state, so a 10% change in the code is
a 10% change in the number. This is how CodSpeed's simulation mode, iai-callgrind and SQLite's
cachegrind tracking work, and the controls are theirs:

* ASLR off (``setarch -R``), ``PYTHONHASHSEED=0``, a fixed environment, a working directory and
  ``TMPDIR`` with names of one fixed length, and the interpreter, its packages and the sources
  seen through links of one fixed length (:mod:`tristore_bench.child_view`): anything that
  changes hashing, addresses or string lengths changes the count;
* only the measured region is counted: the workload (:mod:`tristore_bench.workloads`) switches
  callgrind's instrumentation on around its batch of operations (``--instr-atstart=no``);
* and the count per operation is the difference of two batch sizes, ``(I(2N) - I(N)) / N``, so
  the fixed cost of entering and leaving the region cancels too.

The two batch sizes run as two valgrind processes in parallel (a count does not depend on load).
Valgrind comes from the Debian package ``valgrind``; it cannot be pinned through pip, so
:func:`valgrind_version` goes into the result's fingerprint instead.

Importable with the standard library alone: the asv suite imports it from the checkout at HEAD.
"""

from __future__ import annotations

import functools
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tristore_bench import child_view

PACKAGE = "valgrind"  # the Debian package that provides valgrind and callgrind
SRC_DIR = Path(__file__).resolve().parents[1]  # tools/bench/src: the children import from here
RUN_TIMEOUT_S = 1800.0  # one valgrind process; a workload is 20-50x slower than native there
FIXED_ROOT = "/tmp"  # every run's directory lives here, so its path has the same length anywhere
SCRATCH_SLOTS = 10_000  # measurements that may run at once on one machine (and stale leftovers)

CALLGRIND_OPTIONS = (
    "--tool=callgrind",
    "--instr-atstart=no",  # the workload switches instrumentation on around its batch
    "--dump-instr=no",
    "--collect-jumps=no",
)


# -- availability and version ---------------------------------------------------------------------


def available() -> str | None:
    """None when instruction counts can run here, else the reason they cannot."""
    missing = [tool for tool in ("valgrind", "setarch") if shutil.which(tool) is None]
    if "valgrind" in missing:
        return (
            f"valgrind is not installed: install the Debian package {PACKAGE!r} "
            f"(apt-get install {PACKAGE}) to measure instruction counts"
        )
    if missing:
        return "setarch is not installed (util-linux): it turns ASLR off for instruction counts"
    if platform.machine() not in ("x86_64", "AMD64"):
        return (
            f"instruction counts toggle callgrind with x86-64 machine code; this is "
            f"{platform.machine()}"
        )
    if not _is_elf(python_binary()):
        return (
            f"{python_binary()} is not an executable binary (a shim script?): valgrind would "
            "count the script's interpreter, not Python"
        )
    if valgrind_version() is None:
        return f"valgrind --version failed: reinstall the Debian package {PACKAGE!r}"
    return None


@functools.cache
def valgrind_version() -> str | None:
    """valgrind's version, e.g. ``'3.19.0'`` (for the result fingerprint), or None."""
    binary = shutil.which("valgrind")
    if binary is None:
        return None
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"valgrind-(\S+)", out)
    return found.group(1) if found else None


def python_binary() -> str:
    """The interpreter the children run: this one, by the path it was started with.

    Not symlink-resolved on purpose: a venv's ``python`` is a symlink to the real binary, which
    valgrind follows, while Python finds the venv (``pyvenv.cfg``) from the path it was given.
    """
    return sys.executable


def _is_elf(path: str) -> bool:
    try:
        with open(os.path.realpath(path), "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


# -- parsing callgrind's output -------------------------------------------------------------

_TOTALS = re.compile(r"^(totals|summary):\s*(\d+)", re.MULTILINE)
_NAME = re.compile(r"^\((\d+)\)(?:\s(.*))?$")
_RECURSION = re.compile(r"'\d+$")


def parse_totals(text: str) -> int:
    """The instruction total of one callgrind output file.

    ``totals:`` is preferred: with ``--instr-atstart=no`` callgrind 3.19 writes ``summary: 0``
    and the real figure on ``totals:``. Several parts (dumps) add up.
    """
    found: dict[str, int] = {"totals": 0, "summary": 0}
    seen: set[str] = set()
    for match in _TOTALS.finditer(text):
        found[match.group(1)] += int(match.group(2))
        seen.add(match.group(1))
    if not seen:
        raise ValueError("no 'totals:' or 'summary:' line: not a complete callgrind output file")
    return found["totals"] if "totals" in seen else found["summary"]


def parse_functions(text: str) -> dict[str, int]:
    """Self (exclusive) instructions per function, keyed ``"name (object)"``.

    Reads callgrind's format directly (no perl callgrind_annotate): ``fn=``/``cfn=``/``ob=``/
    ``cob=`` lines with name compression (``(id) name`` defines an id, ``(id)`` refers to it),
    cost lines ``position cost``, and the line after ``calls=``, which is the callee's inclusive
    cost and so not the caller's own.
    """
    names: dict[str, dict[str, str]] = {"fn": {}, "ob": {}}
    costs: dict[str, int] = {}
    current_fn = current_ob = ""
    skip_next_cost = False
    for line in text.splitlines():
        if not line:
            continue
        head = line[0]
        if head.isdigit() or head in "+-*":
            if skip_next_cost:
                skip_next_cost = False
                continue
            parts = line.split()
            if len(parts) > 1 and current_fn:
                # callgrind names recursion levels f'2, f'3 (--separate-recs): one function.
                base = _RECURSION.sub("", current_fn)
                key = f"{base} ({current_ob})" if current_ob else base
                costs[key] = costs.get(key, 0) + int(parts[1])
            continue
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key in ("fn", "cfn", "ob", "cob"):
            space = "fn" if key in ("fn", "cfn") else "ob"
            name = _resolve(names[space], value)
            if key == "fn":
                current_fn = name
            elif key == "ob":
                current_ob = os.path.basename(name)
        elif key == "calls":
            skip_next_cost = True
    return costs


def _resolve(table: dict[str, str], value: str) -> str:
    match = _NAME.match(value)
    if match is None:
        return value  # uncompressed name
    ident, name = match.groups()
    if name is not None:
        table[ident] = name
        return name
    return table.get(ident, f"({ident})")


def top_functions(outfile: str | Path, k: int = 20) -> list[tuple[str, int]]:
    """The ``k`` functions with the most self instructions in one callgrind output file."""
    functions = parse_functions(Path(outfile).read_text(errors="replace"))
    return sorted(functions.items(), key=lambda item: (-item[1], item[0]))[:k]


def function_deltas(
    small: Mapping[str, int], large: Mapping[str, int], n: int, k: int = 20
) -> list[tuple[str, float]]:
    """Per-operation self instructions by function, ``(large - small) / n``, largest first."""
    deltas = {name: (large.get(name, 0) - small.get(name, 0)) / n for name in {*small, *large}}
    return sorted(deltas.items(), key=lambda item: (-abs(item[1]), item[0]))[:k]


# -- running ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One valgrind process: ``n`` operations of a workload."""

    n: int
    instructions: int
    functions: dict[str, int] = field(repr=False)
    seconds: float


@dataclass(frozen=True)
class Count:
    """Instructions per operation from two batch sizes."""

    workload: str
    n: int
    per_op: float
    small: Run  # n operations
    large: Run  # 2n operations
    valgrind: str | None

    def top_functions(self, k: int = 20) -> list[tuple[str, float]]:
        """The functions whose self instructions per operation are largest."""
        return function_deltas(self.small.functions, self.large.functions, self.n, k)


def child_environment(
    run_dir: Path, view: child_view.View, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The whole environment of a measured child: nothing inherited that varies by user or shell.

    Variables change the count (``os.environ`` is built from them at start-up, ``TMPDIR`` goes
    into paths); only what selects *which* software runs passes through. The sources come
    through ``view`` (:mod:`tristore_bench.child_view`): the counting code, and a library under
    measurement (a pinned snapshot, another commit's tree) when one was given.
    """
    tmp = run_dir / "tmp"
    home = run_dir / "home"
    for directory in (tmp, home):
        directory.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "TMPDIR": str(tmp),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        # Two children start at once: neither may write .pyc files the other then reads, or
        # their start-ups (and the run) would differ.
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
        "PYTHONPATH": view.pythonpath_value,
    }
    # Which redis-server the coordinated workloads start: it runs outside valgrind, uncounted.
    if os.environ.get("TRISTORE_REDIS_BINARY"):
        env["TRISTORE_REDIS_BINARY"] = os.environ["TRISTORE_REDIS_BINARY"]
    env.update(extra or {})
    return env


def _pythonpath(library: Path | None) -> str:
    return os.pathsep.join([*([str(library)] if library else []), str(SRC_DIR)])


def children_view(root: Path, library: Path | None = None) -> child_view.View:
    """The children's interpreter and sources at fixed-length paths under ``root``."""
    return child_view.build(root, SRC_DIR, library)


def command(outfile: Path, python: str, workload: str, n: int) -> list[str]:
    valgrind = shutil.which("valgrind") or "valgrind"
    return [
        shutil.which("setarch") or "setarch",
        "-R",
        valgrind,
        *CALLGRIND_OPTIONS,
        f"--callgrind-out-file={outfile}",
        python,
        "-m",
        "tristore_bench.workloads",
        workload,
        str(n),
    ]


def run_once(
    workload: str,
    n: int,
    run_dir: Path,
    view: child_view.View,
    fixture: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Run:
    """Count ``n`` operations of ``workload`` in one valgrind process rooted in ``run_dir``."""
    outfile = run_dir / "callgrind.out"
    extra = {**(env or {}), **({"TRISTORE_BENCH_FIXTURE": str(fixture)} if fixture else {})}
    child_env = child_environment(run_dir, view, extra)
    started = time.perf_counter()
    done = subprocess.run(
        command(outfile, view.python, workload, n),
        cwd=run_dir,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    seconds = time.perf_counter() - started
    marker = f"tristore-bench workload {workload} ran {n} operations"
    if done.returncode != 0 or marker not in done.stdout or not outfile.exists():
        raise RuntimeError(
            f"instruction count of {workload} (n={n}) failed (exit {done.returncode}):\n"
            f"{done.stdout[-1500:]}\n{done.stderr[-3000:]}"
        )
    text = outfile.read_text(errors="replace")
    instructions = parse_totals(text)
    if instructions <= 0:
        raise RuntimeError(f"{workload}: callgrind counted nothing; the region toggle failed")
    return Run(n, instructions, parse_functions(text), seconds)


def scratch_root() -> Path:
    """A new directory for one measurement, under FIXED_ROOT where it can be written.

    Named ``tsb-00000000``, or the next free number while other measurements hold the first
    (the gate counts both sides at once): every run's paths have one length, and one measuring
    at a time sees the very same names, so not even a string's hash differs between runs.
    """
    parent = Path(FIXED_ROOT if os.access(FIXED_ROOT, os.W_OK) else tempfile.gettempdir())
    for number in range(SCRATCH_SLOTS):
        path = parent / f"tsb-{number:08d}"
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            continue
        return path
    raise RuntimeError(f"{parent}: tsb-00000000 to tsb-{SCRATCH_SLOTS - 1:08d} are all taken")


def prepare_fixture(workload: str, root: Path, library: Path | None) -> Path | None:
    """The workload's data files under ``root`` (None if it needs none), made by a child."""
    from tristore_bench.workloads import WORKLOADS

    if not WORKLOADS[workload].fixture:
        return None
    fixture = root / "fixture"
    done = subprocess.run(
        [python_binary(), "-m", "tristore_bench.workloads", "prepare", workload, fixture],
        env={**os.environ, "PYTHONPATH": _pythonpath(library)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"preparing {workload} failed:\n{done.stderr[-3000:]}")
    return fixture


def _run_dir(root: Path, label: str) -> Path:
    path = root / label
    path.mkdir()
    return path


def measure(
    workload: str,
    n: int | None = None,
    *,
    keep: Path | None = None,
    library: Path | None = None,
    env: Mapping[str, str] | None = None,
    parallel: bool = True,
) -> Count:
    """Count ``workload`` at ``n`` and ``2n`` operations (in parallel) and take the difference.

    ``keep``: copy both callgrind output files there (``<workload>-<n>.callgrind``).
    ``library``: import tristore from this ``src`` directory instead of the installed one.
    ``env``: extra variables for the children (experiments, e.g. ``TRISTORE_BENCH_KUZU_THREADS``).
    """
    from tristore_bench.workloads import WORKLOADS

    reason = available()
    if reason is not None:
        raise RuntimeError(reason)
    n = n or WORKLOADS[workload].default_n
    root = scratch_root()
    try:
        fixture = prepare_fixture(workload, root, library)
        children = children_view(root, library)
        dirs = (_run_dir(root, "a"), _run_dir(root, "b"))
        with ThreadPoolExecutor(max_workers=2 if parallel else 1) as pool:
            small_f = pool.submit(run_once, workload, n, dirs[0], children, fixture, env)
            large_f = pool.submit(run_once, workload, 2 * n, dirs[1], children, fixture, env)
            small, large = small_f.result(), large_f.result()
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            for run_dir, run in zip(dirs, (small, large), strict=True):
                shutil.copy2(run_dir / "callgrind.out", keep / f"{workload}-{run.n}.callgrind")
        per_op = (large.instructions - small.instructions) / n
        return Count(workload, n, per_op, small, large, valgrind_version())
    finally:
        shutil.rmtree(root, ignore_errors=True)


def count(workload: str, n: int | None = None) -> float:
    """Instructions per operation of ``workload`` (``n`` and ``2n`` operations; see measure)."""
    return measure(workload, n).per_op


def main(argv: Iterable[str] | None = None) -> int:
    """``python -m tristore_bench.instructions WORKLOAD [N] [--top K]``: print one count."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tristore_bench.instructions")
    parser.add_argument("workload")
    parser.add_argument("n", nargs="?", type=int, default=None)
    parser.add_argument("--top", type=int, default=0, help="also list the top K functions")
    args = parser.parse_args(list(argv) if argv is not None else None)
    reason = available()
    if reason is not None:
        print(f"skipped: {reason}", file=sys.stderr)
        return 0
    result = measure(args.workload, args.n)
    print(
        f"{result.workload} n={result.n}: {result.per_op:.1f} instructions/op "
        f"(I(n)={result.small.instructions} I(2n)={result.large.instructions}; "
        f"{result.small.seconds:.1f}s/{result.large.seconds:.1f}s under valgrind "
        f"{result.valgrind})"
    )
    for name, per_op in result.top_functions(args.top) if args.top else []:
        print(f"  {per_op:12.1f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
