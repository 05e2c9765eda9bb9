"""Repeat every instruction count and report the spread; once more with a busy core.

Run from the repository root:
    PYTHONPATH=tools/bench/src .venv/bin/python tools/bench/measurements/stability.py \
        [REPEATS [WORKLOAD...]]
Counts run one at a time (each is two valgrind processes), so at most two run at once. The
library is a snapshot of HEAD's ``src`` (``git archive``): the working tree may change while the
runs go on, and a change in the code would read as instability.
"""

from __future__ import annotations

import multiprocessing
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tristore_bench import instructions
from tristore_bench.workloads import WORKLOADS


def _busy(stop_at: float) -> None:
    while time.time() < stop_at:  # a pure-Python busy loop: one core fully loaded
        pass


def pinned_library() -> tuple[str, Path]:
    """(HEAD's commit, a ``git archive`` snapshot of its ``src``): the tree may change meanwhile."""
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    pinned = Path(tempfile.mkdtemp(prefix="tsb-lib-"))
    archive = subprocess.run(["git", "archive", commit, "src"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(pinned)], input=archive.stdout, check=True)
    return commit, pinned / "src"


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    names = sys.argv[2:] or [name for name in WORKLOADS if name != "noop"]
    print("command:", shlex.join(["PYTHONPATH=tools/bench/src", sys.executable, *sys.argv]))
    print("valgrind", instructions.valgrind_version(), flush=True)
    commit, library = pinned_library()
    print(f"library: tristore from commit {commit} (a snapshot in {library})", flush=True)
    for name in names:
        counts = []
        for i in range(repeats):
            result = instructions.measure(name, library=library)
            counts.append(result.per_op)
            print(
                f"{name} run {i + 1}: n={result.n} per_op={result.per_op:.1f} "
                f"I(n)={result.small.instructions} I(2n)={result.large.instructions} "
                f"wall={result.small.seconds:.1f}s/{result.large.seconds:.1f}s",
                flush=True,
            )
        spread = (max(counts) - min(counts)) / min(counts) * 100
        print(f"{name} spread over {repeats} runs: {spread:.3f}% (max-min)/min", flush=True)
        busy = multiprocessing.Process(target=_busy, args=(time.time() + 900,))
        busy.start()
        try:
            loaded = instructions.measure(name, library=library)
        finally:
            busy.terminate()
            busy.join()
        vs = (loaded.per_op - counts[0]) / counts[0] * 100
        print(
            f"{name} loaded (a busy loop on another process): per_op={loaded.per_op:.1f} "
            f"({vs:+.3f}% vs run 1) wall={loaded.small.seconds:.1f}s/{loaded.large.seconds:.1f}s",
            flush=True,
        )


if __name__ == "__main__":
    main()
