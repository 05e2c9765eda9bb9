"""Running the perf suite for the gate: sources of each side, one pytest process per round.

Each side is a directory holding a ``tristore`` package (``<checkout>/src``). A round runs HEAD's
``tests/perf`` in a fresh process with ``PYTHONPATH=<side src>``: the venv's editable install of
tristore is a ``.pth`` path entry, which comes after PYTHONPATH, so the side's library is the one
imported. Both sides thus run the same checks with the same dependencies; only the library
differs. (A dependency bump in the PR is therefore *not* measured here; asv's per-commit
environments do that nightly.)
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tristore_bench.asv import BenchError, HarnessError, git
from tristore_bench.gate.stats import Comparison, round_statistic

ENV_SLOWDOWN = ("TRISTORE_TEST_SLOWDOWN", "TRISTORE_TEST_SLOWDOWN_TARGET")
# The perf checks the wall-time rounds run unless --only says otherwise. The two cross-store flows
# (coordinated_tx, order_flow) took half of every round, and their wall verdicts settle in few
# gates at their round-to-round spread, so 20 rounds of them do not fit the five minutes; their
# CPU work is judged exactly by the instruction table, which counts all six workloads, and their
# concurrency by the nightly history's gated concurrency ratio.
WALL_CHECKS: tuple[str, ...] = ("pool_checkout", "sqlite_write", "redis_pipeline", "kuzu_read")
# pytest exits 5 when every test was deselected or none collected: not an error for a side
# whose library lacks everything (the report then says "new").
_PYTEST_OK = (0, 5)


class GateError(BenchError):
    """The gate could not produce a trustworthy answer (exit code 2)."""


@dataclass(frozen=True)
class Side:
    """One side of the comparison: a label, the ``src`` directory, extra environment."""

    label: str  # "base" | "head"
    src: Path
    description: str  # what it is, for the report: "origin/main (1a2b3c4)", "working tree"
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass
class RoundResult:
    """One pytest process of one side."""

    side: str
    index: int
    seconds: float
    json_path: Path
    benchmarks: dict[str, tuple[list[float], int]]  # name -> (sample seconds, ops per sample)
    skipped: dict[str, str]  # location -> reason
    failed: list[str] = field(default_factory=list)  # base side only: tests that failed


def repo_root(start: Path | None = None) -> Path:
    out = _git(["rev-parse", "--show-toplevel"], cwd=start or Path.cwd())
    return Path(out.strip())


def slowdown_targets(tests: Path) -> tuple[str, ...]:
    """The hot paths the perf suite's test-only slowdown can slow (``tests/perf/slowdown.py``).

    Read from the checkout being gated, which owns the injector, rather than copied here.
    """
    path = tests / "slowdown.py"
    spec = importlib.util.spec_from_file_location("_tristore_perf_slowdown", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise GateError(f"{path} not found: this checkout has no test-only slowdown")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return tuple(module.TARGETS)


def _git(args: Sequence[str], cwd: Path) -> str:
    try:
        return git(cwd, *args)
    except HarnessError as exc:
        raise GateError(str(exc)) from exc


def describe(ref: str, root: Path) -> str:
    sha = _git(["rev-parse", "--short", f"{ref}^{{commit}}"], root).strip()
    return f"{ref} ({sha})" if not ref.startswith(sha) else sha


@contextlib.contextmanager
def checkout_src(ref: str, root: Path) -> Iterator[Path]:
    """The ``src`` tree of ``ref`` in a temporary directory.

    ``git archive`` rather than ``git worktree add``: only the library is needed (HEAD's tests
    run on both sides), nothing is registered in ``.git/worktrees`` (so a killed gate leaves no
    stale worktree behind, and parallel gates in one clone do not contend), and it is faster.
    """
    _git(["rev-parse", "--verify", f"{ref}^{{commit}}"], root)
    tmp = Path(tempfile.mkdtemp(prefix="tristore-gate-base-"))
    try:
        archive = tmp / "src.tar"
        _git(["archive", "--format=tar", f"--output={archive}", ref, "--", "src"], root)
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        archive.unlink()
        if not (tmp / "src" / "tristore").is_dir():
            raise GateError(f"{ref} has no src/tristore package")
        yield tmp / "src"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def pytest_command(
    tests: Path, json_path: Path, *, only: Sequence[str] = (), scale: float = 1.0
) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(tests),
        "-m",
        "perf",
        # The base may predate the tristore plugin; the perf suite does not use it.
        "-p",
        "no:tristore",
        "-p",
        "no:cacheprovider",
        "-q",
        "-rsfE",
        "--no-header",
        f"--benchmark-json={json_path}",
        "--benchmark-sort=name",
        f"--perf-scale={scale:g}",
    ]
    if only:
        cmd += ["-k", " or ".join(only)]
    return cmd


def side_env(side: Side) -> dict[str, str]:
    # Variables of an enclosing pytest run (the gate's own tests run under xdist) would make the
    # child pytest believe it is an xdist worker, and pytest-benchmark then measures nothing.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ENV_SLOWDOWN and not k.startswith(("PYTEST_XDIST_", "PYTEST_CURRENT_TEST"))
    }
    env["PYTHONPATH"] = os.pathsep.join(
        [str(side.src), *filter(None, [os.environ.get("PYTHONPATH", "")])]
    )
    env.update(side.env)
    return env


def run_round(
    side: Side,
    index: int,
    *,
    tests: Path,
    root: Path,
    workdir: Path,
    only: Sequence[str] = (),
    scale: float = 1.0,
    timeout: float = 120.0,
    tolerate_failures: bool = False,
) -> RoundResult:
    """Run the perf suite once for ``side``; raise :class:`GateError` on failure.

    ``tolerate_failures`` (the base side): a benchmark that *fails* there (HEAD's suite calling
    an API the base has in another shape) is recorded and left out, like a skipped one; the
    head side must pass, or the gate cannot judge the PR.
    """
    json_path = workdir / f"{side.label}-{index:02d}.json"
    cmd = pytest_command(tests, json_path, only=only, scale=scale)
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd,
            cwd=root,  # HEAD's pyproject.toml: markers, asyncio mode, timeouts
            env=side_env(side),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise GateError(
            f"{side.label} round {index}: perf suite timed out after {timeout}s"
        ) from exc
    seconds = time.perf_counter() - start
    failed = _failures(proc.stdout)
    if tolerate_failures and proc.returncode == 1 and failed:
        benchmarks, skipped = parse_results(json_path, proc.stdout)
        return RoundResult(side.label, index, seconds, json_path, benchmarks, skipped, failed)
    if proc.returncode not in _PYTEST_OK:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
        raise GateError(
            f"{side.label} round {index}: perf suite failed (pytest exit {proc.returncode}):\n"
            f"{tail}"
        )
    benchmarks, skipped = parse_results(json_path, proc.stdout)
    return RoundResult(side.label, index, seconds, json_path, benchmarks, skipped)


def parse_results(
    json_path: Path, stdout: str = ""
) -> tuple[dict[str, tuple[list[float], int]], dict[str, str]]:
    """(name -> (samples, ops)) from a --benchmark-json file, and skipped tests from stdout."""
    benchmarks: dict[str, tuple[list[float], int]] = {}
    if json_path.exists():
        doc = json.loads(json_path.read_text())
        for bench in doc.get("benchmarks", []):
            data = bench.get("stats", {}).get("data") or []
            ops = int(bench.get("extra_info", {}).get("ops", 1))
            benchmarks[bench["name"]] = ([float(x) for x in data], ops)
    # "-rs" lines: "SKIPPED [1] tests/perf/test_x.py:12: reason" (location and reason only).
    skipped = {}
    for line in stdout.splitlines():
        if line.startswith("SKIPPED"):
            where, _, reason = line.partition("] ")[2].partition(": ")
            skipped[where] = reason
    return benchmarks, skipped


def _failures(stdout: str) -> list[str]:
    """Test ids from the short summary's "FAILED id - msg" / "ERROR id - msg" lines."""
    out = []
    for line in stdout.splitlines():
        for prefix in ("FAILED ", "ERROR "):
            if line.startswith(prefix):
                out.append(line[len(prefix) :].split(" - ", 1)[0].strip())
    return out


@dataclass
class Rounds:
    """Everything measured: per side, the rounds in the order they ran."""

    rounds: dict[str, list[RoundResult]] = field(default_factory=lambda: {"base": [], "head": []})
    seconds: float = 0.0
    stopped_early: str = ""  # why fewer rounds than asked ran, if so
    settled_after: int = 0  # rounds per side after which every verdict was settled (0: never)
    # Verdicts settled at a look, kept for every later look (see stats.freeze).
    frozen: dict[str, Comparison] = field(default_factory=dict)

    def names(self) -> list[str]:
        seen: dict[str, None] = {}
        for side in ("base", "head"):
            for r in self.rounds[side]:
                seen.update(dict.fromkeys(r.benchmarks))
        return sorted(seen)

    def per_round(self, side: str, name: str, quantile: float) -> list[float]:
        return [
            round_statistic(r.benchmarks[name][0], r.benchmarks[name][1], quantile)
            for r in self.rounds[side]
            if name in r.benchmarks and r.benchmarks[name][0]
        ]


def run_interleaved(
    base: Side,
    head: Side,
    *,
    rounds: int,
    tests: Path,
    root: Path,
    workdir: Path,
    budget_s: float,
    min_rounds: int,
    only: Sequence[str] = (),
    scale: float = 1.0,
    progress: Callable[[str], None] = lambda _msg: None,
    settled: Callable[[Rounds], bool] | None = None,
) -> Rounds:
    """``rounds`` rounds per side, in ABBA order, within ``budget_s`` seconds.

    ABBA (base, head, head, base, ...) rather than ABAB: whichever side runs first in a pair
    meets a different machine state (page cache, CPU frequency, another job's phase); alternating
    the order cancels that bias instead of handing it to one side. The budget is checked before
    each pair, from the slowest pair so far: once ``min_rounds`` pairs are done, the gate stops
    early rather than overrun its time limit. ``settled``, asked after each pair, stops the
    rounds as soon as it returns True (the sequential verdict needs no more).
    """
    out = Rounds()
    start = time.perf_counter()
    slowest_pair = 0.0
    for i in range(rounds):
        elapsed = time.perf_counter() - start
        if i >= min_rounds and elapsed + slowest_pair * 1.2 > budget_s:
            out.stopped_early = (
                f"stopped after {i} rounds per side to stay within the {budget_s:.0f} s budget"
            )
            break
        pair_start = time.perf_counter()
        order = (base, head) if i % 2 == 0 else (head, base)
        for side in order:
            result = run_round(
                side, i, tests=tests, root=root, workdir=workdir, only=only, scale=scale,
                tolerate_failures=side is base,
            )  # fmt: skip
            out.rounds[side.label].append(result)
        slowest_pair = max(slowest_pair, time.perf_counter() - pair_start)
        progress(
            f"round {i + 1}/{rounds}: base {out.rounds['base'][-1].seconds:.1f} s, "
            f"head {out.rounds['head'][-1].seconds:.1f} s"
        )
        if settled is not None and settled(out):
            out.settled_after = i + 1
            break
    out.seconds = time.perf_counter() - start
    return out


def merge_json(results: Sequence[RoundResult], target: Path) -> Path | None:
    """All rounds of one side in one pytest-benchmark JSON file (data pooled, stats redone).

    ``pytest-benchmark compare`` then shows the pooled distribution of each side, per
    operation; the verdict itself does not use this pooling (see tristore_bench.gate.stats).
    """
    from pytest_benchmark.stats import Stats

    docs = [json.loads(r.json_path.read_text()) for r in results if r.json_path.exists()]
    if not docs:
        return None
    merged: dict[str, Any] = docs[0]
    by_name: dict[str, dict[str, Any]] = {}
    for doc in docs:
        for bench in doc.get("benchmarks", []):
            if bench["name"] in by_name:
                by_name[bench["name"]]["stats"]["data"].extend(bench["stats"]["data"])
            else:
                by_name[bench["name"]] = copy.deepcopy(bench)
    for entry in by_name.values():
        # Per operation, like the rest of the report (a sample is a batch of ``ops``).
        ops = max(1, int(entry.get("extra_info", {}).get("ops", 1)))
        data = [value / ops for value in entry["stats"]["data"]]
        st = Stats()
        for value in data:
            st.update(value)
        entry["stats"] = {**entry["stats"], **st.as_dict(), "data": data}
    merged["benchmarks"] = list(by_name.values())
    target.write_text(json.dumps(merged))
    return target


def pytest_benchmark_compare(base_json: Path | None, head_json: Path | None) -> str:
    """The text of ``pytest-benchmark compare`` for the pooled files (for the report)."""
    files = [str(p) for p in (base_json, head_json) if p is not None]
    if not files:
        return ""
    exe = Path(sys.executable).with_name("pytest-benchmark")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "pytest_benchmark.cli"]
    cmd += [
        "compare",
        "--group-by=name",
        "--sort=name",
        "--columns=min,median,iqr,mean,rounds",
        *files,
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"(pytest-benchmark compare could not run: {exc})"
    text = proc.stdout if proc.returncode == 0 else proc.stdout + proc.stderr
    return _strip_ansi(text).strip()


def _strip_ansi(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)
